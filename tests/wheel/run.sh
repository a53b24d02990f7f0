#!/usr/bin/env bash
# The helper as a scientist gets it: the wheel (maturin, `bindings = "bin"`, the crate without
# its service; the dev profile here to keep CI time) installed into a fresh venv next to boto3
# and the AWS CLI v1 from PyPI; `stsvend configure` sets up a profile; the AWS CLI and boto3
# read a bucket from moto through it; `pip uninstall` leaves nothing of it behind.
# Needs deploy/local/setup.sh --for-tests (maturin) and the service's debug build (STSVEND_BIN).
set -euo pipefail
# Pipes end in a `grep` that reads all its input (`>/dev/null`, not `-q`): one that stops at
# the first match can leave the writer with SIGPIPE, which pipefail makes a failure.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/deploy/local/.venv"
bin="${STSVEND_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/stsvend-target}/debug/stsvend}"
# The Rust toolchain stays where it is when HOME moves to the test's folder below (the sdist
# is built by pip with it, as on a user's machine).
export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
export BULLSEYE_CACHE="${BULLSEYE_CACHE:-$HOME/.cache/stsvend-bullseye}"
# Its own target dir: a client-only build in the service's would replace its debug binary.
export CARGO_TARGET_DIR="${WHEEL_TARGET_DIR:-$HOME/.cache/stsvend-wheel-target}"
# shellcheck source=../components.sh
. "$root/tests/components.sh"
scratch wheel

# manylinux2014 (glibc 2.17: Amazon Linux 2, RHEL 7/8, Ubuntu 18.04 on), linked by zig
# (ziglang from PyPI, found by maturin through the venv's Python).
echo "[wheel] building (maturin --zig --compatibility manylinux2014, dev profile, --no-default-features)" >&2
(cd "$root/deploy/python" && PATH="$venv/bin:$PATH" "$venv/bin/maturin" build --profile dev \
  --zig --compatibility manylinux2014 --out "$work/dist") >"$work/maturin.log" 2>&1 \
  || { cat "$work/maturin.log" >&2; exit 1; }
wheel="$(ls "$work"/dist/stsvend-*.whl)"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -1)"
echo "[wheel] $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)" >&2
# The metadata a user (and pip) sees.
python3 - "$wheel" "$version" <<'PY'
import sys, zipfile
wheel, version = sys.argv[1], sys.argv[2]
z = zipfile.ZipFile(wheel)
names = z.namelist()
meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
tags = z.read(next(n for n in names if n.endswith(".dist-info/WHEEL"))).decode()
fields = {}
for line in meta.splitlines():
    if ": " in line:
        k, v = line.split(": ", 1)
        fields.setdefault(k, v)
want = {"Name": "stsvend", "Version": version, "Requires-Python": ">=3.9"}
for k, v in want.items():
    assert fields.get(k) == v, (k, fields.get(k), v)
assert fields.get("Summary", "").startswith("Temporary, read-only S3 credentials"), fields.get("Summary")
assert "Apache-2.0" in meta, "license"
tag = [l for l in tags.splitlines() if l.startswith("Tag: ")]
assert tag and any("manylinux_2_17_x86_64" in t for t in tag), tag
assert any(n.endswith(".data/scripts/stsvend") for n in names), names
print("[wheel] metadata ok:", ", ".join(t[5:] for t in tag), file=sys.stderr)
PY

# auditwheel reads the symbols the binary uses: glibc 2.17 must be enough for all of them.
"$venv/bin/auditwheel" show "$wheel" >"$work/auditwheel.txt" 2>&1 || { cat "$work/auditwheel.txt" >&2; exit 1; }
tr '\n' ' ' <"$work/auditwheel.txt" | grep 'consistent with the following platform tag: "manylinux_2_17_x86_64"' >/dev/null \
  || { echo "[wheel] auditwheel disagrees with the manylinux2014 tag:" >&2; cat "$work/auditwheel.txt" >&2; exit 1; }
