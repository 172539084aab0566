"""The audit trail: one event per decision about a request, allowed or refused, for a SIEM to read.

Operational log lines say what the process did; these say who asked for what and what was decided, in a schema
a SIEM already knows: **OCSF's API Activity class** (class_uid 6003, OCSF 1.3.0). OCSF rather than CloudEvents
because CloudEvents is an envelope with no fields for actor, authorization or resource, while OCSF's class has
them (`actor.user`, `actor.authorizations[].decision` and `.policy`, `api.operation`, `resources[]`), and
Splunk, Sentinel, Security Lake and Elastic ingest OCSF as it is. What OCSF has no field for is under
`unmapped.mcp` (the tool, the arguments' digest, which layer decided). Arguments are never recorded: only the
SHA-256 of their canonical JSON, which matches the `input_sha256` of the operational line.

Each event is one JSON line on the process's output (its own stream: the collector routes lines whose
`class_uid` is 6003 to Loki's `mcpfleet_stream="audit"`), and **chained**: `unmapped.chain` holds the process's
chain id, a sequence number and the SHA-256 of the previous event's hash and this event, so a removed or altered
line breaks the chain (`python -m apps.kit.cli.audit verify`). A chain starts when its process does; removing
a chain's last lines is detected only by comparing the last sequence number with the process's own count
(`AuditTrail.recorded`); no metric exports it yet.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apps.kit.observe.logs import current_trace_id
from apps.kit.observe.output import write_line
from apps.kit.wire.encoding import dumps

OCSF_VERSION = "1.3.0"
API_ACTIVITY = 6003
GENESIS = "0" * 64
ACTIVITY = {"create": 1, "read": 2, "update": 3, "delete": 4, "other": 99}


def write_stdout(line: bytes) -> None:
    """An event on the process's output, with the other lines of this turn of the event loop."""
    write_line(line)


# Where events go (each gets the line as UTF-8 bytes, no newline): the process's output, the collector's stream.
# Written directly, neither through `logging` (its record, caller lookup and handler locks were half an event's
# cost) nor through the text layer; one serialisation, the hash spliced in; one write a turn of the loop.
SINKS: list[Callable[[bytes], None]] = [write_stdout]
_CHAIN_AT = b'"unmapped":{"chain":{'  # where the sorted event's chain opens: its "hash" sorts first


@dataclass(frozen=True)
class Who:
    subject: str | None
    client_id: str | None
    groups: tuple[str, ...] = ()


def chain_hash(previous: str, event: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the event's canonical JSON (its own hash left out)."""
    return hashlib.sha256(previous.encode() + dumps(event, sort_keys=True)).hexdigest()


class AuditTrail:
    def __init__(self, server: str, version: str, issuer: str):
        self.server, self.version, self.issuer = server, version, issuer
        self.chain = uuid.uuid4().hex
        self._previous, self._sequence = GENESIS, 0
        self._lock = threading.Lock()  # the chain is the process's: one writer at a time
        self._host = os.environ.get("HOSTNAME")
        # The same in every event: built once, serialised each time (orjson reads shared objects as any other)
        self._idp = {"name": issuer}
        self._service = {"name": server}
        self._product = {"name": "mcpfleet", "vendor_name": "mcpfleet", "version": version}
        self.recorded = 0

    def record(
        self,
        *,
        who: Who | None,
        allowed: bool,
        decided_by: str,  # "gate" (the HTTP checks), "scope", "rate_limit", "policy", "admission"
        outcome: str,
        tool: str | None = None,
        resource: dict[str, str] | None = None,
        activity: str = "other",
        arguments_sha256: str | None = None,
        policies: tuple[str, ...] = (),
        status_code: int | None = None,
    ) -> None:
        activity_id = ACTIVITY.get(activity, 99)
        event: dict[str, Any] = {
            "class_uid": API_ACTIVITY,
            "class_name": "API Activity",
            "category_uid": 6,
            "category_name": "Application Activity",
            "activity_id": activity_id,
            "type_uid": API_ACTIVITY * 100 + activity_id,
            "time": int(time.time() * 1000),
            "severity_id": 1 if allowed else 3,
            "status_id": 1 if allowed else 2,
            "status": "Success" if allowed else "Failure",
            "status_detail": outcome,
            "actor": {
                "user": {
                    "uid": who.subject if who else None,
                    "groups": [{"name": group} for group in who.groups] if who else [],
                },
                "app_uid": who.client_id if who else None,
                "idp": self._idp,
                "authorizations": [
                    {"decision": "allow" if allowed else "deny", "policy": {"uid": policy}} for policy in policies
                ],
            },
            "api": {"operation": "tools/call" if tool else "http", "service": self._service},
            "resources": [{"type": resource["type"], "uid": resource["id"]}] if resource else [],
            "metadata": {
                "version": OCSF_VERSION,
                "log_name": "audit",
                "product": self._product,
                "correlation_uid": current_trace_id(),
            },
            "unmapped": {
                "mcp": {
                    "tool": tool,
                    "decision": "allow" if allowed else "deny",
                    "decided_by": decided_by,
                    "arguments_sha256": arguments_sha256,
                    "http_status": status_code,
                    "host": self._host,
                }
            },
        }
        with self._lock:
            self._sequence += 1
            event["unmapped"]["chain"] = {"id": self.chain, "seq": self._sequence, "prev": self._previous}
            canonical = dumps(event, sort_keys=True)  # what the hash covers; the line is it with the hash added
            digest = hashlib.sha256(self._previous.encode() + canonical).hexdigest()
            self._previous = digest
            self.recorded += 1
            # Every string value is escaped JSON, so the only unescaped `"unmapped":{"chain":{` is the event's own.
            at = canonical.index(_CHAIN_AT) + len(_CHAIN_AT)
            line = b"".join((canonical[:at], b'"hash":"', digest.encode(), b'",', canonical[at:]))
            for sink in SINKS:
                sink(line)


def verify(lines: list[str]) -> list[str]:
    """What is wrong with these audit lines (other lines are skipped): per chain, a sequence gap (a removed event),
    a broken link or a hash that does not match (an altered event). Empty when every chain holds."""
    import json

    problems: list[str] = []
    chains: dict[str, tuple[int, str]] = {}  # chain id -> (last seq, last hash)
    for number, line in enumerate(lines, 1):
        if '"class_uid":6003' not in line:
            continue
        try:
            event = json.loads(line)
            link = event["unmapped"]["chain"]
        except (ValueError, KeyError, TypeError):
            problems.append(f"line {number}: not an audit event")
            continue
        last_seq, last_hash = chains.get(link["id"], (0, GENESIS))
        if link["seq"] != last_seq + 1:
            problems.append(f"line {number}: chain {link['id'][:8]} jumps from {last_seq} to {link['seq']}")
        if link["prev"] != last_hash and link["seq"] == last_seq + 1:
            problems.append(f"line {number}: chain {link['id'][:8]} does not follow its previous event")
        claimed = link.pop("hash", None)
        if chain_hash(link["prev"], event) != claimed:
            problems.append(f"line {number}: chain {link['id'][:8]} event {link['seq']} was altered")
        chains[link["id"]] = (link["seq"], claimed or "")
    return problems
