#!/usr/bin/env bash
# Real enforcement on a real S3 server: a throwaway Ceph cluster with radosgw (S3 + IAM +
# STS), a broker user and a role allowed s3:*, the demo IdP, and a stsvend instance pointed
# at Ceph's STS with Ceph's account-less role ARN. Then the credentials stsvend vends are
# tried against every operation (tests/ceph/enforcement.py).
#
# Only policy.mode = "inline" runs here: Ceph 16 (Debian bookworm) has no customer-managed
# policies (IAM CreatePolicy fails, so PolicyArns can name nothing), and it evaluates
# session tags only for AssumeRoleWithWebIdentity: a role policy conditioned on
# aws:PrincipalTag denies sessions tagged through AssumeRole (tried).
#
# This is also how to run stsvend against an S3-compatible STS (Ceph RGW, MinIO) instead
# of AWS: set sts.endpoint_url, an account-less sts.role_arn, and give stsvend the broker
# user's keys as its AWS credentials.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stsvend-target}"
bin="${STSVEND_BIN:-$CARGO_TARGET_DIR/debug/stsvend}"
python="$root/deploy/local/.venv/bin/python"   # has boto3 (moto's dependency)

work="$(mktemp -d /tmp/stsvend-ceph.XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  "$here/cluster.sh" stop "$work/cluster" || true
  wait 2>/dev/null || true
  if [ "${KEEP_CEPH_LOGS:-}" = "" ]; then rm -rf "$work"; else echo "[ceph] logs kept in $work" >&2; fi
}
trap cleanup EXIT

started=$(date +%s)
# The cluster script's own failure (and its reason, on stderr) must stop the run here, not
# surface later as an unbound variable: eval of a failed substitution would succeed.
cluster_env="$("$here/cluster.sh" start "$work/cluster")" \
  || { echo "[ceph] the throwaway cluster did not start (see its reason above; logs in $work/cluster/log)" >&2; exit 1; }
eval "$cluster_env"
: "${RGW_ENDPOINT:?cluster.sh printed no RGW_ENDPOINT}" "${CEPH_CONF:?cluster.sh printed no CEPH_CONF}"
echo "[ceph] cluster up in $(( $(date +%s) - started ))s at $RGW_ENDPOINT" >&2

# The broker: the user stsvend authenticates as. `roles=*` lets it create the role.
export AWS_ACCESS_KEY_ID=STSVENDBROKER0000001
export AWS_SECRET_ACCESS_KEY=broker-secret-for-the-throwaway-cluster
radosgw-admin -c "$CEPH_CONF" user create --uid=broker --display-name=broker \
  --access-key="$AWS_ACCESS_KEY_ID" --secret-key="$AWS_SECRET_ACCESS_KEY" >/dev/null
radosgw-admin -c "$CEPH_CONF" caps add --uid=broker --caps="roles=*" >/dev/null
export RGW_ENDPOINT
"$python" "$here/enforcement.py" seed >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
idp_port="$(free_port)"
app_port="$(free_port)"
export IDP_ISSUER="http://127.0.0.1:$idp_port"
export STSVEND_URL="http://127.0.0.1:$app_port"

IDP_PORT=$idp_port IDP_PARENT_PID=$$ node "$root/deploy/local/idp/server.mjs" >"$work/idp.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do curl -fsS -o /dev/null "$IDP_ISSUER/.well-known/openid-configuration" 2>/dev/null && break; sleep 0.1; done
curl -fsS -o /dev/null "$IDP_ISSUER/.well-known/openid-configuration" \
  || { echo "[ceph] the IdP did not come up; log:" >&2; cat "$work/idp.log" >&2; exit 1; }

# The local stack's archives plus a bucket readable under a prefix only.
config="$work/stsvend.toml"
# The second archive's role is Ceph's (account-less) second role.
sed -e "s|\.\./deploy/local/|$root/deploy/local/|g" \
  -e 's|arn:aws:iam::210987654321:role/stsvend-read|arn:aws:iam:::role/stsvend-read-second|' \
  "$root/config/local.toml" >"$config"
grep -q 'role/stsvend-read-second' "$config" || { echo "[ceph] config/local.toml has no second archive to point at Ceph" >&2; exit 1; }
cat >>"$config" <<'TOML'

[[buckets]]
name = "demo-prefixed"
region = "us-west-2"
prefixes = ["public/"]
groups = ["science"]
TOML

STSVEND_SERVER__BIND="127.0.0.1:$app_port" \
STSVEND_SERVER__PUBLIC_URL="$STSVEND_URL" \
STSVEND_SERVER__LOG_FORMAT=json \
STSVEND_REVOCATIONS__FILE="$work/revocations.json" \
STSVEND_OIDC__ISSUER="$IDP_ISSUER" \
STSVEND_STS__ENDPOINT_URL="$RGW_ENDPOINT" \
STSVEND_STS__ROLE_ARN="arn:aws:iam:::role/stsvend-read" \
STSVEND_S3__ENDPOINT_URL="$RGW_ENDPOINT" \
STSVEND_S3__FORCE_PATH_STYLE=true \
  "$bin" serve --config "$config" >"$work/stsvend.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do curl -fsS -o /dev/null "$STSVEND_URL/readyz" 2>/dev/null && break; sleep 0.1; done
curl -fsS -o /dev/null "$STSVEND_URL/readyz" || { echo "[ceph] stsvend not ready; log:" >&2; cat "$work/stsvend.log" >&2; exit 1; }

if ! "$python" "$here/enforcement.py" check; then
  echo "[ceph] stsvend log:" >&2
  tail -n 20 "$work/stsvend.log" >&2
  exit 1
fi
