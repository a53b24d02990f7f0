# Sourced by the scripts that run stsvend against the local components outside the Rust
# test harness (tests/contract/run.sh, tests/bench/run.sh, tests/bench/soak.sh): a scratch
# folder whose processes are stopped on exit, free loopback ports, waiting for HTTP, the IdP
# and moto started in the background, and stsvend started against them. The caller defines
# `root`.

# A scratch folder `work` and the list `pids` of what to stop when the script exits.
scratch() { # name
  work="$(mktemp -d "/tmp/stsvend-$1.XXXXXX")"
  pids=()
  trap 'for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT
}

# wrk from Debian, installed when missing (as root).
need_wrk() {
  command -v wrk >/dev/null && return 0
  [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null \
    || { echo "$(basename "$0"): wrk is missing (Debian package wrk)" >&2; exit 1; }
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # url [log]
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$(basename "$0"): $1 never answered" >&2
  [ -n "${2:-}" ] && tail -20 "$2" >&2
  exit 1
}

# Wait until URL answers 200 while PID lives: 0 when it answers, 1 when the process died
# (its port was taken in between, say) or 30 s passed.
up_while_alive() { # url pid
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# Start the IdP (with the test-only endpoints) and moto on free ports; sets `issuer` and
# `moto`. A port found free can be taken before the component binds it: each component is
# tried on up to three new ports. Extra IdP environment may be given as VAR=value arguments.
start_components() {
  local port pid attempt
  issuer=""; moto=""
  for attempt in 1 2 3; do
    port=$(free_port)
    env IDP_PORT="$port" IDP_TEST_MINT=1 IDP_PARENT_PID=$$ "$@" \
      node "$root/deploy/local/idp/server.mjs" >"$work/idp.log" 2>&1 &
    pid=$!
    if up_while_alive "http://127.0.0.1:$port/.well-known/openid-configuration" "$pid"; then
      pids+=("$pid"); issuer="http://127.0.0.1:$port"; break
    fi
    kill "$pid" 2>/dev/null || true
    echo "$(basename "$0"): the IdP did not come up on port $port (attempt $attempt)" >&2
    tail -5 "$work/idp.log" >&2
  done
  [ -n "$issuer" ] || { echo "$(basename "$0"): the IdP did not come up" >&2; exit 1; }
  for attempt in 1 2 3; do
    port=$(free_port)
    "$root/deploy/local/.venv/bin/python" "$root/deploy/local/moto_stack.py" --port "$port" \
      --parent-pid $$ >"$work/moto.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do
      grep -q '"event": "ready"' "$work/moto.log" && { moto="http://127.0.0.1:$port"; break; }
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if [ -n "$moto" ]; then pids+=("$pid"); return 0; fi
    kill "$pid" 2>/dev/null || true
    echo "$(basename "$0"): moto did not come up on port $port (attempt $attempt)" >&2
    tail -5 "$work/moto.log" >&2
  done
  echo "$(basename "$0"): moto did not come up" >&2
  exit 1
}

# Start BIN serve on a free loopback port against the components, as in production (JSON
# logs, metrics on), with extra VAR=value settings; wait until it is ready and put its port
# in the variable named NAME. A port found free can be taken before stsvend binds it (it
# then exits 1): up to three new ports are tried. The log is $work/stsvend-<port>.log.
start_stsvend() { # bin name [VAR=value...]
  local bin=$1 name=$2 port pid attempt; shift 2
  for attempt in 1 2 3; do
    port=$(free_port)
    env STSVEND_SERVER__BIND="127.0.0.1:$port" STSVEND_SERVER__PUBLIC_URL="http://127.0.0.1:$port" \
      STSVEND_SERVER__LOG_FORMAT=json STSVEND_SERVER__METRICS=true STSVEND_OIDC__ISSUER="$issuer" \
      STSVEND_STS__ENDPOINT_URL="$moto" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
      AWS_SESSION_TOKEN= "$@" \
      "$bin" serve --config "$root/config/local.toml" >>"$work/stsvend-$port.log" 2>&1 &
    pid=$!
    if up_while_alive "http://127.0.0.1:$port/readyz" "$pid"; then
      pids+=("$pid"); printf -v "$name" %s "$port"; return 0
    fi
    kill "$pid" 2>/dev/null || true
    echo "$(basename "$0"): stsvend did not come up on port $port (attempt $attempt)" >&2
    tail -5 "$work/stsvend-$port.log" >&2
  done
  echo "$(basename "$0"): stsvend did not come up" >&2
  exit 1
}
