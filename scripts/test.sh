#!/usr/bin/env bash
# The whole test suite: unit, core (in-memory fake), HTTP (fake server) and FUSE
# (real mounts driven with real tools). Installs missing system packages first.
# Ends with one line "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
cargo build --locked --all-targets
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked --all-targets -- --test-threads "${TEST_THREADS:-4}" 2>&1 | tee "$log" || status=$?
passed=$(grep -Eo '^test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed;' "$log" | awk '{s+=$1} END {print s+0}')
echo
echo "tests: ${passed} passed, ${failed} failed"
exit "$status"