echo "[wheel] auditwheel: consistent with manylinux_2_17_x86_64" >&2

echo "[wheel] installing into a fresh venv with boto3 and awscli" >&2
python3 -m venv "$work/user"
"$work/user/bin/pip" install -q --disable-pip-version-check "$wheel" -r "$here/requirements.txt" >&2
helper="$work/user/bin/stsvend"
[ -x "$helper" ] || { echo "[wheel] no stsvend on the venv's PATH" >&2; exit 1; }
"$helper" --version | grep -x "stsvend $version" >/dev/null || { echo "[wheel] wrong version: $("$helper" --version)" >&2; exit 1; }
# The service is not in the wheel: clap says `serve` is no subcommand of this build (a
# service that merely failed to start would say something else).
serve_err="$("$helper" serve 2>&1 >/dev/null || true)"
grep -q "unrecognized subcommand 'serve'" <<<"$serve_err" \
  || { echo "[wheel] the wheel's helper has the service in it: $serve_err" >&2; exit 1; }

start_components
start_stsvend "$bin" app_port
token="$(curl -fsS -u alice:alice-pw -X POST "$issuer/api/users/find_or_create_token" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')"
mkdir -p "$work/home/.aws"
printf '%s\n' "$token" >"$work/home/.edl_token"
# AWS_CONFIG_FILE away from the default, which must stay as it is.
printf '# default\n' >"$work/home/.aws/config"
mkdir -p "$work/home/elsewhere"
printf '# theirs\n[profile work]\nregion = eu-west-1\n' >"$work/home/elsewhere/aws-config"
export HOME="$work/home" AWS_CONFIG_FILE="$work/home/elsewhere/aws-config"
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE XDG_CACHE_HOME
PATH="$work/user/bin:$PATH" stsvend configure --endpoint "http://127.0.0.1:$app_port/s3credentials" \
  --profile archive --token-file "$HOME/.edl_token"
grep -q "^credential_process = $helper credential-process " "$AWS_CONFIG_FILE" \
  || { echo "[wheel] the profile does not name the installed helper:" >&2; cat "$AWS_CONFIG_FILE" >&2; exit 1; }
grep -q '^\[profile work\]' "$AWS_CONFIG_FILE"
[ "$(cat "$HOME/.aws/config")" = "# default" ] || { echo "[wheel] ~/.aws/config was changed" >&2; exit 1; }

"$work/user/bin/aws" --profile archive --endpoint-url "$moto" s3 ls s3://demo-inregion/ | grep hello.txt >/dev/null \
  || { echo "[wheel] the AWS CLI did not list the bucket" >&2; exit 1; }
echo "[wheel] aws s3 ls through the profile: ok" >&2
got="$("$work/user/bin/python" -c "
import boto3
from botocore.config import Config
s3 = boto3.Session(profile_name='archive').client('s3', endpoint_url='$moto', config=Config(s3={'addressing_style': 'path'}))
print(s3.get_object(Bucket='demo-inregion', Key='hello.txt')['Body'].read().decode(), end='')")"
[ "$got" = "hello from demo-inregion (us-west-2)" ] || { echo "[wheel] boto3 read: $got" >&2; exit 1; }
echo "[wheel] boto3 through the profile: ok" >&2

# A worker's side from the wheel: the user makes a ticket, a worker's profile uses it.
"$helper" ticket create --endpoint "http://127.0.0.1:$app_port/s3credentials" --token-file "$HOME/.edl_token" \
  --target s3://demo-inregion/ --label wheel --output "$HOME/job.ticket" 2>/dev/null
PATH="$work/user/bin:$PATH" stsvend configure --endpoint "http://127.0.0.1:$app_port/s3credentials" \
  --profile worker --ticket-file "$HOME/job.ticket"
"$work/user/bin/aws" --profile worker --endpoint-url "$moto" s3 ls s3://demo-inregion/ | grep hello.txt >/dev/null \
  || { echo "[wheel] the AWS CLI did not list the bucket with the ticket's profile" >&2; exit 1; }
