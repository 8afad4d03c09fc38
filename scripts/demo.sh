#!/usr/bin/env bash
# Mount a demo drive: an embedded fake IntakeQ with sample data, no account needed.
# Usage: scripts/demo.sh [MOUNTPOINT]   (default ~/intakeq-demo). Ctrl-C unmounts.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
mnt="${1:-$HOME/intakeq-demo}"
mkdir -p "$mnt"
cargo build --release --locked
exec target/release/intakeq-fs demo "$mnt"
