#!/usr/bin/env bash
# Mount a demo drive: an embedded fake IntakeQ with sample data, no account needed.
# Usage: scripts/demo.sh [MOUNTPOINT]   (default ~/intakeq-demo). Ctrl-C unmounts; if
# backgrounded, `fusermount3 -u MOUNTPOINT` does. Writes go to the fake server inside the
# demo process and do not survive it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
mnt="${1:-$HOME/intakeq-demo}"
mkdir -p "$mnt"
[ -x target/release/intakeq-fs ] || echo "demo: first build: about 2-3 minutes on 2 cores (later builds take seconds)" >&2
cargo build --release --locked
exec target/release/intakeq-fs demo "$mnt"
