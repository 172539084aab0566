# Shared by scripts/test and scripts/up (sourced): the Python toolchain and the choice of images.

export MCPFLEET_STARTED=${MCPFLEET_STARTED:-$(date +%s)}
log() { printf '[%s %ss] %s\n' "${LOG_PREFIX:-mcpfleet}" "$(($(date +%s) - MCPFLEET_STARTED))" "$*" >&2; }  # since start

# uv (pinned), then the locked environment in .venv.
ensure_python_env() {
  export PATH="$HOME/.local/bin:$PATH"  # where pip --user puts uv
  if ! command -v uv >/dev/null; then
    log "installing uv"
    python3 -m pip install -q --user "uv==0.13.9" || python3 -m pip install -q "uv==0.13.9"
  fi
  uv sync --locked --quiet
}

# With no registry (and no MCPFLEET_IMAGE_* set), build stand-ins from Debian packages and use them. With two
# arguments (files), the overrides are written to the first for the caller to source and progress to the second,
# so it can run in the background.
use_offline_images_without_registry() {
  if ! env | grep -q '^MCPFLEET_IMAGE_' \
     && [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 https://registry-1.docker.io/v2/ || true)" != 401 ]; then
    if [ $# -eq 2 ]; then
      log "no registry reachable: building offline stand-in images from Debian packages (scripts/images-offline)" 2>>"$2"
      ./scripts/images-offline --print-env >"$1" 2>>"$2"
    else
      log "no registry reachable: using offline stand-in images built from Debian packages (scripts/images-offline)"
      eval "$(./scripts/images-offline --print-env)"
    fi
  fi
}

# `docker compose` (v2) or Debian's `docker-compose` (1.29), installed when root on Debian.
ensure_compose() {
  docker compose version >/dev/null 2>&1 && return 0
  command -v docker-compose >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing docker-compose"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; }
  fi
  docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null
}
