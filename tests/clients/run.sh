#!/usr/bin/env bash
# The README page's earthaccess and obstore recipes, copied from the page this deployment
# serves and run as they are (from PyPI: earthaccess, obstore) against the local stack over
# https with the local CA: the IdP's token, stsvend serving TLS, moto's S3 for the reads
# (AWS_ENDPOINT_URL_S3; the recipes themselves name no endpoint but stsvend's).
# Needs deploy/local/setup.sh --for-tests and the service's debug build (STSVEND_BIN).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${STSVEND_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/stsvend-target}/debug/stsvend}"
venv="$root/deploy/local/.venv-clients"
stamp="$venv/.stsvend-stamp"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  echo "[clients] pip install -r tests/clients/requirements.txt" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" >&2
  echo "$want" >"$stamp"
fi
# shellcheck source=../components.sh
. "$root/tests/components.sh"
scratch clients
"$root/deploy/local/tls.sh" "$work/tls" >/dev/null
start_components

port="$(free_port)"
app="https://127.0.0.1:$port"
STSVEND_SERVER__BIND="127.0.0.1:$port" STSVEND_SERVER__PUBLIC_URL="$app" STSVEND_SERVER__LOG_FORMAT=json \
STSVEND_REVOCATIONS__FILE="$work/revocations.json" \
STSVEND_SERVER__TLS__CERT_FILE="$work/tls/server.pem" STSVEND_SERVER__TLS__KEY_FILE="$work/tls/server.key" \
STSVEND_SESSION__SECURE=true STSVEND_OIDC__ISSUER="$issuer" STSVEND_STS__ENDPOINT_URL="$moto" \
AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN= \
  "$bin" serve --config "$root/config/local.toml" >"$work/stsvend.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do curl -fsS -o /dev/null --cacert "$work/tls/ca.pem" "$app/readyz" 2>/dev/null && break; sleep 0.1; done
curl -fsS -o /dev/null --cacert "$work/tls/ca.pem" "$app/readyz" || { echo "[clients] stsvend not ready:" >&2; tail "$work/stsvend.log" >&2; exit 1; }

token="$(curl -fsS -u alice:alice-pw -X POST "$issuer/api/users/find_or_create_token" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
# The service's page (the default archive's recipes) and the second archive's own page, whose
# recipes name its own endpoint (another role, in another account).
curl -fsS --cacert "$work/tls/ca.pem" "$app/s3credentialsREADME" >"$work/page-main.html"
curl -fsS --cacert "$work/tls/ca.pem" "$app/archives/second/s3credentialsREADME" >"$work/page-second.html"
# The objects the recipes read (moto takes unsigned writes; a header names the account).
curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' --data-binary 'granule bytes' "$moto/demo-inregion/path/to/file"
curl -fsS -o /dev/null -X PUT -H 'x-moto-account-id: 210987654321' -H 'Content-Type: application/octet-stream' \
  --data-binary 'second granule' "$moto/demo-second/path/to/file"

export HOME="$work/home" EARTHDATA_TOKEN="$token" REQUESTS_CA_BUNDLE="$work/tls/ca.pem" \
  SSL_CERT_FILE="$work/tls/ca.pem" AWS_ENDPOINT_URL_S3="$moto" AWS_ALLOW_HTTP=true
mkdir -p "$HOME"
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE
status=0
for case in main/earthaccess main/obstore second/earthaccess second/obstore; do
  archive="${case%/*}" recipe="${case#*/}"
  case "$archive" in
    main) own="$app/s3credentials" bytes="b'granule bytes'" ;;
    second) own="$app/archives/second/s3credentials" bytes="b'second granule'" ;;
  esac
  python3 - "$work/page-$archive.html" "$recipe" >"$work/recipe_$recipe.py" <<'PY'
import html, re, sys
page = open(sys.argv[1]).read()
m = re.search(r'<pre id="recipe-%s">(.*?)</pre>' % re.escape(sys.argv[2]), page, re.S)
assert m, f"no {sys.argv[2]} recipe on the page"
print(html.unescape(m.group(1)))
PY
  grep -q "\"$own\"" "$work/recipe_$recipe.py" || { echo "[clients] the $case recipe does not name $own" >&2; status=1; }
  if out="$(cd "$HOME" && timeout 120 "$venv/bin/python" "$work/recipe_$recipe.py" 2>"$work/$recipe.err")"; then
    echo "[clients] $case: $out" | sed 's/ASIA[A-Z0-9]*/ASIA…/' >&2
  else
    echo "[clients] $case failed:" >&2; tail -5 "$work/$recipe.err" >&2; status=1; continue
  fi
  case "$recipe" in
    # The Earthdata credential's key and expiry, then the object read with it.
    earthaccess) [[ "$out" =~ ^ASIA[A-Z0-9]+\ [0-9]{4}-[0-9]{2}-[0-9]{2}\ [0-9:]{8}\+00:00$'\n'"$bytes"$ ]] || { echo "[clients] $case printed: $out" >&2; status=1; } ;;
    obstore) [ "$out" = "$bytes" ] || { echo "[clients] $case printed: $out" >&2; status=1; } ;;
  esac
done
exit "$status"
