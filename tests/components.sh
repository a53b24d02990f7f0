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

# Run START PORT (it starts a process in the background and leaves its pid in `pid`) on a free
# port until READY PORT PID says it serves: a port found free can be taken before the process
# binds it, so up to three new ports are tried. Sets `started_port`; LOG (a printf pattern of the
# port) is shown when an attempt fails.
on_free_port() { # what log start ready
  local what=$1 log=$2 start=$3 ready=$4 attempt logfile
  for attempt in 1 2 3; do
    started_port=$(free_port)
    "$start" "$started_port"
    if "$ready" "$started_port" "$pid"; then pids+=("$pid"); return 0; fi
    kill "$pid" 2>/dev/null || true
    # shellcheck disable=SC2059
    printf -v logfile "$log" "$started_port"
    echo "$(basename "$0"): $what did not come up on port $started_port (attempt $attempt)" >&2
    tail -5 "$logfile" >&2
  done
  echo "$(basename "$0"): $what did not come up" >&2
  exit 1
}

idp_start() {
  env IDP_PORT="$1" IDP_TEST_MINT=1 IDP_PARENT_PID=$$ "${idp_env[@]}" \
    node "$root/deploy/local/idp/server.mjs" >"$work/idp.log" 2>&1 &
  pid=$!
}
idp_ready() { up_while_alive "http://127.0.0.1:$1/.well-known/openid-configuration" "$2"; }
moto_start() {
  "$root/deploy/local/.venv/bin/python" "$root/deploy/local/moto_stack.py" --port "$1" \
    --parent-pid $$ >"$work/moto.log" 2>&1 &
  pid=$!
}
moto_ready() { # moto says when it is ready, with the moto-api answering
  for _ in $(seq 1 300); do
    grep -q '"event": "ready"' "$work/moto.log" && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# Start the IdP (with the test-only endpoints) and moto on free ports; sets `issuer` and
# `moto`. Extra IdP environment may be given as VAR=value arguments.
start_components() {
  idp_env=("$@")
  on_free_port "the IdP" "$work/idp.log" idp_start idp_ready
  issuer="http://127.0.0.1:$started_port"
  on_free_port moto "$work/moto.log" moto_start moto_ready
  moto="http://127.0.0.1:$started_port"
}

stsvend_start() {
  env STSVEND_SERVER__BIND="127.0.0.1:$1" STSVEND_SERVER__PUBLIC_URL="http://127.0.0.1:$1" \
    STSVEND_SERVER__LOG_FORMAT=json STSVEND_SERVER__METRICS=true STSVEND_OIDC__ISSUER="$issuer" \
    STSVEND_REVOCATIONS__FILE="$work/revocations-$1.json" \
    STSVEND_STS__ENDPOINT_URL="$moto" STSVEND_S3__ENDPOINT_URL="$moto" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
    AWS_SESSION_TOKEN= "${stsvend_env[@]}" \
    "$stsvend_bin" serve --config "$root/config/local.toml" >>"$work/stsvend-$1.log" 2>&1 &
  pid=$!
}
stsvend_ready() { up_while_alive "http://127.0.0.1:$1/readyz" "$2"; }

# Start BIN serve on a free loopback port against the components, as in production (JSON
# logs, metrics on), with extra VAR=value settings; wait until it is ready and put its port
# in the variable named NAME. The log is $work/stsvend-<port>.log.
start_stsvend() { # bin name [VAR=value...]
  stsvend_bin=$1
  local name=$2
  shift 2
  stsvend_env=("$@")
  on_free_port stsvend "$work/stsvend-%s.log" stsvend_start stsvend_ready
  printf -v "$name" %s "$started_port"
}
