#!/usr/bin/env bash
# Enforces the layering of design.md: the sans-IO core (src/stun, src/auth,
# src/turn, src/nat, src/binding.rs, src/turn_client) depends on no runtime, store, web or
# logging crate (tokio, sqlx, axum, tracing, ...) and never reads the OS
# clock: time comes in as `now` (and the Unix time as a value).
#
# How: the core's own files are compiled as a stand-alone crate whose only
# dependencies are the codec and crypto crates below (versions taken from
# Cargo.toml, so they stay in one place). Importing anything else fails to
# resolve; clippy's disallowed_methods and disallowed_types refuse the OS
# clock (SystemTime::now, Instant::now), sleeping, environment variables,
# files and std sockets outside test code (test modules are not compiled
# here).
# Exits non-zero, naming the file and line, when the core breaks a rule.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_cargo

CORE_MODULES="stun auth turn nat binding turn_client"
# arc-swap: the TURN settings a reload swaps (a primitive, not a runtime).
ALLOWED_DEPS="aes-gcm arc-swap base64 crc32fast hmac md-5 sha1 sha2 subtle thiserror"

root=$PWD
dir=target/core-check/crate
rm -rf "$dir"
mkdir -p "$dir/src"
{
  cat <<'TOML'
[package]
name = "turnpike-core-check"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]

[dependencies]
TOML
  for dep in $ALLOWED_DEPS; do
    line=$(grep -E "^$dep = " Cargo.toml) || { echo "check_core: $dep is not in Cargo.toml" >&2; exit 2; }
    echo "$line"
  done
} > "$dir/Cargo.toml"
cat > "$dir/clippy.toml" <<'TOML'
disallowed-methods = [
  { path = "std::time::SystemTime::now", reason = "the core takes the Unix time as a value" },
  { path = "std::time::Instant::now", reason = "the core takes `now` as an input" },
  { path = "std::thread::sleep", reason = "the core never blocks: time comes in as `now`" },
  { path = "std::env::var", reason = "settings come in through the config types" },
  { path = "std::env::var_os", reason = "settings come in through the config types" },
  { path = "std::fs::read", reason = "the shell reads files" },
  { path = "std::fs::read_to_string", reason = "the shell reads files" },
  { path = "std::fs::write", reason = "the shell writes files" },
]
disallowed-types = [
  { path = "std::net::UdpSocket", reason = "the core reads no socket" },
  { path = "std::net::TcpStream", reason = "the core reads no socket" },
  { path = "std::net::TcpListener", reason = "the core reads no socket" },
  { path = "std::fs::File", reason = "the shell reads files" },
]
TOML
for m in $CORE_MODULES; do
  if [ -d "src/$m" ]; then path="$root/src/$m/mod.rs"; else path="$root/src/$m.rs"; fi
  printf '#[path = "%s"]\npub mod %s;\n' "$path" "$m"
done > "$dir/src/lib.rs"
# The main lock file pins the same versions the product builds with.
cp Cargo.lock "$dir/"

echo "== core layering: $CORE_MODULES build with only: $ALLOWED_DEPS"
if ! (cd "$dir" && cargo clippy --quiet --target-dir "$root/target/core-check/target" \
      -- -A warnings -D clippy::disallowed_methods -D clippy::disallowed_types); then
  echo "check_core: the sans-IO core imports a crate outside its allowed set, refers to" >&2
  echo "check_core: a module outside the core, or uses the OS clock, sleeps, files, sockets or the environment (see above)" >&2
  exit 1
fi
echo "core layering: ok"
