# Shared helpers for scripts/*.sh. Idempotent: installs only what is missing.

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_updated=0
# apt_install PKG... : installs the Debian packages that are not installed yet.
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$apt_updated" -eq 0 ]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ensure_cargo: a Rust toolchain (>= 1.80). rustup's is used when present;
# otherwise Debian's cargo is installed.
ensure_cargo() {
  if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
  if ! command -v cargo >/dev/null 2>&1; then
    apt_install cargo rustc rustfmt rust-clippy pkg-config gcc
  fi
}

# stop_packaged_coturn: Debian's coturn package may start a turnserver on
# 3478; the tests need the port and only the client tools.
stop_packaged_coturn() {
  $SUDO service coturn stop >/dev/null 2>&1 || true
  $SUDO pkill -x turnserver >/dev/null 2>&1 || true
}
