#!/usr/bin/env bash
# Start the whole local stack on loopback: the demo IdP (oidc-provider) on :9400, moto (STS
# and S3) on :9500 and stsvend on :8080 (and :8443 over https) with config/local.toml.
# Installs what is missing on first use. Ctrl-C stops everything.
#
#   deploy/local/up.sh --fleet   three replicas (config/local-fleet.toml) on :8081-8083,
#                                internal listeners :9081-9083, sharing Redis on :9600,
#                                behind HAProxy on :8080 and :8443 (local CA)
set -euo pipefail
fleet=0
for arg in "$@"; do
  case "$arg" in
    --fleet) fleet=1 ;;
    *) echo "usage: up.sh [--fleet]" >&2; exit 2 ;;
  esac
done
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
run="$here/run"
mkdir -p "$run"

IDP_PORT=9400
MOTO_PORT=9500
APP_URL="http://127.0.0.1:8080"
ISSUER="http://127.0.0.1:$IDP_PORT"

[ "$fleet" = 1 ] || "$here/setup.sh"

HTTPS_URL="https://127.0.0.1:8443"
ports="$IDP_PORT $MOTO_PORT 8080 8443"
[ "$fleet" = 1 ] && ports="$ports 8081 8082 8083 9081 9082 9083 9600"
[ "$fleet" = 1 ] && "$here/setup.sh" --fleet
for port in $ports; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "up.sh: port $port on 127.0.0.1 is already in use; stop whatever listens there first." >&2
    exit 1
  fi
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stsvend-target}"
echo "[up] building stsvend (debug)" >&2
(cd "$root" && cargo build --quiet --bin stsvend)
bin="$CARGO_TARGET_DIR/debug/stsvend"

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "[up] stopped" >&2
}
trap cleanup INT TERM EXIT

wait_for() { # url what
  for _ in $(seq 1 150); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "up.sh: $2 did not come up at $1; see $run/*.log" >&2
  exit 1
}

echo "[up] starting IdP on $ISSUER" >&2
IDP_PORT=$IDP_PORT IDP_JWKS_FILE="$run/idp-jwks.json" IDP_PARENT_PID=$$ \
  node "$here/idp/server.mjs" >"$run/idp.log" 2>&1 &
pids+=($!)
echo "[up] starting moto on 127.0.0.1:$MOTO_PORT" >&2
"$here/.venv/bin/python" "$here/moto_stack.py" --port $MOTO_PORT --parent-pid $$ >"$run/moto.log" 2>&1 &
pids+=($!)
wait_for "$ISSUER/.well-known/openid-configuration" "the IdP"
for _ in $(seq 1 150); do grep -q '"event": "ready"' "$run/moto.log" && break; sleep 0.2; done
grep -q '"event": "ready"' "$run/moto.log" || { echo "up.sh: moto did not come up; see $run/moto.log" >&2; exit 1; }

# What both stacks serve: the two archives of config/local.toml (and local-fleet.toml).
archives() {
  cat <<MSG

  Two archives in two accounts (moto keeps them apart):
    main    $APP_URL/archives/main/s3credentials   account 123456789012: demo-inregion, demo-restricted
    second  $APP_URL/archives/second/s3credentials account 210987654321: demo-second, demo-second-rp (requester pays)
    One endpoint routes any s3:// URL:  $APP_URL/s3credentials?target=s3://demo-second/
    Which archive serves an object:     $APP_URL/s3credentials/locate?url=s3://demo-second/hello.txt
    All of them:                        $APP_URL/s3credentials/archives
MSG
}

if [ "$fleet" = 1 ]; then
  echo "[up] starting Redis on 127.0.0.1:9600" >&2
  redis-server --port 9600 --bind 127.0.0.1 --save '' --appendonly no >"$run/redis.log" 2>&1 &
  pids+=($!)
  for n in 1 2 3; do
    echo "[up] starting stsvend replica $n on 127.0.0.1:808$n (internal :908$n)" >&2
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN= \
    STSVEND_SERVER__BIND="127.0.0.1:808$n" STSVEND_SERVER__INTERNAL_BIND="127.0.0.1:908$n" \
    STSVEND_REVOCATIONS__FILE="$run/revocations-$n.json" \
      "$bin" serve --config "$root/config/local-fleet.toml" >"$run/stsvend-$n.log" 2>&1 &
    pids+=($!)
    export "FLEET_S$n=127.0.0.1:808$n" "FLEET_C$n=908$n"
  done
  for n in 1 2 3; do wait_for "http://127.0.0.1:908$n/readyz" "replica $n"; done
  tls="$("$here/tls.sh" "$run/tls")"
  cat "$tls/server.pem" "$tls/server.key" >"$run/tls/haproxy.pem"
  chmod 600 "$run/tls/haproxy.pem"
  echo "[up] starting HAProxy on $APP_URL and $HTTPS_URL" >&2
  FLEET_HTTP=127.0.0.1:8080 FLEET_HTTPS=127.0.0.1:8443 FLEET_PEM="$run/tls/haproxy.pem" \
    haproxy -f "$here/haproxy.cfg" >"$run/haproxy.log" 2>&1 &
  pids+=($!)
  wait_for "$APP_URL/readyz" "HAProxy"
  cat <<MSG

  stsvend local fleet is up (Ctrl-C stops everything)

    HAProxy   $APP_URL  and  $HTTPS_URL (local CA $tls/ca.pem)
    replicas  127.0.0.1:8081-8083 (internal listeners :9081-9083; logs $run/stsvend-N.log)
    Redis     127.0.0.1:9600        IdP $ISSUER        moto http://127.0.0.1:$MOTO_PORT
