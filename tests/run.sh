#!/usr/bin/env bash
# Run the whole test suite: installs what is missing (the IdP's npm packages, a venv with
# moto and schemathesis, Debian's chromium and playwright-core, the IAM policy evaluator,
# podman and the operations-file checkers, cargo-fuzz), then runs every Rust test (the
# integration tests start the real IdP and moto themselves on free loopback ports), the HTTP
# contract checked by schemathesis, the session-policy semantics tests, the headless browser
# tests, the enforcement tests on a throwaway Ceph RGW cluster, the fleet (three replicas,
# redis-server, HAProxy) measured through the load balancer, the operations files in
# deploy/ with the real tool for each (cfn-lint, parliament, promtool, kubectl,
# kubernetes-validate, checkov, hadolint, podman), and every fuzz target for FUZZ_SECONDS
# (default 20) each.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

deploy/local/setup.sh --for-tests

# Reuse one build directory across clones (CI runs in a fresh clone each time).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stsvend-target}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

echo "[tests] cargo test" >&2
cargo test --locked --all-targets

cargo build --locked --quiet --bin stsvend
export STSVEND_BIN="$CARGO_TARGET_DIR/debug/stsvend"

echo "[tests] HTTP contract (schemathesis against /openapi.json)" >&2
tests/contract/run.sh

echo "[tests] session policies through the IAM evaluator" >&2
(cd tests/policy && node --test)

echo "[tests] browser tests (headless chromium)" >&2
(cd tests/browser && node --test)

echo "[tests] enforcement on Ceph RGW" >&2
tests/ceph/run.sh

echo "[tests] fleet: three replicas, Redis and HAProxy" >&2
tests/fleet/run.sh

echo "[tests] operations files: IAM, alerts, Kubernetes, the container image" >&2
tests/deploy/run.sh

echo "[tests] fuzzing (${FUZZ_SECONDS:-20}s per target)" >&2
tests/fuzz/run.sh "${FUZZ_SECONDS:-20}"
