#!/usr/bin/env bash
# Load and soak: a release stsvend against the local IdP and moto, as in production (JSON
# logs at info, metrics on), then
#   1. 1,000 users (half bearer JWTs, half session cookies; earthdata, credential-process and
#      container formats) arrive at a pace within the STS budget, then 1,000 concurrent
#      connections request credentials for SOAK_SECONDS (default 60): errors, p50/p99,
#      throughput, server RSS before and after;
#   2. a flood of FLOOD (default 20,000) distinct valid tokens against a server whose caches
#      are capped at 2,000 entries: RSS after every quarter, which must level off.
# Prints a table and puts it after run.sh's in tests/bench/results.md. Figures, not pass/fail.
#
#   tests/bench/soak.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
USERS="${USERS:-1000}"
CONNECTIONS="${CONNECTIONS:-1000}"
SOAK_SECONDS="${SOAK_SECONDS:-60}"
FLOOD="${FLOOD:-20000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stsvend-target}"

"$root/deploy/local/setup.sh"
# shellcheck source=../components.sh
. "$root/tests/components.sh"
need_wrk
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

echo "[soak] building (release)" >&2
(cd "$root" && cargo build --release --locked --quiet --bin stsvend --example bench-driver)
rel="$CARGO_TARGET_DIR/release"
scratch soak
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
start_components IDP_JWKS_FILE="$work/idp-jwks.json"

start_stsvend "$rel/stsvend" port
pid=${pids[-1]}
rss_start=$(rss_mib "$pid")
echo "[soak] preparing $USERS users" >&2
"$rel/examples/bench-driver" soak-prep "http://127.0.0.1:$port/s3credentials" "$issuer" \
  "$root/deploy/local/secrets/session-key.b64" "$USERS" "$work/requests.tsv" >"$work/prep.json"
rss_before=$(rss_mib "$pid")
echo "[soak] $CONNECTIONS connections for ${SOAK_SECONDS}s" >&2
SOAK_REQUESTS="$work/requests.tsv" wrk -t2 -c"$CONNECTIONS" -d"${SOAK_SECONDS}s" --timeout 10s --latency \
  -s "$here/soak.lua" "http://127.0.0.1:$port" >"$work/wrk.txt"
rss_after=$(rss_mib "$pid")
metrics="$(curl -fsS "http://127.0.0.1:$port/metrics")"

echo "[soak] flood of $FLOOD distinct tokens (caches capped at 2000)" >&2
start_stsvend "$rel/stsvend" fport STSVEND_CACHE__MAX_ENTRIES=2000
fpid=${pids[-1]}
flood_rss=("$(rss_mib "$fpid")")
quarter=$((FLOOD / 4))
for _ in 1 2 3 4; do
  "$rel/examples/bench-driver" flood "http://127.0.0.1:$fport/s3credentials" "$work/idp-jwks.json" "$issuer" "$quarter" >>"$work/flood.json"
  flood_rss+=("$(rss_mib "$fpid")")
done

# results.md: tests/bench/run.sh's table as it was, then this section.
python3 - "$work" "$USERS" "$CONNECTIONS" "$SOAK_SECONDS" "$FLOOD" "$rss_start" "$rss_before" "$rss_after" "${flood_rss[*]}" <<'PY' | tee "$work/soak.md"
import datetime, json, os, re, sys
work, users, conns, secs, flood, rss_start, rss_before, rss_after, flood_rss = sys.argv[1:10]
text = open(os.path.join(work, "wrk.txt")).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
total = int(re.search(r"(\d+) requests in", text).group(1))
def q(p):
    m = re.search(rf"^\s+{p}%\s+(\S+)", text, re.M)
    return m.group(1) if m else "?"
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
floods = [json.loads(l) for l in open(os.path.join(work, "flood.json"))]
ok = sum(f["ok"] for f in floods)
print("<!-- soak -->")
print(f"\n## Load and soak ({datetime.date.today()}, {os.cpu_count()} cores shared by wrk and the server)\n")
print("| measure | figure |")
print("|---|---|")
print(f"| users (half bearer, half cookie; 3 formats) | {users} |")
print(f"| connections, duration | {conns}, {secs} s |")
print(f"| requests, throughput | {total}, {rps:,.0f} req/s |")
print(f"| errors (non-2xx + socket) | {errors} |")
print(f"| latency p50 / p99 | {q(50)} / {q(99)} |")
print(f"| server RSS: start / {users} users cached / after the soak | {rss_start} / {rss_before} / {rss_after} MiB |")
print(f"| token flood: {flood} distinct valid tokens, caches capped at 2,000 | {ok} answered 200 |")
print(f"| RSS at 0 / 25 / 50 / 75 / 100 % of the flood | {' / '.join(flood_rss.split())} MiB |")
PY
{ sed '/^<!-- soak -->$/,$d' "$here/results.md" 2>/dev/null; cat "$work/soak.md"; } >"$work/results.md"
mv "$work/results.md" "$here/results.md"
