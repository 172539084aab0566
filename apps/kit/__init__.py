"""The production layer every focused MCP server gets by composition.

Everything outside the kit imports what this package exports and nothing deeper (a test holds every server,
`infra/`, `onebox/`, `alerts/`, `dashboards/` and `bench/` to it), so the kit's rooms can move without
touching a server. Its families, bottom up:

- `declare`: what a server says about itself (tools, settings, needs, dashboard row, alerts, manifest);
- `wire`: the words every layer shares (JSON out, JSON-RPC codes, outcome and refusal vocabularies);
- `observe`: logs, metrics, traces, volumes, readiness;
- `upstream`: the hardened outbound HTTP client; `identity`: bearer tokens verified;
- `call`: one admitted JSON-RPC request, through the SDK's kernel to the tool;
- `http`: `/mcp` over HTTP, from shedding to the endpoint; `run`: the app, under uvicorn or serverless;
- `cli`: pin manifests, mint development tokens.
"""

import importlib
from typing import TYPE_CHECKING, Any

from apps.kit.call.admission import Admission
from apps.kit.call.asking import ask_person, can_ask_person
from apps.kit.call.pipeline import current_principal
from apps.kit.call.policy import Policies, PolicyError
from apps.kit.call.policy import check as check_policies
from apps.kit.cli.token import mint
from apps.kit.declare.config import (
    KitSettings,
    TokenProfileName,
    describe_errors,
    load_settings,
    settings_from_env,
    split_list,
)
from apps.kit.declare.manifest import DIGEST_META
from apps.kit.declare.needs import Needs, OutsideHost, Volume, role_password_variable, url_port
from apps.kit.declare.policy import On, cedar_schema, default_policies
from apps.kit.declare.server import FocusedServer, load_server
from apps.kit.declare.telemetry import AlertCase, Chart, DashboardRow, ServerAlert, Telemetry
from apps.kit.declare.tools import CallerError, ConnectRequired, Overloaded, ServerError, ToolArgs, WithMeta
from apps.kit.identity.linking import AccountLink, UpstreamClient
from apps.kit.identity.signin import BrowserSignIn
from apps.kit.identity.tokens import Principal
from apps.kit.identity.vault import TABLE_SQL as VAULT_TABLE_SQL
from apps.kit.identity.vault import Keyring, RefreshRefused, Tokens, TokenVault, VaultError
from apps.kit.observe.logs import MAX_LINE_CHARS, bounded, log_event, redact
from apps.kit.observe.metrics import SERVER_FAULT_OUTCOMES
from apps.kit.observe.probes import Check, ReadinessSource
from apps.kit.run.app import create_app, mount, resource_metadata_path
from apps.kit.run.serve import serve
from apps.kit.upstream import (
    Answer,
    AnswerTooLarge,
    Upstream,
    UpstreamRedirected,
    UpstreamUnavailable,
    read_capped,
    retry_after_seconds,
)
from apps.kit.wire.encoding import dumps

if TYPE_CHECKING:
    from apps.kit.cli.schema import apply as apply_schema
    from apps.kit.cli.schema import schema_files
    from apps.kit.run.serverless import LAMBDA_HANDLER, lambda_app

# What only the platform, the tests or a Lambda entry use, imported on first use: a server process does not load
# asyncpg (the schema command) or Mangum (the Lambda adapter) at start-up for them.
_ON_FIRST_USE = {
    "apply_schema": ("apps.kit.cli.schema", "apply"),
    "schema_files": ("apps.kit.cli.schema", "schema_files"),
    "LAMBDA_HANDLER": ("apps.kit.run.serverless", "LAMBDA_HANDLER"),
    "lambda_app": ("apps.kit.run.serverless", "lambda_app"),
}


def __getattr__(name: str) -> Any:
    if name not in _ON_FIRST_USE:
        raise AttributeError(f"module 'apps.kit' has no attribute {name!r}")
    module, attribute = _ON_FIRST_USE[name]
    return getattr(importlib.import_module(module), attribute)


__all__ = [
    "DIGEST_META",
    "LAMBDA_HANDLER",
    "MAX_LINE_CHARS",
    "SERVER_FAULT_OUTCOMES",
    "VAULT_TABLE_SQL",
    "AccountLink",
    "Admission",
    "AlertCase",
    "Answer",
    "AnswerTooLarge",
    "BrowserSignIn",
    "CallerError",
    "Chart",
    "Check",
    "ConnectRequired",
    "DashboardRow",
    "FocusedServer",
    "Keyring",
    "KitSettings",
    "Needs",
    "On",
    "OutsideHost",
    "Overloaded",
    "Policies",
    "PolicyError",
    "Principal",
    "ReadinessSource",
    "RefreshRefused",
    "ServerAlert",
    "ServerError",
    "Telemetry",
    "TokenProfileName",
    "TokenVault",
    "Tokens",
    "ToolArgs",
    "Upstream",
    "UpstreamClient",
    "UpstreamRedirected",
    "UpstreamUnavailable",
    "VaultError",
    "Volume",
    "WithMeta",
    "apply_schema",
    "ask_person",
    "bounded",
    "can_ask_person",
    "cedar_schema",
    "check_policies",
    "create_app",
    "current_principal",
    "default_policies",
    "describe_errors",
    "dumps",
    "lambda_app",
    "load_server",
    "load_settings",
    "log_event",
    "mint",
    "mount",
    "read_capped",
    "redact",
    "resource_metadata_path",
    "retry_after_seconds",
    "role_password_variable",
    "schema_files",
    "serve",
    "settings_from_env",
    "split_list",
    "url_port",
]
