#!/usr/bin/env bash
# The whole test suite: unit, core (in-memory fake), HTTP (fake server) and FUSE
# (real mounts driven with real tools). Installs missing system packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
cargo build --locked --all-targets
cargo test --locked -- --test-threads "${TEST_THREADS:-4}"
