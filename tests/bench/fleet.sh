#!/usr/bin/env bash
# Fleet mode's cost on the hot path: the same cached bearer-token request against stsvend
# without [cluster] and with it (Redis up), in alternating wrk runs; an L1 hit must not touch
# Redis, so the two should be within noise (target: fleet within 5 % of no fleet).
# Prints a table and writes it to tests/bench/fleet-results.md. Figures, not pass/fail.
#
#   tests/bench/fleet.sh      (RUNS=3 DURATION=10s CONNECTIONS=64 by default)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stsvend-target}"

"$root/deploy/local/setup.sh" --fleet
. "$root/tests/components.sh"
need_wrk
echo "[bench] building (release)" >&2
(cd "$root" && cargo build --release --locked --quiet --bin stsvend)
rel="$CARGO_TARGET_DIR/release"
scratch fleet-bench
start_components
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)

start_stsvend "$rel/stsvend" alone
start_stsvend "$rel/stsvend" fleet STSVEND_CLUSTER__REDIS_URL="redis://127.0.0.1:$redis_port" \
  STSVEND_CLUSTER__ENCRYPTION_KEY="$(cat "$root/deploy/local/secrets/cluster-key.b64")"

token=$(curl -fsS -u alice:alice-pw -X POST "$issuer/api/users/find_or_create_token" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
for port in $alone $fleet; do
  curl -fsS -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:$port/s3credentials"
  wrk -t2 -c"$CONNECTIONS" -d2s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/s3credentials" >/dev/null
done
before=$(redis-cli -p "$redis_port" INFO commandstats | grep -v -e cmdstat_info -e cmdstat_hgetall | awk -F'[=,]' '/^cmdstat/ {s += $2} END {print s + 0}')
for i in $(seq 1 "$RUNS"); do
  for name in alone fleet; do
    port=$([ "$name" = alone ] && echo "$alone" || echo "$fleet")
    echo "[bench] $name run $i/$RUNS" >&2
    wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -H "Authorization: Bearer $token" \
      "http://127.0.0.1:$port/s3credentials" >"$work/wrk-$name-$i.txt"
  done
done
after=$(redis-cli -p "$redis_port" INFO commandstats | grep -v -e cmdstat_info -e cmdstat_hgetall | awk -F'[=,]' '/^cmdstat/ {s += $2} END {print s + 0}')

python3 - "$work" "$RUNS" "$DURATION" "$CONNECTIONS" "$((after - before))" <<'PY' | tee "$here/fleet-results.md"
import re, statistics, sys, os, datetime
work, runs, duration, conns, redis_ops = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
def rps(name):
    out = []
    for i in range(1, runs + 1):
        text = open(os.path.join(work, f"wrk-{name}-{i}.txt")).read()
        out.append(float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)))
    return out
a, f = rps("alone"), rps("fleet")
ma, mf = statistics.median(a), statistics.median(f)
print(f"# Fleet mode on the cached hot path ({os.cpu_count()} cores, {datetime.date.today()})\n")
print(f"wrk, {conns} connections, {duration} x {runs} alternating runs, cached bearer-token request.\n")
print("| stsvend | requests/s (median) | runs |")
print("|---|---|---|")
print(f"| without [cluster] | {ma:,.0f} | {', '.join(f'{x:,.0f}' for x in a)} |")
print(f"| with [cluster], Redis up | {mf:,.0f} | {', '.join(f'{x:,.0f}' for x in f)} |")
print(f"\nFleet / alone: {mf / ma:.3f} (target ≥ 0.95). Redis commands during the timed runs, "
      f"besides the replica's periodic revocation resync: {redis_ops}.")
PY
