"""The stack's configuration, parsed once into a typed, validated model.

Plain settings come from `Pulumi.<stack>.yaml` (`mcpfleet:<key>`); secrets only from
`pulumi config set --secret` (or are generated for dev). A bad value stops the program
with a message naming the key, e.g. `mcpfleet:apps.db.replicas`.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from alerts.names import AGENTS_NAMESPACE as AGENTS_NAMESPACE
from alerts.names import APP_NAMESPACE as APP_NAMESPACE
from alerts.names import AUTH_NAMESPACE as AUTH_NAMESPACE
from alerts.names import AUTHZ_PORT as AUTHZ_PORT
from alerts.names import DATA_NAMESPACE as DATA_NAMESPACE
from alerts.names import OBSERVABILITY_NAMESPACE as OBSERVABILITY_NAMESPACE
from apps.kit import KitSettings, TokenProfileName

NAMESPACE = "mcpfleet"
KIT_RATE_LIMIT = KitSettings.model_fields["rate_limit_per_minute"]
REPO = Path(__file__).resolve().parents[1]  # where the stack files are
AUTHZ_HOST = f"authz.{AUTH_NAMESPACE}.svc"  # the local authorization server, in the cluster and the composition


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Resources(Model):
    cpu_request: str = "250m"
    memory_request: str = "256Mi"
    cpu_limit: str = "500m"
    memory_limit: str = "512Mi"

    @property
    def cpu_limit_cores(self) -> float:
        """The CPU limit (`500m`, `2`) in cores."""
        return int(self.cpu_limit[:-1]) / 1000 if self.cpu_limit.endswith("m") else float(self.cpu_limit)

    @property
    def memory_limit_mib(self) -> int:
        """The memory limit (`512Mi`, `1Gi`) in MiB."""
        units = {"Mi": 1, "Gi": 1024}
        return int(float(self.memory_limit[:-2]) * units[self.memory_limit[-2:]])


class VolumeConfig(Model):
    """Size and storage class of a volume the app declares (`Needs.volumes`)."""

    size: str = Field(default="1Gi", pattern=r"^[0-9]+(Mi|Gi|Ti)$")
    storage_class: str | None = None  # the cluster's default when unset
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany"] = "ReadWriteOnce"
    read_only: bool = False  # mount it read-only whatever the app's settings say


class EgressConfig(Model):
    """An in-network address an app that declares `external_egress` may reach (an SMTP relay): what is not
    HTTP(S). A host outside the network is reached by name through the egress proxy, never by address."""

    cidr: IPv4Network | IPv6Network
    port: int = Field(ge=1, le=65535)

    @model_validator(mode="after")
    def _in_network(self) -> EgressConfig:
        if not self.cidr.is_private:
            raise ValueError(
                f"egress {self.cidr} is not an in-network block: an outside host is reached by name through the "
                "egress proxy (the app declares it: Needs.outside_hosts, or a setting naming it)"
            )
        return self


def stack_config(stack: str) -> dict[str, Any]:
    """The `config` of `Pulumi.<stack>.yaml` as written, read the way `pulumi up` reads it (no Pulumi CLI needed)."""
    document = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text()) or {}
    return dict(document.get("config") or {})


class AppConfig(Model):
    """One focused MCP app; the seed's numbers are the defaults. What it may reach is the app's own
    declaration (`Needs` in its server module); the stack gives sizes, addresses and secrets for it."""

    module: str = Field(pattern=r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)+$")  # the command: python -m <module>
    resource_url: HttpUrl  # the audience its tokens carry (its public URL)
    replicas: int = Field(default=3, ge=1, le=100)
    max_replicas: int = Field(default=10, ge=1, le=200)
    target_cpu_utilization: int = Field(default=70, ge=10, le=100)
    resources: Resources = Resources()
    # the kit's own default and bounds: one definition (`KitSettings`), refused here as the app would refuse it
    rate_limit_per_minute: Annotated[int, *KIT_RATE_LIMIT.metadata] = KIT_RATE_LIMIT.default
    volumes: dict[str, VolumeConfig] = Field(default_factory=dict)
    egress: list[EgressConfig] = Field(default_factory=list)
    # The app's own settings (its settings class, as environment variables), e.g. FILES_ROOTS; checked
    # against that class before anything is deployed. Platform settings and secrets are not set here.
    settings: dict[str, str] = Field(default_factory=dict)
    # On the one-machine target only, over `settings`: what differs there (a webhook target that is the
    # composition's own sink); checked the same way.
    one_machine_settings: dict[str, str] = Field(default_factory=dict)
    # Where it runs: the cluster, or serverless (`infra/components/cloud_run.py`, `lambda_app.py`) for a
    # low-traffic server; its declaration (Needs, settings, secrets) is the same. Serverless: `maxReplicas` is
    # the most instances, `minInstances` the fewest (0: scale to zero), `concurrency` the requests one instance
    # takes at once (Lambda: always 1 per sandbox).
    target: Literal["kubernetes", "cloudrun", "lambda"] = "kubernetes"
    min_instances: int = Field(default=0, ge=0, le=100)
    concurrency: int = Field(default=40, ge=1, le=1000)

    @property
    def serverless(self) -> bool:
        return self.target != "kubernetes"

    @model_validator(mode="after")
    def _serverless_has_no_volume(self) -> AppConfig:
        if self.serverless and self.volumes:
            raise ValueError(f"target {self.target} has no volumes: run an app with volumes on kubernetes")
        if self.serverless and self.min_instances > self.max_replicas:
            raise ValueError("minInstances must be <= maxReplicas")
        return self

    @model_validator(mode="after")
    def _max_covers_min(self) -> AppConfig:
        if self.max_replicas < self.replicas and not self.serverless:  # serverless: minInstances instead
            raise ValueError("maxReplicas must be >= replicas")
        single_node = [name for name, v in self.volumes.items() if v.access_mode == "ReadWriteOnce"]
        if single_node and self.max_replicas > 1:
            raise ValueError(
                f"volume(s) {single_node} are ReadWriteOnce (one node): set replicas and maxReplicas to 1, "
                "or accessMode ReadWriteMany"
            )
        return self


class ClusterConfig(Model):
    mode: Literal["kind", "existing"] = "kind"
    name: str = Field(default="mcpfleet", pattern=r"^[a-z0-9-]{1,40}$")
    context: str | None = None  # existing: a kubeconfig context (default: the current one)
    image: str | None = None  # existing: the apps image in a registry, pinned (no :latest)
    # existing, with identity.provider local: the authorization server's image (`authz/`) in a registry, pinned
    authz_image: str | None = None
    # kind: the laptop port (on 127.0.0.1 only) that reaches the dev ingress controller's HTTPS entry point;
    # routed resourceUrls name it unless it is 443
    https_port: int = Field(default=443, ge=1, le=65535)
    # Where the API server's endpoints are (what Prometheus's discovery, kube-state-metrics and the collector's
    # k8sattributes reach, on 443 and 6443): in-network blocks only; narrow them to the control plane's.
    api_server_cidrs: list[IPv4Network | IPv6Network] = Field(
        default_factory=lambda: [ip_network(b) for b in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")],
        min_length=1,
    )

    @model_validator(mode="after")
    def _api_server_in_network(self) -> ClusterConfig:
        public = [str(block) for block in self.api_server_cidrs if not block.is_private]
        if public:
            raise ValueError(f"apiServerCidrs must be in-network (private) blocks, not {public}")
        return self

    @model_validator(mode="after")
    def _image_for_existing(self) -> ClusterConfig:
        if self.mode == "existing":
            if not self.image:
                raise ValueError("image is required when mode is existing (a registry reference)")
            for key, reference in (("image", self.image), ("authzImage", self.authz_image)):
                if reference and (":" not in reference.rsplit("/", 1)[-1] or reference.endswith(":latest")):
                    raise ValueError(f"{key} must be pinned to a tag or digest, not latest")
        return self


class PostgresConfig(Model):
    mode: Literal["statefulset", "external"] = "statefulset"
    storage: str = "5Gi"
    database: str = Field(default="mcpfleet", pattern=r"^[a-z_][a-z0-9_]*$")
    host: str | None = None  # external: the managed instance's host
    # external: the addresses `host` resolves to, as a CIDR. A NetworkPolicy names addresses, not host names,
    # so the apps' egress to the database is opened to exactly this block and port.
    cidr: IPv4Network | IPv6Network | None = None
    port: int = Field(default=5432, ge=1, le=65535)
    # The server's max_connections: the statefulset is started with it; for an external database, what the
    # managed instance allows. Every app's pools at its largest scale must fit (`infra.fleet.check_connections`).
    max_connections: int = Field(default=100, ge=10, le=100_000)

    @model_validator(mode="after")
    def _host_for_external(self) -> PostgresConfig:
        if self.mode == "external" and not (self.host and self.cidr):
            raise ValueError("host and cidr are required when mode is external")
        return self


class AuditExportConfig(Model):
    """A SIEM that also receives the audit stream (OTLP/HTTP logs: Splunk, Elastic, Sentinel and Datadog take it).

    `logsUrl` is the full logs endpoint (`https://siem.example.com/v1/logs`): https outside the cluster, reached
    through the collector's own port on the egress proxy. `header` names the header that carries the SIEM's
    credential (`Authorization`, `X-Splunk-Token`); its value is the secret `mcpfleet:auditExportCredential`."""

    logs_url: HttpUrl
    header: str | None = Field(default=None, pattern=r"^[A-Za-z][A-Za-z0-9-]*$")

    @model_validator(mode="after")
    def _https_outside_the_cluster(self) -> AuditExportConfig:
        if self.logs_url.scheme != "https" and not in_cluster_host(self.logs_url.host or ""):
            raise ValueError("logsUrl must be https unless it names a Service in the cluster")
        return self


class MonitoringConfig(Model):
    """A Prometheus and Alertmanager the platform does not deploy (`observability.mode` operator or external):
    where they run, the labels of the Prometheus pods that scrape (the NetworkPolicies admit those alone), their
    URLs (the on-call server reads them), and for the Prometheus Operator the labels its selectors match
    (kube-prometheus-stack's default: `release: <its release name>`) and the Grafana sidecar's dashboard label."""

    namespace: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    prometheus_labels: dict[str, str] = Field(default_factory=lambda: {"app.kubernetes.io/name": "prometheus"})
    prometheus_url: HttpUrl
    alertmanager_url: HttpUrl
    resource_labels: dict[str, str] = Field(default_factory=dict)
    dashboard_label: str = "grafana_dashboard"
    grafana_labels: dict[str, str] = Field(default_factory=lambda: {"app.kubernetes.io/name": "grafana"})
    alertmanager_labels: dict[str, str] = Field(default_factory=lambda: {"app.kubernetes.io/name": "alertmanager"})

    @model_validator(mode="after")
    def _in_its_namespace(self) -> MonitoringConfig:
        for url in (self.prometheus_url, self.alertmanager_url):
            host = url.host or ""
            if not in_cluster_host(host) or host.split(".")[1] != self.namespace:
                raise ValueError(f"{url} must name a Service in the monitoring namespace {self.namespace!r}")
        return self


class ObservabilityConfig(Model):
    # `bundled`: the platform deploys Prometheus, Alertmanager, Grafana and kube-state-metrics. `operator`: the
    # cluster runs the Prometheus Operator (kube-prometheus-stack): the platform hands it PrometheusRule,
    # PodMonitor/ServiceMonitor and AlertmanagerConfig objects and dashboards as ConfigMaps. `external`: a Prometheus
    # and Alertmanager in the cluster that their owners configure: they load alerts/mcp-rules.yml, the route of
    # alerts/alertmanager.yml and dashboards/ themselves; the platform admits their scrapes and points at them.
    # Loki and the collector are the platform's in every mode (the audit stream and the logs).
    mode: Literal["bundled", "operator", "external"] = "bundled"
    monitoring: MonitoringConfig | None = None
    webhook_url: HttpUrl = HttpUrl("http://alert-receiver.mcp-observability.svc:8080/alerts")
    # The audit stream also goes to a SIEM (it always goes to Loki): unset, it stays in the cluster.
    audit_export: AuditExportConfig | None = None
    # Head sampling of traces (parent-based: a caller's sampled trace is always kept). Alerts and dashboards
    # read the apps' own metrics, which count every call; traces are for finding out why.
    trace_sample_ratio: float = Field(default=0.1, ge=0, le=1)
    prometheus_retention: str = Field(default="15d", pattern=r"^[0-9]+[dhw]$")

    @model_validator(mode="after")
    def _monitoring_when_not_bundled(self) -> ObservabilityConfig:
        if (self.mode == "bundled") != (self.monitoring is None):
            raise ValueError(
                "monitoring (namespace, prometheusUrl, alertmanagerUrl) is set exactly when mode is "
                "operator or external"
            )
        return self

    @property
    def bundled(self) -> bool:
        return self.mode == "bundled"

    def scraper(self) -> tuple[str, dict[str, str]]:
        """The Prometheus pods that scrape the apps, the proxy's meter and the collector: namespace and labels."""
        if self.monitoring is None:
            return OBSERVABILITY_NAMESPACE, {"app.kubernetes.io/name": "prometheus"}
        return self.monitoring.namespace, self.monitoring.prometheus_labels

    prometheus_storage: str = "10Gi"
    loki_storage: str = "10Gi"
    grafana_storage: str = "1Gi"


def in_cluster_host(host: str) -> bool:
    """A Service's name (`name.namespace.svc`, optionally `.cluster.local`): reached in the cluster, not routed."""
    return host.endswith(".svc") or host.endswith(".svc.cluster.local")


class RoutesConfig(Model):
    """How an app whose resourceUrl names a host outside the cluster is reached: an Ingress per app for that
    host, with TLS, routing only its MCP path and its RFC 9728 metadata path. (Gateway API HTTPRoute: not yet.)"""

    class_name: str = "nginx"  # the IngressClass; nginx also gets its body-size and streaming annotations
    cluster_issuer: str | None = None  # cert-manager issues `<app>-tls` for each host
    tls_secret: str | None = None  # or an existing certificate Secret in the apps namespace (a wildcard)
    # or (kind only) the program issues one self-signed certificate for every routed host, exported as
    # `dev_certificate` for clients to trust
    self_signed: bool = False

    @model_validator(mode="after")
    def _one_tls_source(self) -> RoutesConfig:
        if sum(map(bool, (self.cluster_issuer, self.tls_secret, self.self_signed))) > 1:
            raise ValueError("set one of clusterIssuer, tlsSecret and selfSigned")
        return self

    @property
    def secret_name(self) -> str | None:
        """The one certificate Secret every route uses, unless cert-manager issues one per app."""
        return SELF_SIGNED_SECRET if self.self_signed else self.tls_secret


SELF_SIGNED_SECRET = "mcpfleet-self-signed-tls"  # noqa: S105 (a Secret's name)


class GcpConfig(Model):
    """Where Cloud Run apps run: a project and region, and the VPC their traffic goes through (Direct VPC
    egress, all traffic: the database, Redis and any outside host are reached under the VPC's own rules)."""

    project: str = Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
    region: str = Field(pattern=r"^[a-z]+-[a-z]+[0-9]$")
    network: str
    subnetwork: str
    notification_channels: list[str] = Field(default_factory=list)  # Cloud Monitoring channels its alerts page


class AwsConfig(Model):
    """Where Lambda apps run: a region, and the VPC subnets and security groups their traffic goes through."""

    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")
    subnet_ids: list[str] = Field(min_length=1)
    security_group_ids: list[str] = Field(min_length=1)
    alarm_topic_arn: str | None = None  # the SNS topic its CloudWatch alarms notify
    # SnapStart: a new sandbox resumes from a snapshot taken once the modules are loaded (most of a cold start)
    # instead of loading them; Lambda bills the snapshot's cache and each restore per GB (its pricing page).
    snap_start: bool = True


class ServerlessConfig(Model):
    gcp: GcpConfig | None = None
    aws: AwsConfig | None = None
    # Where serverless apps send spans (OTLP/HTTP): a collector they can reach through the VPC, or the cloud's
    # own endpoint; nothing scrapes an instance that may not exist, so their telemetry leaves by push only.
    otlp_endpoint: HttpUrl | None = None


class PersonConfig(Model):
    """A development login of the local authorization server, and the scopes that person may grant a client."""

    scopes: list[str] = Field(min_length=1)


class KeycloakConfig(Model):
    """A Keycloak the platform configures (pulumi-keycloak; its admin credentials are the `keycloak:` provider's
    own configuration): a realm, a client scope per server scope, an audience mapper per resource URL."""

    url: HttpUrl  # the Keycloak server, e.g. https://sso.example.com
    realm: str = Field(default="mcpfleet", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    existing_realm: bool = False  # configure a realm someone else created, instead of creating it
    # Anonymous dynamic registration (what MCP clients do): allowed from these redirect hosts only (Keycloak's
    # "Trusted Hosts" policy); empty: no anonymous registration, clients are registered by an administrator.
    registration_trusted_hosts: list[str] = Field(default_factory=list)

    @property
    def issuer(self) -> str:
        return f"{str(self.url).rstrip('/')}/realms/{self.realm}"


class Auth0Config(Model):
    """An Auth0 tenant the platform configures (pulumi-auth0; its credentials are the `auth0:` provider's own
    configuration): an API (resource server) per app, identified by its resource URL, with its scopes."""

    domain: str = Field(pattern=r"^[a-z0-9.-]+$")  # the tenant's domain, e.g. mcpfleet.eu.auth0.com
    dynamic_registration: bool = True  # let MCP clients register themselves (the tenant's DCR flag)

    @property
    def issuer(self) -> str:
        return f"https://{self.domain}/"


class IdentityConfig(Model):
    """Who issues the tokens. `local`: the platform's own authorization server (`authz/`, oidc-provider), for the
    dev and one-machine stacks, with the `people` below; `keycloak` and `auth0`: a provider the platform
    configures from the same declarations; `external`: an issuer the platform does not manage, whose keys are at
    the stack's `jwksUrl`. Every server verifies tokens by the issuer's JWKS: no stack has a shared secret."""

    provider: Literal["local", "keycloak", "auth0", "external"] = "external"
    people: dict[str, PersonConfig] = Field(default_factory=dict)
    keycloak: KeycloakConfig | None = None
    auth0: Auth0Config | None = None
    # Where the provider's access tokens put audience, client, scopes and groups (`apps.kit.identity.profiles`):
    # by default the provider's own; an external issuer names its shape.
    token_profile: TokenProfileName | None = None
    # app -> audiences accepted besides its resource URL, as the provider writes them (Entra's application ID URI)
    accepted_audiences: dict[str, list[str]] = Field(default_factory=dict)

    @property
    def profile(self) -> TokenProfileName:
        defaults: dict[str, TokenProfileName] = {"keycloak": "keycloak", "auth0": "auth0"}
        return self.token_profile or defaults.get(self.provider, "rfc9068")

    @model_validator(mode="after")
    def _provider_has_its_settings(self) -> IdentityConfig:
        for name in ("keycloak", "auth0"):
            given = getattr(self, name) is not None
            if given != (self.provider == name):
                raise ValueError(f"identity.{name} is the settings of provider {name}: set both, or neither")
        return self

    @model_validator(mode="after")
    def _people_are_local(self) -> IdentityConfig:
        if self.people and self.provider != "local":
            raise ValueError("identity.people are logins of the local authorization server: provider local")
        if self.provider == "local" and not self.people:
            raise ValueError("identity.provider local needs at least one login in identity.people")
        for login in self.people:
            if not login.replace("-", "").isalnum() or not login.islower():
                raise ValueError(f"identity.people: login {login!r} must be lower-case letters, digits and dashes")
        return self


class StackConfig(Model):
    cluster: ClusterConfig = ClusterConfig()
    # The tokens' `iss`, compared verbatim, so kept exactly as written: the local authorization server's public
    # URL, or the external issuer's.
    issuer: str
    identity: IdentityConfig = IdentityConfig()
    jwks_url: HttpUrl | None = None  # the external issuer's signing keys (the local one's are derived)
    # The organisation's Cedar policies: a folder of this project holding `<app>/*.cedar` (`apps.kit.call.policy`);
    # each app's are checked against its tools before anything is created, and mounted for it.
    policies: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_./-]{1,200}$")

    @model_validator(mode="after")
    def _local_issuer_has_an_image(self) -> StackConfig:
        if self.identity.provider == "local" and self.cluster.mode == "existing" and not self.cluster.authz_image:
            raise ValueError("identity.provider local on an existing cluster: set cluster.authzImage")
        return self

    @model_validator(mode="after")
    def _issuer_and_keys(self) -> StackConfig:
        HttpUrl(self.issuer)
        identity = self.identity
        if identity.provider == "external" and self.jwks_url is None:
            raise ValueError("identity.provider external: set jwksUrl, the issuer's signing keys")
        if identity.provider != "external" and self.jwks_url is not None:
            raise ValueError(f"identity.provider {identity.provider} publishes its keys where the platform knows: "
                             "remove jwksUrl")  # fmt: skip
        managed = identity.keycloak or identity.auth0
        if managed is not None and self.issuer != managed.issuer:
            raise ValueError(f"identity.provider {identity.provider}: issuer must be {managed.issuer}")
        if stray := set(identity.accepted_audiences) - set(self.apps):
            raise ValueError(f"identity.acceptedAudiences names apps the stack has not: {sorted(stray)}")
        return self

    apps: dict[str, AppConfig] = Field(min_length=1)
    postgres: PostgresConfig = PostgresConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    allow_load_balancer: bool = False
    ingress_namespace: str = "ingress-nginx"
    routes: RoutesConfig = RoutesConfig()
    redis_failure_mode: Literal["local", "open", "closed"] = "local"
    serverless: ServerlessConfig = ServerlessConfig()

    @property
    def keys_url(self) -> str:
        """Where every server fetches the issuer's signing keys: the local authorization server's JWKS at its
        in-cluster name (the one-machine composition answers to it too), or the external issuer's."""
        if self.identity.provider == "local":
            return f"http://{AUTHZ_HOST}:{AUTHZ_PORT}/jwks"
        if self.identity.keycloak is not None:
            return f"{self.identity.keycloak.issuer}/protocol/openid-connect/certs"
        if self.identity.auth0 is not None:
            return f"{self.identity.auth0.issuer}.well-known/jwks.json"
        return str(self.jwks_url)

    def on_cluster(self) -> dict[str, AppConfig]:
        return {name: app for name, app in self.apps.items() if not app.serverless}

    @model_validator(mode="after")
    def _serverless_targets_have_a_place(self) -> StackConfig:
        for name, app in self.apps.items():
            cloud = {"cloudrun": self.serverless.gcp, "lambda": self.serverless.aws}.get(app.target, True)
            if cloud is None:
                where = "serverless.gcp" if app.target == "cloudrun" else "serverless.aws"
                raise ValueError(f"apps.{name} targets {app.target}: set {where}")
            if app.serverless and urlsplit(str(app.resource_url)).scheme != "https":
                raise ValueError(f"apps.{name}.resourceUrl must be https: {app.target} serves it publicly")
        return self

    def routed(self) -> dict[str, AppConfig]:
        """The cluster's apps reached from outside it: their resourceUrl's host is not a Service name. (A
        serverless app is reached at its platform's own endpoint.)"""
        return {
            name: app
            for name, app in self.on_cluster().items()
            if not in_cluster_host((urlsplit(str(app.resource_url)).hostname or "").lower())
        }

    def issuer_routed(self) -> bool:
        """The local authorization server is reached from outside the cluster (its issuer is not a Service name):
        routed like an app, with TLS, at the issuer's host."""
        host = (urlsplit(self.issuer).hostname or "").lower()
        return self.identity.provider == "local" and not in_cluster_host(host)

    @model_validator(mode="after")
    def _routes_have_tls(self) -> StackConfig:
        if self.issuer_routed():
            if urlsplit(self.issuer).scheme != "https":
                raise ValueError(f"issuer {self.issuer} is outside the cluster, so it is routed with TLS: use https")
            if not (self.routes.cluster_issuer or self.routes.secret_name):
                raise ValueError(
                    "the local issuer is routed from outside the cluster: set routes.clusterIssuer, routes.tlsSecret "
                    "or, on kind, routes.selfSigned"
                )
        for name, app in self.routed().items():
            if urlsplit(str(app.resource_url)).scheme != "https":
                raise ValueError(
                    f"apps.{name}.resourceUrl {app.resource_url} is outside the cluster, so it is routed with TLS: "
                    "use https (or a Service name, name.namespace.svc, for an in-cluster app)"
                )
        if self.routed() and not (self.routes.cluster_issuer or self.routes.secret_name):
            raise ValueError(
                f"apps {sorted(self.routed())} are routed from outside the cluster: set routes.clusterIssuer "
                "(cert-manager), routes.tlsSecret (a certificate Secret in the apps namespace) or, on kind, "
                "routes.selfSigned"
            )
        if self.cluster.mode == "kind":
            for name, app in self.routed().items():
                if (urlsplit(str(app.resource_url)).port or 443) != self.cluster.https_port:
                    raise ValueError(
                        f"apps.{name}.resourceUrl {app.resource_url} must name cluster.httpsPort "
                        f"{self.cluster.https_port}: kind serves the routes on that laptop port"
                    )
        if self.routes.self_signed and self.cluster.mode != "kind":
            raise ValueError("routes.selfSigned is for a kind cluster on a laptop: use clusterIssuer or tlsSecret")
        return self

    @model_validator(mode="after")
    def _app_names(self) -> StackConfig:
        for name in self.apps:
            if not name.replace("-", "").isalnum() or not name.islower():
                raise ValueError(f"app name {name!r} must be lower-case letters, digits and dashes")
        return self


KEYS = [field.alias or name for name, field in StackConfig.model_fields.items()]


class StackConfigError(ValueError):
    """Invalid stack configuration; the message names each bad key."""


def parse(values: dict[str, Any]) -> StackConfig:
    try:
        return StackConfig.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as error:
        problems = []
        for err in error.errors(include_input=False, include_url=False):
            key = ".".join(str(p) for p in err["loc"])
            problems.append(f"  {NAMESPACE}:{key}: {err['msg'].removeprefix('Value error, ')}")
        raise StackConfigError("invalid stack configuration:\n" + "\n".join(problems)) from None


def _value(raw: str | None) -> Any:
    """Pulumi hands structured values over as JSON and plain ones as text."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def load() -> StackConfig:
    """Read every known key from the current stack's config."""
    import pulumi

    config = pulumi.Config(NAMESPACE)
    return parse({key: _value(config.get(key)) for key in KEYS})


def stack_values(stack_name: str) -> dict[str, Any]:
    """The stack's `mcpfleet:` keys as written in `Pulumi.<stack>.yaml`, without the prefix."""
    prefix = f"{NAMESPACE}:"
    return {
        key.removeprefix(prefix): value for key, value in stack_config(stack_name).items() if key.startswith(prefix)
    }


def load_stack(stack_name: str) -> StackConfig:
    """The stack's model from `Pulumi.<stack>.yaml`, as `pulumi up` validates it (no Pulumi CLI needed)."""
    return parse(stack_values(stack_name))
