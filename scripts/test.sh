#!/usr/bin/env bash
# Sets up everything the tests need on a fresh Debian machine, then runs the
# whole suite: formatting, lints, unit, property, wire and interop tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_cargo
# coturn: turnutils_* client tools (real peers); strace: lets the interop
# test see which port the client bound; chromium: the browser relay test;
# iproute2 and nftables: the NAT emulation (network namespaces) of RFC 5780;
# stun-client: Debian's RFC 3489 (classic STUN) NAT-type tester; nginx and
# curl: the HTTPS backend and client of the TLS passthrough tests; haproxy:
# the PROXY protocol tests start their own, in front of the server;
# pebble: the ACME CA and its mock DNS of the ACME tests.
apt_install coturn stun-client strace ca-certificates iproute2 nftables chromium python3-yaml nginx curl haproxy pebble
command -v node >/dev/null 2>&1 || apt_install nodejs npm
stop_packaged_coturn
stop_packaged_nginx
stop_packaged_haproxy
# playwright-core drives Debian's Chromium; it downloads no browser.
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

# PostgreSQL for the store tests, MariaDB and Redis for `import coturn-db`
# (coturn's other user databases): throwaway servers, stopped on exit.
PG_DIR=/tmp/turnpike-test-pg
MYSQL_DIR=/tmp/turnpike-test-mysql
REDIS_DIR=/tmp/turnpike-test-redis
trap 'stop_test_postgres "$PG_DIR"; stop_test_mariadb "$MYSQL_DIR"; stop_test_redis "$REDIS_DIR"' EXIT
start_test_postgres "$PG_DIR" 55432
start_test_mariadb "$MYSQL_DIR" 53306
start_test_redis "$REDIS_DIR" 56379

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
# The sans-IO core builds alone, without tokio, sqlx, axum, tracing or the
# OS clock (design.md's layering).
scripts/check_core.sh
echo "== cargo test"
cargo test --all-targets
echo "== admin API fuzzing (schemathesis, every check but use_after_free; a few minutes)"
API_FUZZ_SECONDS=${API_FUZZ_SECONDS:-120} scripts/api_fuzz.sh
# The integration test of `turnpike bench soak`: 60 s of 10,000 churning
# allocations against the release binary; non-zero if the server died or
# errors passed the bound.
echo "== scripts/soak.sh 1"
if ! scripts/soak.sh 1; then
  echo "error: the 60-second soak failed" >&2
  exit 1
fi
# The Debian package and the OCI image, from the soak's release build:
# contents, unit, install/upgrade/remove/purge in a throwaway root; the
# container relays, passes its HEALTHCHECK and runs unprivileged.
echo "== tests/package/deb.sh"
tests/package/deb.sh
echo "== tests/package/image.sh"
tests/package/image.sh
# A short fuzz run of every target, two at a time, on a dev build (cheaper
# to build; the long runs are scripts/fuzz.sh's default); a crash fails.
echo "== fuzz (FUZZ_DEV=1 scripts/fuzz.sh 20)"
FUZZ_DEV=1 scripts/fuzz.sh 20
