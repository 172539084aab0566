"""The egress meter counts Squid's log lines by client and verdict, with labels bounded whatever arrives."""

from __future__ import annotations

import json

from sidecars.egress_meter import EgressMeter


def line(app: str, verdict: str, host: str = "api.example.com") -> bytes:
    return json.dumps({"event": "egress", "app": app, "host": host, "verdict": verdict, "status": 403}).encode()


def counts(meter: EgressMeter) -> dict[tuple[str, str], float]:
    return {
        (s.labels["app"], s.labels["verdict"]): s.value
        for metric in meter.registry.collect()
        if metric.name == "mcp_egress_requests"
        for s in metric.samples
        if s.name.endswith("_total")
    }


def test_denials_and_allowed_requests_are_counted_per_client():
    meter = EgressMeter(["mcp-db", "mcp-notify"])
    assert set(counts(meter).values()) == {0.0} and len(counts(meter)) == 4  # there before the first request
    meter.record(line("mcp-db", "TCP_DENIED") + b"\n" + line("mcp-db", "TCP_TUNNEL"))  # two lines, one datagram
    meter.record(line("mcp-db", "TCP_DENIED_REPLY"))
    assert counts(meter)[("mcp-db", "denied")] == 2
    assert counts(meter)[("mcp-db", "allowed")] == 1
    assert counts(meter)[("mcp-notify", "denied")] == 0


def test_a_flood_of_hosts_and_names_adds_no_series_and_garbage_is_counted_apart():
    meter = EgressMeter(["mcp-db"])
    for n in range(1000):  # a compromised app trying many hosts, or lines naming clients that do not exist
        meter.record(line("mcp-db", "TCP_DENIED", host=f"h{n}.example"))
        meter.record(line(f"forged-{n}", "TCP_DENIED"))
    meter.record(b"not json\n[1, 2]\n\xff\xfe")
    assert counts(meter) == {("mcp-db", "allowed"): 0, ("mcp-db", "denied"): 1000, ("unknown", "denied"): 1000}
    unreadable = next(m for m in meter.registry.collect() if m.name == "mcp_egress_log_unreadable")
    assert next(s.value for s in unreadable.samples if s.name.endswith("_total")) == 3
