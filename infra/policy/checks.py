"""The policy rules as plain functions over Kubernetes objects (camelCase dicts, as Pulumi sees them).

The policy pack (`infra/policy/__main__.py`) runs them on `pulumi up --policy-pack infra/policy`;
the tests run them on every object of both stacks and on deliberately bad objects.
A pod template may exempt itself from a rule with the annotation
`mcpfleet.io/policy-exempt: "<rule>: <reason>"`, which keeps every exception visible and explained.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from typing import Any

from infra.authz import ROUTE_COMPONENT, ROUTED
from infra.config import DATA_NAMESPACE

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet"}
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIAL)", re.I)
CREDENTIAL_IN_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@", re.I)
EXEMPT = "mcpfleet.io/policy-exempt"
POLICIES_FOR = "mcpfleet.dev/policies-for"  # on an app's Cedar policies: the server module they must fit


def kind_of(resource_type: str) -> str:
    return resource_type.rsplit(":", 1)[-1]


def pod_template(kind: str, props: dict[str, Any]) -> dict[str, Any] | None:
    if kind not in WORKLOADS:
        return None
    template = (props.get("spec") or {}).get("template")
    return template if isinstance(template, dict) else None


def containers(template: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = template.get("spec") or {}
    yield from spec.get("initContainers") or []
    yield from spec.get("containers") or []


def exempt(template: dict[str, Any], rule: str) -> bool:
    note = ((template.get("metadata") or {}).get("annotations") or {}).get(EXEMPT, "")
    return note.split(":", 1)[0].strip() == rule and ":" in note and bool(note.split(":", 1)[1].strip())


def check_image(reference: str) -> str | None:
    name = reference.rsplit("/", 1)[-1]
    if "@sha256:" in reference:
        return None
    if ":" not in name:
        return f"image {reference!r} has no tag: pin a version"
    if name.endswith(":latest"):
        return f"image {reference!r} uses :latest: pin a version"
    return None


def check_resource(resource_type: str, props: dict[str, Any], allow_load_balancer: bool = False) -> list[str]:
    """Violations of the per-object rules, as messages naming the object and the rule."""
    kind = kind_of(resource_type)
    name = (props.get("metadata") or {}).get("name", "?")
    where = f"{kind} {name}"
    problems: list[str] = []
    if kind == "Service" and (props.get("spec") or {}).get("type") == "LoadBalancer" and not allow_load_balancer:
        problems.append(f"{where}: LoadBalancer Services are not allowed (set allowLoadBalancer to permit)")
    if kind == "NetworkPolicy":
        problems += egress_problems(where, props)
    if kind == "Ingress":
        problems += route_problems(where, props)
    if kind == "ConfigMap" and POLICIES_FOR in ((props.get("metadata") or {}).get("annotations") or {}):
        problems += policy_problems(where, props)
    template = pod_template(kind, props)
    if template is None:
        return problems
    pod_context = (template.get("spec") or {}).get("securityContext") or {}
    for container in containers(template):
        c = f"{where} container {container.get('name')}"
        limits = (container.get("resources") or {}).get("limits") or {}
        requests = (container.get("resources") or {}).get("requests") or {}
        for resource in ("cpu", "memory"):
            if resource not in requests:
                problems.append(f"{c}: missing {resource} request")
            if resource not in limits:
                problems.append(f"{c}: missing {resource} limit")
        if kind in LONG_RUNNING:
            for probe in ("livenessProbe", "readinessProbe"):
                if not container.get(probe):
                    problems.append(f"{c}: missing {probe}")
        if problem := check_image(str(container.get("image", ""))):
            problems.append(f"{c}: {problem}")
        context = container.get("securityContext") or {}
        non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True
        if not non_root and not exempt(template, "non-root"):
            problems.append(f"{c}: must run as non-root (runAsNonRoot: true)")
        if context.get("readOnlyRootFilesystem") is not True and not exempt(template, "read-only-root"):
            problems.append(f"{c}: root filesystem must be read-only (readOnlyRootFilesystem: true)")
        for env in container.get("env") or []:
            value = env.get("value")
            if (
                isinstance(value, str)
                and value
                and (SECRET_NAME.search(env.get("name", "")) or CREDENTIAL_IN_URL.search(value))
            ):
                problems.append(f"{c}: env {env.get('name')} looks like a secret literal; use secretKeyRef")
    return problems


EGRESS_PROXY = "egress-proxy"  # the one workload that reaches public addresses (by name, per app, in Squid)


def egress_problems(where: str, props: dict[str, Any]) -> list[str]:
    """No egress rule reaches "anywhere": each names its peers (`to`, DNS included); an address block is in-network
    (private), because an outside host is reached by name through the egress proxy, never by a public range."""
    spec = props.get("spec") or {}
    selects_proxy = (spec.get("podSelector") or {}).get("matchLabels", {}).get("app.kubernetes.io/name") == EGRESS_PROXY
    proxy = selects_proxy and (props.get("metadata") or {}).get("namespace") == DATA_NAMESPACE
    problems = []
    for rule in spec.get("egress") or []:
        ports = {p.get("port") for p in rule.get("ports") or []}
        if not rule.get("to"):
            problems.append(f"{where}: an egress rule without `to` reaches anywhere (ports {sorted(ports) or 'all'})")
        for peer in rule.get("to") or []:
            block = (peer.get("ipBlock") or {}).get("cidr")
            if block and not proxy and not ipaddress.ip_network(block, strict=False).is_private:
                problems.append(
                    f"{where}: egress to the public block {block}; reach outside hosts by name through the egress proxy"
                )
    return problems


WELL_KNOWN_RESOURCE = "/.well-known/oauth-protected-resource"
# On each MCP app's Deployment: the scopes its tools declare and its resource URL, which the identity provider the
# stack configures must define (`provider_problems`).
SCOPES_ANNOTATION = "mcpfleet.dev/scopes"
RESOURCE_ANNOTATION = "mcpfleet.dev/resource"
KEYCLOAK_SCOPE = "keycloak:openid/clientScope:ClientScope"
AUTH0_SCOPES = "auth0:index/resourceServerScopes:ResourceServerScopes"


def route_problems(where: str, props: dict[str, Any]) -> list[str]:
    """A route exposes an MCP endpoint and its RFC 9728 metadata, nothing else: Exact paths `<p>/mcp` and
    `/.well-known/oauth-protected-resource<p>/mcp`, to the Service's `http` port, every host under TLS."""
    spec = props.get("spec") or {}
    problems = []
    if spec.get("defaultBackend"):
        problems.append(f"{where}: a default backend routes every path")
    component = ((props.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/component")
    if component == ROUTE_COMPONENT:
        return problems + authorization_route_problems(where, spec)
    tls_hosts = {host for tls in spec.get("tls") or [] for host in tls.get("hosts") or []}
    for rule in spec.get("rules") or []:
        host = rule.get("host")
        if host not in tls_hosts:
            problems.append(f"{where}: host {host} is routed without TLS")
        paths = (rule.get("http") or {}).get("paths") or []
        endpoints = {p.get("path") for p in paths if not str(p.get("path")).startswith(WELL_KNOWN_RESOURCE)}
        mcp = {path for path in endpoints if str(path).endswith("/mcp")}
        # a server's declared pages (a connect page): Exact, under `<path>/connect/` beside its one endpoint
        pages = {p for p in endpoints if any(str(p).startswith(str(e).removesuffix("mcp") + "connect/") for e in mcp)}
        allowed = mcp | {WELL_KNOWN_RESOURCE + path for path in mcp} | pages
        for path in paths:
            if path.get("pathType") != "Exact" or path.get("path") not in allowed or len(endpoints - pages) != 1:
                problems.append(
                    f"{where}: route {path.get('pathType')} {path.get('path')} exposes more than one MCP endpoint "
                    "and its metadata (Exact <path>/mcp and /.well-known/oauth-protected-resource<path>/mcp only)"
                )
            port = ((path.get("backend") or {}).get("service") or {}).get("port") or {}
            if port.get("name") != "http":
                problems.append(f"{where}: route {path.get('path')} goes to port {port}, not the MCP port `http`")
    return problems


def authorization_route_problems(where: str, spec: dict[str, Any]) -> list[str]:
    """The local authorization server's route: its own OAuth paths (`infra.authz.ROUTED`), each as declared there,
    every host under TLS."""
    problems = []
    tls_hosts = {host for tls in spec.get("tls") or [] for host in tls.get("hosts") or []}
    for rule in spec.get("rules") or []:
        if rule.get("host") not in tls_hosts:
            problems.append(f"{where}: host {rule.get('host')} is routed without TLS")
        for path in (rule.get("http") or {}).get("paths") or []:
            if ROUTED.get(str(path.get("path"))) != path.get("pathType"):
                problems.append(
                    f"{where}: route {path.get('pathType')} {path.get('path')} is not one of the authorization "
                    f"server's paths ({', '.join(f'{kind} {p}' for p, kind in ROUTED.items())})"
                )
    return problems


RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
PSA_ENFORCE = "pod-security.kubernetes.io/enforce"


def restricted_profile(template: dict[str, Any]) -> list[str]:
    """What in a pod template the Pod Security Standard `restricted` would refuse (kubernetes.io, PSS)."""
    spec = template.get("spec") or {}
    pod = spec.get("securityContext") or {}
    problems = [f"host namespace {key}" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"volume {volume.get('name')} of type {', '.join(sorted(kinds))}")
    for container in containers(template):
        c = f"container {container.get('name')}"
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            problems.append(f"{c}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{c}: allowPrivilegeEscalation must be false")
        if context.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
            problems.append(f"{c}: runAsNonRoot must be true")
        if context.get("runAsUser", pod.get("runAsUser")) == 0:
            problems.append(f"{c}: runAsUser 0")
        seccomp = (context.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{c}: seccompProfile must be RuntimeDefault or Localhost")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{c}: capabilities must drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{c}: capabilities may add NET_BIND_SERVICE only")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            problems.append(f"{c}: hostPort")
    return problems


def _matches(selector: dict[str, Any], pod_labels: dict[str, str]) -> bool:
    wanted = selector.get("matchLabels") or {}
    return all(pod_labels.get(k) == v for k, v in wanted.items()) and not selector.get("matchExpressions")


def policy_problems(where: str, props: dict[str, Any]) -> list[str]:
    """An app's Cedar policies fit its server's tools (the schema its declarations give): a policy naming an unknown
    tool, resource type or attribute stops the deploy, with its file and line."""
    from apps.kit import PolicyError, cedar_schema, check_policies, default_policies
    from infra.fleet import load_server

    server = load_server(props["metadata"]["annotations"][POLICIES_FOR])
    texts = sorted((str(name), str(text)) for name, text in (props.get("data") or {}).items())
    try:
        check_policies(cedar_schema(server), texts, default_policies(server))
    except PolicyError as error:
        return [f"{where}: {line.strip()}" for line in str(error).splitlines()[1:]]
    return []


def provider_problems(resources: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Where the stack configures its identity provider (Keycloak client scopes, Auth0 API scopes), every scope each
    MCP app declares is defined there: else a client could never be granted it."""
    keycloak = {p.get("name") for t, p in resources if t == KEYCLOAK_SCOPE}
    auth0: dict[str, set[str]] = {}
    for t, p in resources:
        if t == AUTH0_SCOPES:
            auth0.setdefault(str(p.get("resourceServerIdentifier")), set()).update(
                s.get("name") for s in p.get("scopes") or []
            )
    if not keycloak and not auth0:
        return []  # the platform's own authorization server, or one it does not manage
    problems = []
    for t, p in resources:
        metadata = p.get("metadata") or {}
        declared = (metadata.get("annotations") or {}).get(SCOPES_ANNOTATION)
        if kind_of(t) != "Deployment" or declared is None:
            continue
        resource = (metadata.get("annotations") or {}).get(RESOURCE_ANNOTATION, "")
        defined = keycloak if keycloak else auth0.get(resource, set())
        for scope in declared.split():
            if scope not in defined:
                where = "Keycloak has no client scope" if keycloak else f"Auth0's API {resource} has no scope"
                problems.append(f"Deployment {metadata.get('name')}: {where} {scope!r}, which its tools declare")
    return problems


def check_stack(resources: Iterable[tuple[str, dict[str, Any]]]) -> list[str]:
    """Rules across objects: every MCP app Deployment has a PDB and is selected by a NetworkPolicy, every workload
    in a namespace that enforces Pod Security `restricted` meets that profile (found before admission), and the
    identity provider the stack configures defines every scope the apps declare."""
    resources = list(resources)
    objects = [(kind_of(t), p) for t, p in resources]
    problems = provider_problems(resources)
    levels = {
        (p.get("metadata") or {}).get("name"): ((p.get("metadata") or {}).get("labels") or {}).get(PSA_ENFORCE)
        for k, p in objects
        if k == "Namespace"
    }
    for kind, props in objects:
        template = pod_template(kind, props)
        namespace = (props.get("metadata") or {}).get("namespace")
        if template is not None and levels.get(namespace) == "restricted":
            where = f"{kind} {namespace}/{(props.get('metadata') or {}).get('name')}"
            problems += [f"{where}: Pod Security restricted: {p}" for p in restricted_profile(template)]
    for kind, props in objects:
        if kind != "Deployment":
            continue
        template = pod_template(kind, props) or {}
        pod_labels = (template.get("metadata") or {}).get("labels") or {}
        if pod_labels.get("app.kubernetes.io/component") != "mcp-server":
            continue
        namespace = (props.get("metadata") or {}).get("namespace")
        name = (props.get("metadata") or {}).get("name")
        same_ns = [(k, p) for k, p in objects if (p.get("metadata") or {}).get("namespace") == namespace]
        if not any(
            k == "PodDisruptionBudget" and _matches((p.get("spec") or {}).get("selector") or {}, pod_labels)
            for k, p in same_ns
        ):
            problems.append(f"Deployment {name}: no PodDisruptionBudget selects its pods")
        if not any(
            k == "NetworkPolicy"
            and (p.get("spec") or {}).get("podSelector", {}).get("matchLabels")
            and _matches((p.get("spec") or {}).get("podSelector") or {}, pod_labels)
            for k, p in same_ns
        ):
            problems.append(f"Deployment {name}: no NetworkPolicy selects its pods specifically")
    return problems
