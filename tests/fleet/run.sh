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

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
redis_pid=$!
pids+=($redis_pid)
for _ in $(seq 1 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done

front_port=$(free_port); tls_port=$(free_port)
front="http://127.0.0.1:$front_port"
replicas=(); internals=(); servers=()
for n in 1 2 3; do
  port=$(free_port); internal=$(free_port)
  # Enough per-replica budget and STS patience that the fleet budget (600/s) is what counts.
  env STSVEND_SERVER__BIND="127.0.0.1:$port" STSVEND_SERVER__INTERNAL_BIND="127.0.0.1:$internal" \
    STSVEND_SERVER__PUBLIC_URL="$front" STSVEND_OIDC__ISSUER="$issuer" STSVEND_STS__ENDPOINT_URL="$moto" \
    STSVEND_CLUSTER__REDIS_URL="redis://127.0.0.1:$redis_port" STSVEND_CLUSTER__STS_RATE_PER_SECOND=600 \
    STSVEND_CLUSTER__STS_MAX_WAIT_MS=10000 STSVEND_CLUSTER__LOCK_WAIT_MS=20000 \
    STSVEND_STS__MAX_CALLS_PER_SECOND=600 STSVEND_STS__MAX_IN_FLIGHT=1000 STSVEND_STS__TIMEOUT_SECONDS=15 \
    STSVEND_STS__CONNECT_TIMEOUT_SECONDS=5 STSVEND_LIMITS__IDP_REQUESTS_PER_MINUTE=0 \
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN= \
    "$bin" serve --config "$root/config/local-fleet.toml" >"$work/stsvend-$n.log" 2>&1 &
  pids+=($!)
  replicas+=("http://127.0.0.1:$port"); internals+=("http://127.0.0.1:$internal")
  export "FLEET_S$n=127.0.0.1:$port" "FLEET_C$n=$internal"
done
for url in "${internals[@]}"; do wait_http "$url/readyz" "$work/stsvend-1.log"; done

tls="$("$root/deploy/local/tls.sh" "$work/tls")"
cat "$tls/server.pem" "$tls/server.key" >"$work/haproxy.pem"
export FLEET_HTTP="127.0.0.1:$front_port" FLEET_HTTPS="127.0.0.1:$tls_port" FLEET_PEM="$work/haproxy.pem"
haproxy -f "$root/deploy/local/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)
wait_http "$front/readyz" "$work/haproxy.log"
curl -fsS --cacert "$tls/ca.pem" -o /dev/null "https://127.0.0.1:$tls_port/readyz"

FRONT="$front" REPLICAS="${replicas[*]}" INTERNALS="${internals[*]}" ISSUER="$issuer" MOTO="$moto" \
  REDIS_PORT="$redis_port" REDIS_PID="$redis_pid" \
  timeout 600 "$root/deploy/local/.venv/bin/python" "$root/tests/fleet/measure.py" \
  || { tail -n 5 "$work"/stsvend-*.log >&2; exit 1; }