"$helper" ticket list --endpoint "http://127.0.0.1:$app_port/s3credentials" --token-file "$HOME/.edl_token" | grep wheel >/dev/null \
  || { echo "[wheel] ticket list does not show the ticket" >&2; exit 1; }
echo "[wheel] a ticket's profile through the AWS CLI: ok" >&2

# The sdist, for platforms without a wheel: `pip install stsvend-<v>.tar.gz` with a Rust
# toolchain compiles the helper alone (the crate without its service), as pip does on a
# laptop: in a fresh venv, through the sdist's own build backend (maturin from PyPI, in pip's
# isolated build environment). The dev profile keeps CI's time.
echo "[wheel] sdist: maturin sdist, then pip install it in a fresh venv" >&2
(cd "$root/deploy/python" && "$venv/bin/maturin" sdist --out "$work/sdist") >"$work/sdist.log" 2>&1 \
  || { cat "$work/sdist.log" >&2; exit 1; }
sdist="$(ls "$work"/sdist/stsvend-*.tar.gz)"
listed="$(tar tzf "$sdist")"
for must in Cargo.toml Cargo.lock pyproject.toml src/main.rs src/client/mod.rs; do
  grep -qx "stsvend-$version/$must" <<<"$listed" || { echo "[wheel] the sdist lacks $must" >&2; exit 1; }
done
if grep -Eq "^stsvend-$version/(tests|deploy|\.ci|\.github)/" <<<"$listed"; then
  echo "[wheel] the sdist carries the repository's tests or deployment files" >&2; exit 1
fi
python3 -m venv "$work/from-sdist"
started=$(date +%s)
# A target folder of its own, as on a user's machine: the sdist's files are dated 2006
# (reproducible builds), older than any build of the same crate here, which cargo takes as fresh.
CARGO_TARGET_DIR="$work/sdist-target" MATURIN_PEP517_ARGS="--profile dev" \
  "$work/from-sdist/bin/pip" install -q --disable-pip-version-check "$sdist" \
  >"$work/sdist-install.log" 2>&1 || { tail -30 "$work/sdist-install.log" >&2; exit 1; }
"$work/from-sdist/bin/stsvend" --version | grep -x "stsvend $version" >/dev/null \
  || { echo "[wheel] the sdist's stsvend: $("$work/from-sdist/bin/stsvend" --version)" >&2; exit 1; }
serve_err="$("$work/from-sdist/bin/stsvend" serve 2>&1 >/dev/null || true)"
grep -q "unrecognized subcommand 'serve'" <<<"$serve_err" \
  || { echo "[wheel] the sdist built the service too: $serve_err" >&2; exit 1; }
"$work/from-sdist/bin/stsvend" credential-process --endpoint "http://127.0.0.1:$app_port/s3credentials" \
  --ticket-file "$HOME/job.ticket" | grep '"AccessKeyId"' >/dev/null \
  || { echo "[wheel] the sdist's helper did not fetch credentials" >&2; exit 1; }
echo "[wheel] sdist ($(du -k "$sdist" | cut -f1) KiB) installs in $(( $(date +%s) - started ))s, helper only, fetches credentials: ok" >&2

# An older Linux than this machine's: Debian bullseye (glibc 2.31) in a chroot.
"$here/bullseye.sh" "$wheel" "http://127.0.0.1:$app_port/s3credentials" "$moto" \
  "$HOME/.edl_token" "$HOME/job.ticket" "$work"

"$work/user/bin/pip" uninstall -q -y stsvend >&2
left="$(find "$work/user" -name 'stsvend*' -not -path '*/__pycache__/*' | sed "s|$work/user/||")"
[ -z "$left" ] || { echo "[wheel] left behind after uninstall: $left" >&2; exit 1; }
echo "[wheel] uninstall leaves nothing behind: ok" >&2
