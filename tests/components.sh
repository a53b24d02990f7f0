# Sourced by the scripts that run stsvend against the local components outside the Rust
# test harness (tests/contract/run.sh, tests/bench/run.sh, tests/bench/soak.sh): free
# loopback ports, waiting for HTTP, and the IdP and moto started in the background, each
# exiting with the calling script. The caller defines `root`, `work` (a scratch folder) and
# the array `pids`, and kills "${pids[@]}" on exit.

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

# Start the IdP (with the test-only endpoints) and moto on free ports; sets `issuer` and
# `moto`. Extra IdP environment may be given as VAR=value arguments.
start_components() {
  local idp_port moto_port
  idp_port=$(free_port); moto_port=$(free_port)
  issuer="http://127.0.0.1:$idp_port"; moto="http://127.0.0.1:$moto_port"
  env IDP_PORT="$idp_port" IDP_TEST_MINT=1 IDP_PARENT_PID=$$ "$@" \
    node "$root/deploy/local/idp/server.mjs" >"$work/idp.log" 2>&1 &
  pids+=($!)
  "$root/deploy/local/.venv/bin/python" "$root/deploy/local/moto_stack.py" --port "$moto_port" \
    --parent-pid $$ >"$work/moto.log" 2>&1 &
  pids+=($!)
  wait_http "$issuer/.well-known/openid-configuration" "$work/idp.log"
  for _ in $(seq 1 200); do grep -q '"event": "ready"' "$work/moto.log" && return 0; sleep 0.1; done
  echo "$(basename "$0"): moto did not come up" >&2
  tail -20 "$work/moto.log" >&2
  exit 1
}
