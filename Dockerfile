# One image for every focused MCP server; the app is chosen by command:
#   docker run IMAGE apps.db
# and the same image runs on AWS Lambda with the runtime client as its command:
#   awslambdaric apps.lambda_main.handler   (with MCP_SERVER=apps.db)
# BASE_IMAGE defaults to the pinned official slim Python image (infra/images.py, the one pin; a test holds
# this line to it); the offline build passes a local Debian base.
ARG BASE_IMAGE=python:3.11.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG UV_VERSION=0.13.9
# Extra CA certificates (a TLS-intercepting proxy) can be supplied in certs/; none are needed otherwise.
COPY certs/ /usr/local/share/ca-certificates/
RUN (command -v update-ca-certificates >/dev/null && update-ca-certificates >/dev/null || true) \
 && python3 -m venv /opt/uv \
 && /opt/uv/bin/pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"
ENV UV_NATIVE_TLS=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN /opt/uv/bin/uv sync --locked --no-dev --no-install-project --python "$(command -v python3)"

FROM ${BASE_IMAGE}
RUN groupadd --system --gid 10001 mcp && useradd --system --uid 10001 --gid mcp --no-create-home mcp
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
COPY apps/ /app/apps/
COPY sidecars/ /app/sidecars/
COPY runbooks/ /app/runbooks/
# The apps' bytecode, compiled once here: the root filesystem is read-only at run time (and
# PYTHONDONTWRITEBYTECODE), so without it every start (every serverless cold start) compiles them again.
RUN python -m compileall -q -j 0 /app/apps /app/sidecars
ENV PATH=/app/.venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PORT=8080
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\",\"8080\")}/health', timeout=2)"
ENTRYPOINT ["python", "-m"]
CMD ["apps.db"]
