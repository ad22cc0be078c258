#!/usr/bin/env bash
# The Debian package: builds it (scripts/package.sh, reusing the release
# build), checks its file list, conffiles and unit, installs it into a
# throwaway root, runs the installed binary, upgrades over an edited
# conffile, removes and purges. Exit 0, or 1 with one line saying what is
# wrong. scripts/test.sh runs it after the soak (which built the release).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

fail() {
  echo "tests/package/deb.sh: FAIL: $*" >&2
  exit 1
}

# systemd-analyze; man for the man page check (systemd-analyze verify
# looks Documentation=man: pages up with it).
apt_install systemd man-db
command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing"

deb=$(scripts/package.sh | tail -n 1)
[ -f "$deb" ] || fail "scripts/package.sh made no package"
echo "package: $deb"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# ---- contents ---------------------------------------------------------------
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$work/list"
for f in \
  /usr/bin/turnpike \
  /etc/turnpike/turnserver.toml \
  /usr/share/man/man1/turnpike.1.gz \
  /usr/share/man/man1/turnpike-serve.1.gz \
  /usr/share/man/man1/turnpike-user-add.1.gz \
  /usr/share/bash-completion/completions/turnpike \
  /usr/share/zsh/vendor-completions/_turnpike \
  /usr/share/fish/vendor_completions.d/turnpike.fish \
  /lib/systemd/system/turnpike.service; do
  grep -qxF "$f" "$work/list" || fail "$f is not in the package"
done
# The packaging helper is hidden from --help, so from the man pages too.
if grep -q 'turnpike-generate' "$work/list"; then fail "the hidden generate command has a man page"; fi

dpkg-deb -I "$deb" conffiles >"$work/conffiles" 2>/dev/null || fail "the package has no conffiles"
grep -qxF /etc/turnpike/turnserver.toml "$work/conffiles" ||
  fail "/etc/turnpike/turnserver.toml is not a conffile (conffiles: $(tr '\n' ' ' <"$work/conffiles"))"
depends=$(dpkg-deb -f "$deb" Depends)
case "$depends" in
  *libc6*libssl3* | *libssl3*libc6*) ;;
  *) fail "Depends does not name libc6 and libssl3: '$depends'" ;;
esac

# ---- unpacked: the man page, completions and unit ----------------------------
dpkg-deb -x "$deb" "$work/x"
page=$(MANWIDTH=100 man -l "$work/x/usr/share/man/man1/turnpike.1.gz" 2>&1) || fail "man cannot render turnpike.1.gz"
grep -q 'turnpike-serve(1)' <<<"$page" || fail "turnpike(1) does not point to turnpike-serve(1)"
serve_page=$(MANWIDTH=100 man -l "$work/x/usr/share/man/man1/turnpike-serve.1.gz" 2>&1)
grep -q -- '--listen' <<<"$serve_page" || fail "turnpike-serve(1) does not document --listen"
grep -q 'serve' "$work/x/usr/share/bash-completion/completions/turnpike" || fail "the bash completion does not know serve"
grep -q 'serve' "$work/x/usr/share/zsh/vendor-completions/_turnpike" || fail "the zsh completion does not know serve"
grep -q 'serve' "$work/x/usr/share/fish/vendor_completions.d/turnpike.fish" || fail "the fish completion does not know serve"

# verify resolves ExecStart= and Documentation=man:turnpike(1) inside the
# unpacked tree: --root for the binary, MANPATH for the page. A booted
# system also has the targets and slices the unit's default dependencies
# name and ExecReload's /bin/kill: the host's copies stand in for those.
mkdir -p "$work/x/bin"
cp /bin/kill "$work/x/bin/kill"
cp -n /lib/systemd/system/*.target /lib/systemd/system/*.slice "$work/x/lib/systemd/system/"
if ! out=$(MANPATH="$work/x/usr/share/man" systemd-analyze verify --root="$work/x" \
  /lib/systemd/system/turnpike.service 2>&1); then
  fail "systemd-analyze verify rejects the unit: $(echo "$out" | tr '\n' ' ')"
fi
if [ -n "$out" ]; then fail "systemd-analyze verify warns: $(echo "$out" | tr '\n' ' ')"; fi

# ---- install, upgrade, remove, purge in a throwaway root ----------------------
# Maintainer scripts run outside the root with DPKG_ROOT set (it has no
# /bin/sh to chroot into), as in an image build.
root="$work/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
touch "$root/var/lib/dpkg/status"
dpkg_root() { dpkg --root="$root" --force-depends --force-not-root --force-script-chrootless "$@"; }

dpkg_root -i "$deb" >"$work/dpkg.log" 2>&1 || fail "dpkg -i failed: $(tail -n 3 "$work/dpkg.log" | tr '\n' ' ')"
version=$(dpkg-deb -f "$deb" Version)
got=$("$root/usr/bin/turnpike" --version) || fail "the installed turnpike --version failed"
[ "$got" = "turnpike ${version%-*}" ] || fail "installed turnpike --version says '$got', the package is $version"
"$root/usr/bin/turnpike" config check "$root/etc/turnpike/turnserver.toml" >/dev/null 2>"$work/check.err" ||
  fail "config check of the installed conffile: $(cat "$work/check.err")"
# postinst enabled the unit without a running systemd.
[ -L "$root/etc/systemd/system/multi-user.target.wants/turnpike.service" ] ||
  fail "postinst did not enable turnpike.service"

# What the service leaves: an admin's edit and a store (DynamicUser's layout).
echo "# edited by the admin" >>"$root/etc/turnpike/turnserver.toml"
mkdir -p "$root/var/lib/private/turnpike"
touch "$root/var/lib/private/turnpike/turnpike.db"
ln -s private/turnpike "$root/var/lib/turnpike"

# An upgrade (the same package again) keeps the edited conffile, unasked.
dpkg_root -i "$deb" </dev/null >"$work/dpkg.log" 2>&1 || fail "reinstall failed: $(tail -n 3 "$work/dpkg.log" | tr '\n' ' ')"
grep -q '^# edited by the admin' "$root/etc/turnpike/turnserver.toml" || fail "an upgrade replaced the edited conffile"

dpkg_root -r turnpike >"$work/dpkg.log" 2>&1 || fail "dpkg -r failed: $(tail -n 3 "$work/dpkg.log" | tr '\n' ' ')"
[ ! -e "$root/usr/bin/turnpike" ] || fail "remove left /usr/bin/turnpike"
[ ! -e "$root/lib/systemd/system/turnpike.service" ] || fail "remove left the unit"
grep -q '^# edited by the admin' "$root/etc/turnpike/turnserver.toml" 2>/dev/null || fail "remove did not keep the conffile"
[ -e "$root/var/lib/turnpike/turnpike.db" ] || fail "remove did not keep the store"

dpkg_root --purge turnpike >"$work/dpkg.log" 2>&1 || fail "dpkg --purge failed: $(tail -n 3 "$work/dpkg.log" | tr '\n' ' ')"
[ ! -e "$root/etc/turnpike/turnserver.toml" ] || fail "purge left the conffile"
[ ! -e "$root/etc/turnpike" ] || fail "purge left /etc/turnpike"
if [ -e "$root/var/lib/turnpike" ] || [ -L "$root/var/lib/turnpike" ]; then fail "purge left /var/lib/turnpike"; fi
[ ! -e "$root/var/lib/private/turnpike" ] || fail "purge left /var/lib/private/turnpike"
[ ! -L "$root/etc/systemd/system/multi-user.target.wants/turnpike.service" ] || fail "purge left the unit enabled"

echo "tests/package/deb.sh: ok"
