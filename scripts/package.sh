#!/usr/bin/env bash
# Builds the Debian package target/debian/turnpike_VERSION-REV_ARCH.deb
# with cargo-deb (Cargo.toml's [package.metadata.deb] lists its contents)
# and prints its path as the last line. Reuses an up-to-date release build.
#
#   scripts/package.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

# Pinned: cargo-deb's output and flags change between releases. 3.8.0
# needs rustc >= 1.85.
CARGO_DEB_VERSION=3.8.0

ensure_cargo
# dpkg-shlibdeps (dpkg-dev) turns depends = "$auto" into the libc and libssl
# versions the binary links.
apt_install dpkg-dev
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  echo "== cargo install cargo-deb $CARGO_DEB_VERSION (once)" >&2
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
fi

timeout 3600 cargo build --release --quiet
BIN=target/release/turnpike

# Regenerated every time so a removed subcommand leaves no stale page.
rm -rf target/generated
"$BIN" generate man --out target/generated/man >/dev/null
"$BIN" generate completions --out target/generated/completions >/dev/null

# --no-build: the binary above is what gets packaged. --strip: cargo-deb
# keeps the profile's debug info otherwise (a 79 MB binary); it strips its
# own copy, target/release stays as built.
out=$(cargo deb --no-build --strip --output target/debian/ 2>&1) || {
  echo "$out" >&2
  echo "error: cargo deb failed" >&2
  exit 1
}
deb=$(echo "$out" | tail -n 1)
if ! [ -f "$deb" ]; then
  echo "$out" >&2
  echo "error: cargo deb named no package file" >&2
  exit 1
fi
echo "$deb"
