"""The egress proxy as rendered, read back from its squid.conf: who may reach what, on which port."""

from __future__ import annotations


def proxy_allowlists(stack) -> dict[str, set[str]]:
    """app -> the host:port pairs the rendered egress proxy lets it reach (read back from squid.conf)."""
    conf = stack.one("ConfigMap", "egress-proxy", "mcp-data")["data"]["squid.conf"].splitlines()
    apps = {line.split()[1]: line.split()[3] for line in conf if " myportname " in line}  # acl -> app
    values = {line.split()[1]: line.split()[3] for line in conf if " dstdomain " in line or " port " in line}
    allowed: dict[str, set[str]] = {app: set() for app in apps.values()}
    for line in conf:
        if line.startswith("http_access allow "):
            source, host_acl, port_acl = line.split()[2:5]
            allowed[apps[source]].add(f"{values[host_acl]}:{values[port_acl]}")
    return allowed


def proxy_ports(stack) -> dict[str, int]:
    """client -> its own listening port on the rendered egress proxy."""
    conf = stack.one("ConfigMap", "egress-proxy", "mcp-data")["data"]["squid.conf"].splitlines()
    ports = [line.split()[1:3] for line in conf if line.startswith("http_port ")]
    return {name.removeprefix("name="): int(port) for port, name in ports}
