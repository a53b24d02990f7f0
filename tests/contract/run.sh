#!/usr/bin/env bash
# The HTTP contract: schemathesis generates requests from stsvend's own /openapi.json and
# checks every response against it (status codes, headers, content types, body schemas, no
# 5xx), at least 100 cases per operation, against the real local components: the
# oidc-provider IdP and moto, started here on free loopback ports, with a bearer token from
# the IdP's token API. Needs deploy/local/setup.sh --for-tests and STSVEND_BIN.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/deploy/local/.venv"
bin="${STSVEND_BIN:?set STSVEND_BIN to the stsvend binary}"
examples="${CONTRACT_EXAMPLES:-100}"
# shellcheck source=../components.sh
. "$root/tests/components.sh"
scratch contract
start_components
start_stsvend "$bin" app_port
app="http://127.0.0.1:$app_port"

token="$(curl -fsS -u carol:carol-pw -X POST "$issuer/api/users/find_or_create_token" \
  | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"

echo "[contract] schemathesis against $app/openapi.json ($examples cases per operation)" >&2
status=0
# From the scratch folder: schemathesis keeps a cache in the working directory.
(cd "$work" && "$venv/bin/schemathesis" --config-file "$root/tests/contract/schemathesis.toml" run "$app/openapi.json" \
  --header "Authorization: Bearer $token" \
  --max-examples "$examples" \
  --phases examples,coverage,fuzzing \
  --seed 1 \
  --report har --report-har-path "$work/cases.har" \
  --request-timeout 10 \
  --max-redirects 0 \
  --no-color) 2>&1 | tee "$work/schemathesis.log" || status=$?
# Requests sent per operation (from the HAR record of every exchange). Operations with
# parameters must have had at least $examples; those without have little to vary.
"$venv/bin/python" - "$work/cases.har" "$examples" <<'PY' || status=1
import collections, json, sys, urllib.parse
entries = json.load(open(sys.argv[1]))["log"]["entries"]
need = int(sys.argv[2])
counts = collections.Counter()
for e in entries:
    url = urllib.parse.urlsplit(e["request"]["url"])
    counts[(e["request"]["method"], url.path)] += 1
with_params = {("GET", "/s3credentials"), ("GET", "/login")}
print(f"[contract] {len(entries)} requests:", file=sys.stderr)
short = []
for (method, path), n in sorted(counts.items(), key=lambda kv: -kv[1]):
    print(f"  {n:6d}  {method} {path}", file=sys.stderr)
    if (method, path) in with_params and n < need:
        short.append(f"{method} {path}")
if short:
    print(f"[contract] fewer than {need} cases for: {', '.join(short)}", file=sys.stderr)
    sys.exit(1)
PY
if grep -q '"level":"ERROR"' "$work/stsvend-$app_port.log"; then
  echo "[contract] stsvend logged errors:" >&2
  grep '"level":"ERROR"' "$work/stsvend-$app_port.log" | head -5 >&2
  status=1
fi
exit $status
