#!/usr/bin/env bash
# Sets up everything the tests need on a fresh Debian machine, then runs the
# whole suite: formatting, lints, unit, property, wire and interop tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_cargo
# coturn: turnutils_* client tools (real peers); strace: lets the interop
# test see which port the client bound.
apt_install coturn strace ca-certificates iproute2
stop_packaged_coturn

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --all-targets
