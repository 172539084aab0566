"""Mint a development JWT signed with `MCP_JWT_SECRET`.

    python -m apps.kit.cli.token --sub alice --server apps.db --aud http://localhost:8080/mcp
    python -m apps.kit.cli.token --sub alice --scopes "db:read" --aud http://localhost:8080/mcp

`--server` grants every scope that server's tools declare (read from the server, not repeated here).

For local runs and tests only: production tokens come from the authorization server.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid

import jwt


def mint(
    secret: str,
    *,
    issuer: str,
    audience: str,
    subject: str,
    scopes: str,
    expires_in: int = 3600,
    client_id: str | None = None,
    algorithm: str = "HS256",
    now: float | None = None,
    extra: dict[str, object] | None = None,
) -> str:
    issued = int(now if now is not None else time.time())
    claims: dict[str, object] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "scope": scopes,
        "client_id": client_id or f"dev-{subject}",
        "iat": issued,
        "nbf": issued,
        "exp": issued + expires_in,
        "jti": uuid.uuid4().hex,
        **(extra or {}),
    }
    return jwt.encode(claims, secret, algorithm=algorithm)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apps.kit.cli.token", description=__doc__.splitlines()[0])
    parser.add_argument("--sub", required=True, help="token subject (the user)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("--scopes", default="", help='space-separated scopes, e.g. "db:read db:write"')
    scope.add_argument("--server", help="an app module (e.g. apps.db): grant every scope its tools declare")
    parser.add_argument("--aud", default=os.environ.get("MCP_RESOURCE_URL"), help="audience (default MCP_RESOURCE_URL)")
    parser.add_argument("--iss", default=os.environ.get("MCP_ISSUER"), help="issuer (default MCP_ISSUER)")
    parser.add_argument("--expires-in", type=int, default=3600, help="lifetime in seconds (negative: already expired)")
    parser.add_argument("--client-id", default=None)
    args = parser.parse_args(argv)
    secret = os.environ.get("MCP_JWT_SECRET", "")
    problems = [
        name
        for name, value in (
            ("MCP_JWT_SECRET", secret),
            ("--aud/MCP_RESOURCE_URL", args.aud),
            ("--iss/MCP_ISSUER", args.iss),
        )
        if not value
    ]
    if problems:
        print(f"missing: {', '.join(problems)}", file=sys.stderr)
        return 2
    if len(secret.encode()) < 32:
        print("MCP_JWT_SECRET must be at least 32 bytes", file=sys.stderr)
        return 2
    scopes = args.scopes
    if args.server:
        from apps.kit.declare.server import load_server

        scopes = " ".join(load_server(args.server).scopes)
    print(
        mint(
            secret,
            issuer=args.iss,
            audience=args.aud,
            subject=args.sub,
            scopes=scopes,
            expires_in=args.expires_in,
            client_id=args.client_id,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
