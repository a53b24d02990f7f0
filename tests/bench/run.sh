#!/usr/bin/env bash
# stsvend's benchmarks: builds in release mode, starts the IdP and moto on loopback, and runs
#   1. the hot path vs the bare actix ceiling (wrk, 64 connections, 15 s, several runs):
#      (a) ceiling, (b) cached + bearer JWT, (c) cached + session cookie, (d) no cache (STS
#      on every request, the TEA baseline); (e) an object link (307 to a presigned URL) from a
#      cached credential;
#   2. STS coalescing: 1,000 concurrent first requests for one user, and for 1,000 users;
#   3. memory: server RSS at start, and per cached user (library, in-process STS);
#   4. start-up: process start to /readyz 200 with the IdP up;
#   5. instructions per request under callgrind (tests/bench/instructions.sh): the ceiling,
#      cached bearer, cached cookie and the 401 path; these do not move with the machine's load.
# The servers run on core 0 and wrk on core 1 (taskset) when the machine has two or more.
# Prints one table and writes it (with core count and date) to tests/bench/results.md.
# Figures, not pass/fail: the machine is shared and noisy, so medians of RUNS runs are quoted.
# The servers run as in production: JSON logs at info (one audit line per response), metrics on;
# the STS guard is widened (2,000 in flight, no per-second budget, 30 s timeouts, a breaker that
# does not open) so the coalescing scenario, which floods moto with 1,000 connections at once,
# measures coalescing.
#
#   tests/bench/run.sh            (RUNS=3 DURATION=15s CONNECTIONS=64 by default)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-15s}"
CONNECTIONS="${CONNECTIONS:-64}"
USERS="${USERS:-100000}"
BURST="${BURST:-1000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stsvend-target}"

"$root/deploy/local/setup.sh"
# shellcheck source=../components.sh
. "$root/tests/components.sh"
need_wrk

echo "[bench] building (release)" >&2
(cd "$root" && cargo build --release --locked --quiet --bin stsvend --example bench-ceiling --example bench-driver)
rel="$CARGO_TARGET_DIR/release"
scratch bench
start_components
components=${#pids[@]}   # the IdP and moto keep both cores

# The STS guard (and one user's share of it) is widened so that the coalescing and no-cache
# scenarios measure coalescing and AssumeRole.
bench_stsvend() {
  start_stsvend "$rel/stsvend" "$@" STSVEND_STS__MAX_IN_FLIGHT=2000 STSVEND_STS__MAX_CALLS_PER_SECOND=0 STSVEND_LIMITS__USER_NEW_CREDENTIALS_PER_MINUTE=0 \
    STSVEND_STS__TIMEOUT_SECONDS=30 STSVEND_STS__CONNECT_TIMEOUT_SECONDS=30 STSVEND_STS__BREAKER_FAILURES=1000
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

ceiling_port=$(free_port)
bench_stsvend cached_port
cached_pid=${pids[-1]}
rss_start=$(rss_kib "$cached_pid")
bench_stsvend nocache_port STSVEND_CACHE__ENABLED=false
"$rel/examples/bench-ceiling" "$ceiling_port" >/dev/null 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$ceiling_port/s3credentials"

token=$(curl -fsS -u alice:alice-pw -X POST "$issuer/api/users/find_or_create_token" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
printf 'machine 127.0.0.1 login alice password alice-pw\n' >"$work/netrc"
curl -fsS -o /dev/null --netrc-file "$work/netrc" -L -c "$work/jar" -b "$work/jar" \
  "http://127.0.0.1:$cached_port/s3credentials"
cookie=$(awk '$6 == "stsvend_session" {print $7}' "$work/jar")
[ -n "$cookie" ] || { echo "bench: no session cookie" >&2; exit 1; }

# Pin the servers and wrk to different cores so they do not steal each other's time.
server_cpu=""; client=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  server_cpu=0; client=(taskset -c 1)
  for pid in "${pids[@]:$components}"; do taskset -a -cp "$server_cpu" "$pid" >/dev/null 2>&1 || true; done
fi
run_wrk() { # name url header
  local name=$1 url=$2 header=$3
  curl -fsS -o /dev/null -H "$header" "$url"     # warm the cache
  "${client[@]}" wrk -t2 -c"$CONNECTIONS" -d2s -H "$header" "$url" >/dev/null
  for i in $(seq 1 "$RUNS"); do
    echo "[bench] $name run $i/$RUNS" >&2
    "${client[@]}" wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -H "$header" "$url" >"$work/wrk-$name-$i.txt"
  done
}
run_wrk a "http://127.0.0.1:$ceiling_port/s3credentials" "Accept: */*"
run_wrk b "http://127.0.0.1:$cached_port/s3credentials" "Authorization: Bearer $token"
run_wrk c "http://127.0.0.1:$cached_port/s3credentials" "Cookie: stsvend_session=$cookie"
run_wrk d "http://127.0.0.1:$nocache_port/s3credentials" "Authorization: Bearer $token"
run_wrk e "http://127.0.0.1:$cached_port/s3/demo-inregion/hello.txt" "Authorization: Bearer $token"
rss_hot=$(rss_kib "$cached_pid")

echo "[bench] coalescing ($BURST concurrent first requests)" >&2
"$rel/examples/bench-driver" coalesce "http://127.0.0.1:$cached_port/s3credentials" "$issuer" "$moto" "$BURST" >"$work/coalesce.json"
echo "[bench] memory ($USERS cached users)" >&2
"$rel/examples/bench-driver" memory "$USERS" >"$work/memory.json"
echo "[bench] start-up" >&2
startup_port=$(free_port)
STSVEND_SERVER__BIND="127.0.0.1:$startup_port" STSVEND_SERVER__PUBLIC_URL="http://127.0.0.1:$startup_port" \
  STSVEND_OIDC__ISSUER="$issuer" STSVEND_STS__ENDPOINT_URL="$moto" \
  "$rel/examples/bench-driver" startup "$rel/stsvend" "$root/config/local.toml" 5 >"$work/startup.json"

echo "[bench] instructions per request (callgrind)" >&2
"$here/instructions.sh" "$work" >/dev/null

# results.md: this table, then the soak's section (tests/bench/soak.sh) kept as it was.
python3 "$here/report.py" "$work" "$RUNS" "$DURATION" "$CONNECTIONS" "$rss_start" "$rss_hot" "${server_cpu:-shared}" | tee "$work/table.md"
{ cat "$work/table.md"; sed -n '/^<!-- soak -->$/,$p' "$here/results.md" 2>/dev/null; } >"$work/results.md"
mv "$work/results.md" "$here/results.md"
echo "[bench] written to tests/bench/results.md" >&2
