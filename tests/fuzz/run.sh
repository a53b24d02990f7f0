#!/usr/bin/env bash
# Run every fuzz target for a given number of seconds each (default 30):
#   tests/fuzz/run.sh [seconds]
# Installs cargo-fuzz when missing. cargo-fuzz passes nightly -Z flags to rustc; this
# machine has only the stable toolchain, so RUSTC_BOOTSTRAP=1 unlocks them. The seed corpus
# in tests/fuzz/corpus/<target> is read, never written: new inputs go to a work corpus under
# the build directory. Any crash, timeout (10 s per input) or out-of-memory fails the run.
set -euo pipefail
secs="${1:-30}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/stsvend-fuzz-target}"
export RUSTC_BOOTSTRAP=1
if ! command -v cargo-fuzz >/dev/null; then
  echo "[fuzz] cargo install cargo-fuzz" >&2
  cargo install --locked cargo-fuzz >&2
fi
fuzz=(cargo fuzz)
opts=(--fuzz-dir tests/fuzz --sanitizer none --release --debug-assertions)
echo "[fuzz] building the targets" >&2
"${fuzz[@]}" build "${opts[@]}" >&2
work="$CARGO_TARGET_DIR/fuzz-work"
summary=()
# Every target in tests/fuzz/Cargo.toml runs: a failing or short `cargo fuzz list` must not
# turn into zero targets and a success.
expected="$(grep -c '^\[\[bin\]\]' tests/fuzz/Cargo.toml)"
targets="$("${fuzz[@]}" list --fuzz-dir tests/fuzz)" || { echo "[fuzz] cargo fuzz list failed" >&2; exit 1; }
found="$(wc -w <<<"$targets")"
if [ "$found" -ne "$expected" ] || [ "$expected" -lt 10 ]; then
  echo "[fuzz] expected $expected targets (at least 10), cargo fuzz list gave $found: $targets" >&2
  exit 1
fi
# libFuzzer runs on one core: two targets at a time (FUZZ_JOBS, default the core count) give
# each its full time on a core and halve the wall time.
jobs="${FUZZ_JOBS:-$(nproc)}"
fuzz_one() { # target: its exit status in $work/<target>.rc
  local target=$1 rc=0
  mkdir -p "$work/corpus/$target" "$work/artifacts/$target"
  "${fuzz[@]}" run "${opts[@]}" "$target" "$work/corpus/$target" "tests/fuzz/corpus/$target" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$work/artifacts/$target/" >"$work/$target.log" 2>&1 || rc=$?
  echo "$rc" >"$work/$target.rc"
}
running=0
for target in $targets; do
  rm -f "$work/$target.rc"
  echo "[fuzz] $target for ${secs}s" >&2
  fuzz_one "$target" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
done
wait
ran=0
for target in $targets; do
  log="$work/$target.log"
  if [ "$(cat "$work/$target.rc" 2>/dev/null)" != 0 ]; then
    tail -40 "$log" >&2
    echo "[fuzz] $target FAILED; the input is in $work/artifacts/$target/" >&2
    exit 1
  fi
  execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
  [ -n "$execs" ] && [ "$execs" -gt 0 ] || { echo "[fuzz] $target reported no executions" >&2; exit 1; }
  ran=$((ran + 1))
  summary+=("$(printf '%-16s %6ss %12s executions %10s/s' "$target" "$secs" "$execs" "$(( execs / secs ))")")
done
[ "$ran" -eq "$expected" ] || { echo "[fuzz] ran $ran of $expected targets" >&2; exit 1; }
echo "[fuzz] $ran targets, no crashes, timeouts or out-of-memory:" >&2
printf '  %s\n' "${summary[@]}" >&2
