#!/usr/bin/env bash
# Build the Debian package with cargo-deb (configured in Cargo.toml's
# [package.metadata.deb]): the stripped binary, its debug info in a separate
# -dbgsym.ddeb, the man page and bash/zsh/fish completions generated from the binary,
# the systemd units, contrib/ examples and the license. The binary's --version names
# the commit it was built from. Output: target/debian/*.deb (docs/PACKAGING.md).
#
#   scripts/package.sh            # build; installs cargo-deb (pinned) if it is missing
#   sudo apt install ./target/debian/intakeq-fs_*_amd64.deb
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q " $CARGO_DEB_VERSION"; then
  echo "installing cargo-deb $CARGO_DEB_VERSION" >&2
  cargo install --locked cargo-deb --version "$CARGO_DEB_VERSION"
fi
command -v objcopy >/dev/null || {
  echo "objcopy (binutils) is needed to split the debug info: apt install binutils" >&2
  exit 1
}
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || true)
if [ -n "$commit" ] && ! git diff --quiet HEAD 2>/dev/null; then
  commit="$commit+local-changes"
fi
export INTAKEQ_FS_COMMIT="$commit"
cargo build --release --locked
assets=target/assets
rm -rf "$assets"
mkdir -p "$assets"
bin=target/release/intakeq-fs
"$bin" man | gzip -9n >"$assets/intakeq-fs.1.gz"
"$bin" completions bash >"$assets/intakeq-fs.bash"
"$bin" completions zsh >"$assets/_intakeq-fs"
"$bin" completions fish >"$assets/intakeq-fs.fish"
rm -rf target/debian
cargo deb --no-build --locked --dbgsym --compress-debug-symbols=zlib
ls -l target/debian/
