#!/usr/bin/env bash
# Build stsvend's container image: the release binary (cargo build --release --locked), then
# deploy/container/Containerfile with docker or podman. The last line printed is the image
# reference.
#
#   deploy/container/build.sh [--engine docker|podman] [--image NAME] [--tag TAG] [--debian-base-from-packages]
#
# --debian-base-from-packages: when no registry is reachable, make the Debian base image from
# Debian packages with mmdebstrap (cached under ~/.cache/stsvend-container) and import it
# under the name the Containerfile pulls, instead of pulling it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

engine="${CONTAINER_ENGINE:-}"
image="stsvend"
tag=""
base_from_packages=0
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) engine="$2"; shift 2 ;;
    --image) image="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --debian-base-from-packages) base_from_packages=1; shift ;;
    *) echo "usage: build.sh [--engine docker|podman] [--image NAME] [--tag TAG] [--debian-base-from-packages]" >&2; exit 2 ;;
  esac
done
if [ -z "$engine" ]; then
  if command -v podman >/dev/null; then engine=podman; elif command -v docker >/dev/null; then engine=docker; else
    echo "build.sh: neither docker nor podman is installed" >&2; exit 1
  fi
fi
log() { printf '[build] %s\n' "$*" >&2; }

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"
revision="$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then revision="$revision-dirty"; fi
tag="${tag:-$version-$revision}"
debian_image="docker.io/library/debian:bookworm-slim"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stsvend-target}"
log "cargo build --release --locked"
(cd "$root" && cargo build --release --locked --quiet --bin stsvend)

if [ "$base_from_packages" = 1 ] && ! "$engine" image inspect "$debian_image" >/dev/null 2>&1; then
  cache="$HOME/.cache/stsvend-container"
  mkdir -p "$cache"
  # A regular, non-empty file: an earlier run may have left a directory of that name.
  if [ ! -f "$cache/bookworm-minbase.tar" ] || [ ! -s "$cache/bookworm-minbase.tar" ]; then
    command -v mmdebstrap >/dev/null || { echo "build.sh: mmdebstrap is missing (Debian package mmdebstrap)" >&2; exit 1; }
    log "making $debian_image from Debian packages (mmdebstrap)"
    rm -rf "$cache/bookworm-minbase.tar" "$cache/bookworm-minbase.tar.part"
    # --format=tar: mmdebstrap guesses the format from the file name, and `.part` is none it
    # knows (it would make a directory).
    mmdebstrap --quiet --format=tar --variant=minbase --include=ca-certificates bookworm \
      "$cache/bookworm-minbase.tar.part" /etc/apt/sources.list.d/debian.sources >&2
    mv "$cache/bookworm-minbase.tar.part" "$cache/bookworm-minbase.tar"
  fi
  "$engine" import "$cache/bookworm-minbase.tar" "$debian_image" >/dev/null
fi

context="$(mktemp -d /tmp/stsvend-image.XXXXXX)"
trap 'rm -rf "$context"' EXIT
# Symbols are kept in target/ (profiling) and left out of the image.
if command -v strip >/dev/null; then
  strip -o "$context/stsvend" "$CARGO_TARGET_DIR/release/stsvend"
else
  cp "$CARGO_TARGET_DIR/release/stsvend" "$context/stsvend"
fi

extra=()
[ "$base_from_packages" = 1 ] && extra+=(--pull=never)
# podman writes OCI images by default, which have no SHELL or STOPSIGNAL.
[ "$engine" = podman ] && extra+=(--format docker)
log "$engine build $image:$tag"
"$engine" build "${extra[@]}" --network host -q -f "$here/Containerfile" \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
  -t "$image:$tag" "$context" >&2
if [ "$engine" = podman ]; then echo "localhost/$image:$tag"; else echo "$image:$tag"; fi
