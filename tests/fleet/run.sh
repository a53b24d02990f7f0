#!/usr/bin/env bash
# The fleet topology on free loopback ports, as deploy/local/up.sh --fleet runs it: the IdP,
# moto, redis-server, three stsvend replicas from config/local-fleet.toml, and HAProxy in front
# (deploy/local/haproxy.cfg). Then tests/fleet/measure.py measures through HAProxy: one
# AssumeRole per user across replicas, one per distinct user, Redis stopped and killed under
# load, L2 vs STS miss latency, Redis commands per request type.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
. "$root/tests/components.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stsvend-target}"
bin="${STSVEND_BIN:-$CARGO_TARGET_DIR/debug/stsvend}"
scratch fleet
start_components

# Each server on a free port, tried on up to three new ones: a port can be taken between
# finding it free and binding it.
redis_pid=""
for attempt in 1 2 3; do
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && { redis_pid=$pid; break; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  [ -n "$redis_pid" ] && break
  kill "$pid" 2>/dev/null || true
  echo "[fleet] redis-server did not start on $redis_port (attempt $attempt)" >&2
done
[ -n "$redis_pid" ] || { cat "$work/redis.log" >&2; exit 1; }
pids+=($redis_pid)

# The front port is chosen first (the replicas' public_url names it) and kept out of the
# replicas' picks; the TLS port is chosen once they listen, so none of them can take it.
front_port=$(free_port)
front="http://127.0.0.1:$front_port"
replicas=(); internals=(); servers=()
start_replica() { # n port internal
  local n=$1 port=$2 internal=$3
  # Enough per-replica budget and STS patience that the fleet budget (600/s) is what counts.
  env STSVEND_SERVER__BIND="127.0.0.1:$port" STSVEND_SERVER__INTERNAL_BIND="127.0.0.1:$internal" \
    STSVEND_SERVER__PUBLIC_URL="$front" STSVEND_OIDC__ISSUER="$issuer" STSVEND_STS__ENDPOINT_URL="$moto" \
    STSVEND_REVOCATIONS__FILE="$work/revocations-$n.json" \
    STSVEND_CLUSTER__REDIS_URL="redis://127.0.0.1:$redis_port" STSVEND_CLUSTER__STS_RATE_PER_SECOND=600 \
    STSVEND_CLUSTER__STS_MAX_WAIT_MS=10000 STSVEND_CLUSTER__LOCK_WAIT_MS=20000 \
    STSVEND_STS__MAX_CALLS_PER_SECOND=600 STSVEND_STS__MAX_IN_FLIGHT=1000 STSVEND_STS__TIMEOUT_SECONDS=15 \
    STSVEND_STS__CONNECT_TIMEOUT_SECONDS=5 STSVEND_LIMITS__IDP_REQUESTS_PER_MINUTE=0 \
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN= \
    "$bin" serve --config "$root/config/local-fleet.toml" >"$work/stsvend-$n.log" 2>&1 &
}
for n in 1 2 3; do
  started=""
  for attempt in 1 2 3; do
    port=$(free_port); internal=$(free_port)
    if [ "$port" = "$front_port" ] || [ "$internal" = "$front_port" ]; then continue; fi
    start_replica "$n" "$port" "$internal"
    pid=$!
    if up_while_alive "http://127.0.0.1:$internal/readyz" "$pid"; then started=1; break; fi
    kill "$pid" 2>/dev/null || true
    echo "[fleet] replica $n did not start on $port/$internal (attempt $attempt)" >&2
    tail -3 "$work/stsvend-$n.log" >&2
  done
  [ -n "$started" ] || exit 1
  pids+=("$pid")
  replicas+=("http://127.0.0.1:$port"); internals+=("http://127.0.0.1:$internal")
  export "FLEET_S$n=127.0.0.1:$port" "FLEET_C$n=$internal"
done

tls_port=$(free_port)
tls="$("$root/deploy/local/tls.sh" "$work/tls")"
cat "$tls/server.pem" "$tls/server.key" >"$work/haproxy.pem"
export FLEET_HTTP="127.0.0.1:$front_port" FLEET_HTTPS="127.0.0.1:$tls_port" FLEET_PEM="$work/haproxy.pem"
# The replicas' public_url names the front port, so HAProxy is not moved to another port: a
# taken port fails the run here, with HAProxy's own reason.
haproxy -f "$root/deploy/local/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pid=$!
up_while_alive "$front/readyz" "$pid" || { echo "[fleet] HAProxy did not come up:" >&2; cat "$work/haproxy.log" >&2; exit 1; }
pids+=("$pid")
curl -fsS --cacert "$tls/ca.pem" -o /dev/null "https://127.0.0.1:$tls_port/readyz"

FRONT="$front" REPLICAS="${replicas[*]}" INTERNALS="${internals[*]}" ISSUER="$issuer" MOTO="$moto" \
  REDIS_PORT="$redis_port" REDIS_PID="$redis_pid" \
  timeout 600 "$root/deploy/local/.venv/bin/python" "$root/tests/fleet/measure.py" \
  || { tail -n 5 "$work"/stsvend-*.log >&2; exit 1; }
