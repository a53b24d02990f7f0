#!/usr/bin/env bash
# Build the container image with deploy/container/build.sh and run it as production would:
# read-only root filesystem, uid 65532, no capabilities, no privilege escalation, config and
# secrets mounted read-only, against the local IdP and moto. Checks: hadolint on the
# Containerfile, no shell in the image, /readyz 200 on the internal port, /metrics not on the
# public port, alice gets credentials, `stsvend check-config` exits 0 inside the image, SIGTERM
# ends it within the grace period with exit 0. Prints the image size and start-up time.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
. "$root/tests/components.sh"
venv="$root/deploy/local/.venv-ops"
export CONTAINERS_CONF="$root/tests/deploy/containers.conf"
say() { printf '[container] %s\n' "$*" >&2; }
fail() { printf '[container] FAIL: %s\n' "$*" >&2; exit 1; }

"$venv/bin/hadolint" "$root/deploy/container/Containerfile" || fail "hadolint"
say "hadolint: no findings"

image="$("$root/deploy/container/build.sh" --engine podman --debian-base-from-packages | tail -1)"
say "image $image"
podman image inspect "$image" --format '{{.Config.User}} {{.Config.StopSignal}}' | grep -qx '65532:65532 SIGTERM' \
  || fail "image must run as 65532:65532 with STOPSIGNAL SIGTERM"
podman image inspect "$image" --format '{{index .Config.Labels "org.opencontainers.image.revision"}}' | grep -q . \
  || fail "OCI revision label missing"
# The image runs (so a failure below is about the shell, not podman), and /bin/sh is missing
# from it (podman says so), rather than failing for any other reason.
podman run --rm --network none "$image" --version >/dev/null || fail "the image does not run"
if shell_out="$(podman run --rm --network none --entrypoint /bin/sh "$image" -c true 2>&1)"; then
  fail "the image has a shell"
fi
grep -qiE "no such file|not found" <<<"$shell_out" || fail "running /bin/sh failed for another reason: $shell_out"

scratch container
cid=""
stop_container() { [ -n "$cid" ] && podman rm -f -t 0 "$cid" >/dev/null 2>&1 || true; }
trap 'stop_container; for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT
start_components
port=$(free_port); internal=$(free_port)

# What a pod mounts: the config (ConfigMap) and the secrets, read-only, readable by uid 65532.
mkdir -p "$work/etc" "$work/secrets"
cp "$root/deploy/local/secrets/oidc-client-secret" "$root/deploy/local/secrets/session-key.b64" "$work/secrets/"
chmod 0755 "$work/etc" "$work/secrets"; chmod 0644 "$work/secrets/"*
# AWS's ranges (refreshed by the operator) come with the config, as a second ConfigMap key.
cp "$root/deploy/local/ip-ranges.json" "$work/etc/ip-ranges.json"
sed -e 's|^client_secret_file = .*|client_secret_file = "/run/secrets/stsvend/oidc-client-secret"|' \
    -e 's|^key_file = .*|key_file = "/run/secrets/stsvend/session-key.b64"|' \
    -e 's|^aws_ip_ranges_file = .*|aws_ip_ranges_file = "/etc/stsvend/ip-ranges.json"|' \
    "$root/config/local.toml" >"$work/etc/stsvend.toml"
chmod 0644 "$work/etc/ip-ranges.json"
chmod 0644 "$work/etc/stsvend.toml"

# revocations.file's default place, as a pod's volume: writable by uid 65532 only.
mkdir -p "$work/state"; chmod 0777 "$work/state"
sed -i 's|^file = .*revocations.*|file = "/var/lib/stsvend/revocations.json"|' "$work/etc/stsvend.toml"
run_opts=(--read-only --user 65532:65532 --cap-drop all --security-opt no-new-privileges
  --network host -v "$work/etc:/etc/stsvend:ro" -v "$work/secrets:/run/secrets/stsvend:ro"
  -v "$work/state:/var/lib/stsvend"
  -e STSVEND_SERVER__BIND="127.0.0.1:$port" -e STSVEND_SERVER__INTERNAL_BIND="127.0.0.1:$internal"
  -e STSVEND_SERVER__PUBLIC_URL="http://127.0.0.1:$port" -e STSVEND_SERVER__METRICS=true
  -e STSVEND_SERVER__LOG_FORMAT=json -e STSVEND_SERVER__SHUTDOWN_TIMEOUT_SECONDS=10
  -e STSVEND_OIDC__ISSUER="$issuer" -e STSVEND_STS__ENDPOINT_URL="$moto"
  -e AWS_ACCESS_KEY_ID=testing -e AWS_SECRET_ACCESS_KEY=testing)

podman run --rm "${run_opts[@]}" "$image" check-config >"$work/check-config.out" 2>&1 \
  || { cat "$work/check-config.out" >&2; fail "check-config inside the image"; }
say "check-config inside the image: exit 0"

started=$(date +%s%N)
cid="$(podman run -d "${run_opts[@]}" "$image")"
for _ in $(seq 1 300); do
  curl -fsS -o /dev/null "http://127.0.0.1:$internal/readyz" 2>/dev/null && break
  sleep 0.02
done
ready=$(date +%s%N)
curl -fsS -o /dev/null "http://127.0.0.1:$internal/readyz" || { podman logs "$cid" >&2; fail "/readyz never answered 200"; }
say "start-up: $(( (ready - started) / 1000000 )) ms from podman run to /readyz 200 (includes the engine's own start)"
[ -f "$work/state/revocations.json" ] || fail "no revocations file in the state volume"
say "revocations kept in the state volume (/var/lib/stsvend/revocations.json)"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/metrics")
[ "$code" = 404 ] || fail "public /metrics answered $code, want 404 when internal_bind is set"
curl -fsS "http://127.0.0.1:$internal/metrics" | grep -q '^stsvend_' || fail "internal /metrics has no stsvend_ metrics"

token=$(curl -fsS -u alice:alice-pw -X POST "$issuer/api/users/find_or_create_token" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
curl -fsS -D "$work/headers" -H "Authorization: Bearer $token" "http://127.0.0.1:$port/s3credentials" >"$work/creds.json" \
  || { podman logs "$cid" >&2; fail "alice got no credentials"; }
python3 - "$work/creds.json" <<'PY' || fail "credentials JSON"
import json, sys
c = json.load(open(sys.argv[1]))
assert c["accessKeyId"] and c["secretAccessKey"] and c["sessionToken"] and c["expiration"], c.keys()
PY
grep -qi '^cache-control: no-store' "$work/headers" || fail "no Cache-Control: no-store"
say "alice got credentials from the container"

podman kill --signal TERM "$cid" >/dev/null
t0=$(date +%s%N)
status=$(timeout 15 podman wait "$cid") || fail "still running 15 s after SIGTERM"
t1=$(date +%s%N)
[ "$status" = 0 ] || { podman logs "$cid" >&2; fail "exit status $status after SIGTERM"; }
# Read the log whole first: `podman logs | grep -q` under pipefail fails when grep stops
# early, which would hide a leak.
container_log="$(podman logs "$cid" 2>&1)" || fail "podman logs failed"
[ -n "$container_log" ] || fail "the container's log is empty (nothing to check for leaks)"
if grep -qF -- "$token" <<<"$container_log"; then fail "the bearer token appears in the container's log"; fi
podman rm "$cid" >/dev/null; cid=""
say "SIGTERM: exited 0 after $(( (t1 - t0) / 1000000 )) ms (grace period 10 s)"
say "image size: $(podman image inspect "$image" --format '{{.Size}}' | awk '{printf "%.1f MB", $1/1e6}')"
echo "$image"