$(archives)

  Try it:
    TOKEN=\$(curl -s -u alice:alice-pw -X POST $ISSUER/api/users/find_or_create_token \\
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
    for i in 1 2 3; do curl -s -H "Authorization: Bearer \$TOKEN" $APP_URL/s3credentials | head -c 60; echo; done
    # the same key id from every replica; one AssumeRole in moto

  Revoke alice on every replica (and see the IAM statement that ends her live credentials):
    $bin revoke --config $root/config/local-fleet.toml --user alice --reason demo
    curl -s -H "Authorization: Bearer \$TOKEN" $APP_URL/s3credentials     # 403 revoked
    $bin revocations --config $root/config/local-fleet.toml
    $bin unrevoke --config $root/config/local-fleet.toml --user alice

MSG
  wait -n "${pids[@]}"
  echo "[up] a component exited; stopping the stack" >&2
  exit 1
fi

echo "[up] starting stsvend on $APP_URL" >&2
# moto accepts any credentials; these are the service's own (demo) AWS credentials.
AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN= \
STSVEND_REVOCATIONS__FILE="$run/revocations-http.json" \
  "$bin" serve --config "$root/config/local.toml" &
pids+=($!)
wait_for "$APP_URL/readyz" "stsvend"

# The same service over https, with a local CA made on first use and Secure cookies.
tls="$("$here/tls.sh" "$run/tls")"
echo "[up] starting stsvend on $HTTPS_URL (TLS, CA $tls/ca.pem)" >&2
AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN= \
STSVEND_SERVER__BIND=127.0.0.1:8443 STSVEND_SERVER__PUBLIC_URL="$HTTPS_URL" \
STSVEND_REVOCATIONS__FILE="$run/revocations-https.json" \
STSVEND_SERVER__TLS__CERT_FILE="$tls/server.pem" STSVEND_SERVER__TLS__KEY_FILE="$tls/server.key" \
STSVEND_SESSION__SECURE=true STSVEND_OIDC__CLIENT_ID=stsvend-local-https \
STSVEND_OIDC__AUDIENCES='["stsvend-local"]' \
  "$bin" serve --config "$root/config/local.toml" >"$run/stsvend-https.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 150); do
  curl -fsS --cacert "$tls/ca.pem" -o /dev/null "$HTTPS_URL/readyz" 2>/dev/null && break
  sleep 0.2
done

cat <<MSG

  stsvend local stack is up (Ctrl-C stops everything)

    stsvend   $APP_URL            (readiness: $APP_URL/readyz)
              $HTTPS_URL           (https; Secure cookies; log in $run/stsvend-https.log)
    IdP       $ISSUER            (discovery: $ISSUER/.well-known/openid-configuration)
    moto      http://127.0.0.1:$MOTO_PORT            (STS + S3 for both archives' accounts)
$(archives)

  Demo users (password):  alice (alice-pw) groups [science]
                          bob   (bob-pw)   no groups
                          carol (carol-pw) groups [science, restricted]

  Try it:
    curl -s $APP_URL/readyz
    TOKEN=\$(curl -s -u alice:alice-pw -X POST $ISSUER/api/users/find_or_create_token \\
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
    curl -s -H "Authorization: Bearer \$TOKEN" $APP_URL/s3credentials
    curl -s -H "Authorization: Bearer \$TOKEN" "$APP_URL/s3credentials?target=s3://demo-second/"   # the second archive's role
    curl -s -H "Authorization: Bearer \$TOKEN" "$APP_URL/s3credentials/bundle?target=s3://demo-inregion/&target=s3://demo-second/"

  With a .netrc instead (the Earthdata redirect chain):
    printf 'machine 127.0.0.1 login alice password alice-pw\\n' > /tmp/stsvend-netrc
    curl -s -n --netrc-file /tmp/stsvend-netrc -L -c /tmp/stsvend-jar -b /tmp/stsvend-jar $APP_URL/s3credentials

  In a browser: $APP_URL/s3credentials (log in at the IdP's form, come back to JSON)

  Over https (earthaccess and other clients that insist on https), trust the local CA:
    export SSL_CERT_FILE=$tls/ca.pem REQUESTS_CA_BUNDLE=$tls/ca.pem AWS_CA_BUNDLE=$tls/ca.pem
    curl -s --cacert $tls/ca.pem -H "Authorization: Bearer \$TOKEN" $HTTPS_URL/s3credentials

  Logs: stsvend below; IdP and moto in $run/

MSG
wait -n "${pids[@]}"
echo "[up] a component exited; stopping the stack" >&2
