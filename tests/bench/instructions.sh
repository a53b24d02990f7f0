#!/usr/bin/env bash
# Instructions per request (valgrind --tool=callgrind), which do not move with the machine's
# load: the bare actix ceiling, a cached bearer request, a cached ticket request, a cached
# session-cookie request, an
# object link (presigned redirect) from a cached credential, the 401 error path, a target
# routed to the second archive and a bundle of two archives (both cached). One worker each, one keep-alive connection, N requests after WARMUP.
# Prints one JSON line per case; tests/bench/run.sh puts them in results.md.
#
#   tests/bench/instructions.sh OUT_DIR      (needs a release build; N=1000 WARMUP=200)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$1"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stsvend-target}"
rel="$CARGO_TARGET_DIR/release"
command -v valgrind >/dev/null || {
  [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
} || { echo "instructions.sh: valgrind is missing (Debian package valgrind)" >&2; exit 1; }
. "$root/tests/components.sh"
scratch instructions
cd "$work"
start_components

grind() { valgrind --tool=callgrind --dump-instr=no --collect-jumps=no "$@" >/dev/null 2>>"$work/valgrind.log" & pids+=($!); }
ceiling=$(free_port); app=$(free_port)
grind "$rel/examples/bench-ceiling" "$ceiling" 1
ceiling_pid=${pids[-1]}
STSVEND_SERVER__BIND="127.0.0.1:$app" STSVEND_SERVER__PUBLIC_URL="http://127.0.0.1:$app" \
STSVEND_SERVER__WORKERS=1 STSVEND_SERVER__LOG_FORMAT=json STSVEND_SERVER__METRICS=true \
STSVEND_REVOCATIONS__FILE="$work/revocations.json" \
STSVEND_OIDC__ISSUER="$issuer" STSVEND_STS__ENDPOINT_URL="$moto" STSVEND_S3__ENDPOINT_URL="$moto" STSVEND_STS__TIMEOUT_SECONDS=30 \
STSVEND_STS__CONNECT_TIMEOUT_SECONDS=30 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
AWS_SESSION_TOKEN= grind "$rel/stsvend" serve --config "$root/config/local.toml"
app_pid=${pids[-1]}
for _ in $(seq 1 600); do
  curl -fsS -o /dev/null "http://127.0.0.1:$app/readyz" 2>/dev/null \
    && curl -fsS -o /dev/null "http://127.0.0.1:$ceiling/s3credentials" 2>/dev/null && break
  sleep 0.2
done

token=$(curl -fsS -u alice:alice-pw -X POST "$issuer/api/users/find_or_create_token" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
printf 'machine 127.0.0.1 login alice password alice-pw\n' >"$work/netrc"
curl -fsS -o /dev/null --netrc-file "$work/netrc" -L -c "$work/jar" -b "$work/jar" --max-time 120 \
  "http://127.0.0.1:$app/s3credentials"
cookie=$(awk '$6 == "stsvend_session" {print $7}' "$work/jar")
# A ticket for the user's whole reach: a worker's request.
ticket=$(curl -fsS -X POST -H "Authorization: Bearer $token" -H "Content-Type: application/json" \
  -d '{"label":"bench"}' "http://127.0.0.1:$app/s3credentials/tickets" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["ticket"])')

py="$root/deploy/local/.venv/bin/python"
{
  "$py" "$here/instructions.py" ceiling "$ceiling_pid" "http://127.0.0.1:$ceiling/s3credentials" "Accept: */*"
  "$py" "$here/instructions.py" bearer "$app_pid" "http://127.0.0.1:$app/s3credentials" "Authorization: Bearer $token"
  "$py" "$here/instructions.py" ticket "$app_pid" "http://127.0.0.1:$app/s3credentials" "Authorization: Bearer $ticket"
  "$py" "$here/instructions.py" cookie "$app_pid" "http://127.0.0.1:$app/s3credentials" "Cookie: stsvend_session=$cookie"
  "$py" "$here/instructions.py" link "$app_pid" "http://127.0.0.1:$app/s3/demo-inregion/hello.txt" "Authorization: Bearer $token"
  "$py" "$here/instructions.py" error-401 "$app_pid" "http://127.0.0.1:$app/s3credentials" "Accept: application/json"
  # Several archives: a target routed to the second archive, and a bundle of both, cached.
  "$py" "$here/instructions.py" routed "$app_pid" "http://127.0.0.1:$app/s3credentials?target=s3://demo-second/" "Authorization: Bearer $token"
  "$py" "$here/instructions.py" bundle-2 "$app_pid" "http://127.0.0.1:$app/s3credentials/bundle?target=s3://demo-inregion/&target=s3://demo-second/" "Authorization: Bearer $token"
} | tee "$out/instructions.jsonl"
# Keep the dumps for callgrind_annotate when asked (KEEP_CALLGRIND=DIR).
if [ -n "${KEEP_CALLGRIND:-}" ]; then mkdir -p "$KEEP_CALLGRIND"; cp "$work"/callgrind.out.* "$KEEP_CALLGRIND"/; fi
