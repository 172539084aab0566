"""Names every part of the platform agrees on: namespaces, the apps' ports, and the Prometheus jobs.

The alert rules and dashboards select on them (`job="mcp-apps"`, `namespace="mcp-apps"`), and the platform
(`infra/`, `onebox/`) puts things where they say, so they live here, below both: the monitoring code imports
nothing of the platform. `infra/observability/prometheus.yml` is data, and a test holds it to them.
"""

APP_NAMESPACE = "mcp-apps"
DATA_NAMESPACE = "mcp-data"
OBSERVABILITY_NAMESPACE = "mcp-observability"
# Node agents (the log-collecting DaemonSet) read host paths, which only the `privileged` Pod Security
# level admits; they get a namespace of their own so everything else runs `restricted`.
AGENTS_NAMESPACE = "mcp-node-agents"
SCRAPE_JOB = "mcp-apps"  # the Prometheus job of every MCP app; rules and dashboards select `job="mcp-apps"`
EGRESS_JOB = "egress-proxy"  # the Prometheus job of the egress proxy's meter (denied egress, by app)
PORT = 8080  # every app's MCP port (and its probes)
METRICS_PORT = 9464  # /metrics alone, admitted from Prometheus only (the OpenTelemetry Prometheus exporter's port)
# The local authorization server (`authz/`), in a namespace of its own: authz.mcp-auth.svc:9400 in the cluster and
# the one-machine composition alike.
AUTH_NAMESPACE = "mcp-auth"
AUTHZ_PORT = 9400
