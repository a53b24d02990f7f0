#!/usr/bin/env bash
# The manylinux2014 wheel on an older Linux than this machine's: a Debian bullseye root
# (glibc 2.31, Python 3.9, the oldest suite Debian's mirrors still serve) made with mmdebstrap
# from the Debian packages and cached, entered with chroot (sharing this machine's loopback,
# where the local stack runs). There:
#   - pip refuses a wheel tagged manylinux_2_34 (what the helper shipped before), the same
#     file under that tag: "not a supported wheel on this platform";
#   - pip installs the manylinux2014 wheel, and its `stsvend credential-process` fetches
#     credentials from the local stack with a ticket;
#   - `stsvend configure` writes a profile there that the AWS CLI installed there reads with.
#
#   tests/wheel/bullseye.sh WHEEL ENDPOINT MOTO_URL TOKEN_FILE TICKET_FILE WORK_DIR
# Needs root (chroot) and mmdebstrap (Debian package); caches the root under
# ~/.cache/stsvend-bullseye (rebuilt when this script's package list changes).
set -euo pipefail
# This machine's pip settings are not the bullseye root's.
unset PIP_FIND_LINKS
wheel="$1" endpoint="$2" moto="$3" token_file="$4" ticket_file="$5" work="$6"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
say() { printf '[bullseye] %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { say "needs root for chroot"; exit 1; }
command -v mmdebstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
cache="${BULLSEYE_CACHE:-$HOME/.cache/stsvend-bullseye}"
packages="python3,python3-venv,python3-pip,ca-certificates"
# The root with the AWS CLI already in a venv of its own (what a cluster image would have):
# keyed by the package list and the test requirements, so a change rebuilds it.
key="$(printf '%s\n' "$packages" | cat - "$here/requirements-py39.txt" | sha256sum | cut -c1-16)"
ready="$cache/bullseye-$key.tar"
mkdir -p "$cache"
if [ ! -f "$ready" ]; then
  say "making the bullseye root (mmdebstrap, cached as $(basename "$ready"))"
  rm -f "$cache"/bullseye-*.tar "$cache"/*.part
  mmdebstrap --quiet --format=tar --variant=minbase --include="$packages" bullseye "$cache/base.tar.part" \
    "deb http://deb.debian.org/debian bullseye main" \
    "deb http://deb.debian.org/debian-security bullseye-security main" >&2
  base="$work/bullseye-base"
  mkdir -p "$base"
  tar -xf "$cache/base.tar.part" -C "$base"
  cp /etc/resolv.conf "$base/etc/resolv.conf"
  # This machine's trust (an egress proxy may sign PyPI's certificate), as its own pip has it.
  cp /etc/ssl/certs/ca-certificates.crt "$base/etc/ssl/certs/ca-certificates.crt"
  cp "$here/requirements-py39.txt" "$base/tmp/requirements.txt"
  chroot "$base" /usr/bin/python3 -m venv /opt/aws
  chroot "$base" /usr/bin/env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    /opt/aws/bin/pip install -q --disable-pip-version-check -r /tmp/requirements.txt >&2
  tar -cf "$ready.part" -C "$base" .
  mv "$ready.part" "$ready"
  rm -rf "$base" "$cache/base.tar.part"
fi
root="$work/bullseye"
mkdir -p "$root"
tar -xf "$ready" -C "$root"
# `configure` finds its own path in /proc, as everywhere; unmounted before anything is removed.
mount -t proc proc "$root/proc"
trap 'umount -l "$root/proc" 2>/dev/null || true' EXIT
# awk reads all of ldd's output: `head` would close the pipe early (SIGPIPE under pipefail).
glibc="$(chroot "$root" /usr/bin/ldd --version | awk 'NR == 1 {print $NF}')"
python="$(chroot "$root" /usr/bin/python3 -c 'import platform; print(platform.python_version())')"
say "Debian $(cat "$root/etc/debian_version"), glibc $glibc, Python $python"

mkdir -p "$root/tmp/w" "$root/root"
cp "$wheel" "$root/tmp/w/"
old="$(basename "$wheel" | sed 's/manylinux2014_x86_64\.manylinux_2_17_x86_64/manylinux_2_34_x86_64/')"
cp "$wheel" "$root/tmp/$old"
cp "$token_file" "$root/root/.edl_token"
cp "$ticket_file" "$root/root/job.ticket"
chroot "$root" /usr/bin/python3 -m venv /opt/helper
refused="$(chroot "$root" /opt/helper/bin/pip install --no-index --disable-pip-version-check "/tmp/$old" 2>&1 || true)"
grep -q "is not a supported wheel on this platform" <<<"$refused" \
  || { say "pip did not refuse the manylinux_2_34 wheel: $refused"; exit 1; }
say "pip refuses a manylinux_2_34 wheel: ok"
chroot "$root" /opt/helper/bin/pip install -q --no-index --disable-pip-version-check "/tmp/w/$(basename "$wheel")" >&2
got="$(chroot "$root" /opt/helper/bin/stsvend credential-process --endpoint "$endpoint" --ticket-file /root/job.ticket)"
grep -q '"AccessKeyId"' <<<"$got" || { say "credential-process with a ticket: $got"; exit 1; }
say "the manylinux2014 wheel installs; credential-process with a ticket: ok"
chroot "$root" /usr/bin/env -i HOME=/root PATH=/opt/helper/bin:/opt/aws/bin:/usr/bin:/bin \
  /opt/helper/bin/stsvend configure --endpoint "$endpoint" --profile archive --token-file /root/.edl_token >&2
listed="$(chroot "$root" /usr/bin/env -i HOME=/root PATH=/opt/aws/bin:/usr/bin:/bin \
  /opt/aws/bin/aws --profile archive --endpoint-url "$moto" s3 ls s3://demo-inregion/)"
grep -q hello.txt <<<"$listed" || { say "aws s3 ls with the configured profile: $listed"; exit 1; }
say "configure + the AWS CLI there through the profile: ok (oldest glibc proven: $glibc)"
