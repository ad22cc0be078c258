#!/usr/bin/env bash
# Builds turnpike (release) and runs the server on its embedded defaults:
# UDP and TCP on 0.0.0.0:3478 and [::]:3478. Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_cargo
cargo build --release --quiet
exec target/release/turnpike serve "$@"
