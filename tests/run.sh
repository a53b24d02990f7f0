#!/usr/bin/env bash
# Run the whole test suite: installs what is missing (the IdP's npm packages, a venv with
# moto and schemathesis, Debian's chromium and playwright-core, the IAM policy evaluator,
# podman and the operations-file checkers, cargo-fuzz), then runs every Rust test (the
# integration tests start the real IdP and moto themselves on free loopback ports), the HTTP
# contract checked by schemathesis, the session-policy semantics tests, the headless browser
# tests, the enforcement tests on a throwaway Ceph RGW cluster, the fleet (three replicas,
# redis-server, HAProxy) measured through the load balancer, the helper's Python wheel
# installed next to the AWS CLI and boto3, the README page's earthaccess and obstore recipes
# as the page shows them, the operations files in
# deploy/ with the real tool for each (cfn-lint, parliament, promtool, kubectl,
# kubernetes-validate, checkov, hadolint, podman), that no module of src/ imports another in
# a loop, and every fuzz target for FUZZ_SECONDS
# (default 20) each.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# Every step runs under a timeout that names it when it fires, and a table of each step's
# wall time is printed at the end, pass or fail (.ci/run adds its own steps' times through
# STSVEND_CI_STEPS: "name seconds status;...").
steps=()
table() {
  local rc=$?
  {
    echo "[tests] step times:"
    local entry name secs status
    IFS=';' read -ra pre <<<"${STSVEND_CI_STEPS:-}"
    for entry in "${pre[@]}" "${steps[@]}"; do
      [ -n "$entry" ] || continue
      read -r name secs status <<<"$entry"
      printf '  %-34s %5ss  %s\n' "$name" "$secs" "$status"
    done
    printf '  %-34s %5ss  %s\n' "total (tests/run.sh)" "$(( $(date +%s) - run_started ))" "$([ "$rc" = 0 ] && echo ok || echo "FAILED ($rc)")"
  } >&2
}
run_started=$(date +%s)
trap table EXIT

# step NAME SECONDS COMMAND...: run COMMAND within SECONDS; its time goes in the table.
step() {
  local name="$1" limit="$2" started rc
  shift 2
  echo "[tests] $name" >&2
  started=$(date +%s)
  set +e
  timeout --kill-after=20 "$limit" "$@"
  rc=$?
  set -e
  local took=$(( $(date +%s) - started ))
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    steps+=("${name// /_} $took TIMED-OUT")
    echo "[tests] step '$name' timed out after ${limit}s" >&2
    exit 1
  elif [ "$rc" != 0 ]; then
    steps+=("${name// /_} $took FAILED($rc)")
    echo "[tests] step '$name' failed (exit $rc)" >&2
    exit "$rc"
  fi
  steps+=("${name// /_} $took ok")
}

# .ci/run starts the setup in the background (STSVEND_SETUP_DIR) while clippy compiles: then
# this step waits for it, shows its output and fails as it failed.
setup_or_wait() {
  if [ -z "${STSVEND_SETUP_DIR:-}" ]; then
    deploy/local/setup.sh --for-tests
    return
  fi
  while [ ! -f "$STSVEND_SETUP_DIR/rc" ]; do sleep 1; done
  cat "$STSVEND_SETUP_DIR/log" >&2
  echo "[tests] setup took $(cat "$STSVEND_SETUP_DIR/took")s alongside clippy" >&2
  return "$(cat "$STSVEND_SETUP_DIR/rc")"
}
export -f setup_or_wait
step "setup (apt, npm, pip)" 1200 bash -c setup_or_wait
# No module of src/ imports another in a loop; the check itself is tested on trees made to loop.
step "structure (import loops)" 60 bash -c 'python3 tests/structure/test_import_loops.py && python3 tests/structure/import_loops.py src'

# Reuse one build directory across clones (CI runs in a fresh clone each time).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/stsvend-target}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

step "cargo test (build + run)" 1500 cargo test --locked --all-targets
# The binary `cargo test` built for the integration tests serves the suites below: a separate
# `cargo build` would compile the dependencies again without the dev-dependencies' features.
export STSVEND_BIN="$CARGO_TARGET_DIR/debug/stsvend"
[ -x "$STSVEND_BIN" ] || { echo "[tests] cargo test left no binary at $STSVEND_BIN" >&2; exit 1; }

step "HTTP contract (schemathesis)" 600 tests/contract/run.sh
step "IAM evaluator (policies)" 300 bash -c 'cd tests/policy && node --test'
step "browser (headless chromium)" 600 bash -c 'cd tests/browser && node --test'
step "enforcement on Ceph RGW" 900 tests/ceph/run.sh
step "fleet (3 replicas, Redis, HAProxy)" 900 tests/fleet/run.sh
step "the helper's wheel (pip, AWS CLI, boto3)" 900 tests/wheel/run.sh
step "the page's Python recipes (earthaccess, obstore)" 600 tests/clients/run.sh
step "operations files + image" 1800 tests/deploy/run.sh
step "fuzzing (${FUZZ_SECONDS:-20}s per target)" 2100 tests/fuzz/run.sh "${FUZZ_SECONDS:-20}"
