#!/usr/bin/env bash
# The whole test suite: unit, core (in-memory fake), HTTP (fake server) and FUSE
# (real mounts driven with real tools). Installs missing system packages first.
# Runs every test binary even when an earlier one fails (each with --no-fail-fast),
# prints one line per binary, names the ones that failed, and ends with one line
# "tests: N passed, N failed". A binary that does not build or crashes before it
# reports counts as one failed test, so the total never silently leaves it out.
# Exit status: 0 only if every binary built and passed. TEST_ONLY="lib admin" runs a subset.
# The SMB tier (tests/smb.rs, TEST_ONLY=smb) needs root: as another user each of its tests
# prints SKIPPED and passes, except with CI set, where it fails.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh || exit 1
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Every test target: the library's unit tests, the binary's, then each tests/*.rs
# (TEST_ONLY="lib admin" runs just those).
targets=("--lib" "--bins")
for f in tests/*.rs; do
  targets+=("--test $(basename "$f" .rs)")
done
if [ -n "${TEST_ONLY:-}" ]; then
  chosen=()
  for t in "${targets[@]}"; do
    n=${t#--test }
    n=${n#--}
    case " $TEST_ONLY " in *" $n "*) chosen+=("$t") ;; esac
  done
  targets=("${chosen[@]}")
fi
total_passed=0 total_failed=0 status=0
summary=() broken=()
for t in "${targets[@]}"; do
  # shellcheck disable=SC2086 # "$t" is an option and its value
  cargo test --locked --no-fail-fast $t -- --test-threads "${TEST_THREADS:-4}" >"$log" 2>&1
  rc=$?
  cat "$log"
  # One line per test ("test name ... ok"), so the tests of a binary that crashes
  # half-way still count.
  p=$(grep -Ec '^test .* \.\.\. ok$' "$log")
  f=$(grep -Ec '^test .* \.\.\. FAILED$' "$log")
  name=${t#--test }
  name=${name#--}
  if [ "$rc" -ne 0 ] && ! grep -Eq '^test result: FAILED' "$log"; then
    # It failed without reporting a failing test: it did not build, or it crashed.
    f=$((f + 1))
    broken+=("$name")
  fi
  [ "$rc" -ne 0 ] && status=1
  total_passed=$((total_passed + p))
  total_failed=$((total_failed + f))
  summary+=("$(printf '  %-12s %4d passed, %d failed' "$name" "$p" "$f")")
done
echo
echo "per test binary:"
printf '%s\n' "${summary[@]}"
failed_bins=()
for line in "${summary[@]}"; do
  case "$line" in *" 0 failed") ;; *) failed_bins+=("$(echo "$line" | awk '{print $1}')") ;; esac
done
if [ ${#failed_bins[@]} -gt 0 ]; then
  echo "failed: ${failed_bins[*]}"
fi
if [ ${#broken[@]} -gt 0 ]; then
  echo "did not build or crashed (counted as 1 failed each): ${broken[*]}"
fi
echo "tests: ${total_passed} passed, ${total_failed} failed"
exit "$status"
