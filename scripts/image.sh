#!/usr/bin/env bash
# Builds the OCI image localhost/turnpike:VERSION (and :latest) with podman
# and prints its name as the last line. No registry is reachable here, so
# it is FROM scratch: the release binary, the shared libraries it links and
# the dynamic loader, a passwd/group naming the non-root user 10001, the
# example config, and /var/lib/turnpike (the SQLite store) owned by 10001.
#
#   scripts/image.sh
#   podman run -d --name turnpike --network host \
#     --cap-drop=all --cap-add=net_bind_service \
#     -v /etc/turnpike/turnserver.toml:/etc/turnpike/turnserver.toml:ro \
#     localhost/turnpike:latest
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_cargo
setup_podman
apt_install binutils

timeout 3600 cargo build --release --quiet
BIN=target/release/turnpike
VERSION=$("$BIN" --version | awk '{print $2}')

ctx=target/image/ctx
rm -rf "$ctx"
mkdir -p "$ctx/usr/bin" "$ctx/etc/turnpike" "$ctx/var/lib/turnpike" "$ctx/tmp"
# The line tables (debug = 1) are only for local backtraces; stripped, the
# image is a fraction of the size.
strip --strip-debug -o "$ctx/usr/bin/turnpike" "$BIN"
chmod 755 "$ctx/usr/bin/turnpike"

# Every library ldd resolves, and the loader (the line without "=>"), at
# the paths the binary and the loader look for them. -L copies the file a
# soname link points at, under the soname.
libs=$(ldd "$BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
[ -n "$libs" ] || {
  echo "error: ldd listed no libraries for $BIN" >&2
  exit 1
}
for lib in $libs; do
  mkdir -p "$ctx$(dirname "$lib")"
  cp -L "$lib" "$ctx$lib"
done

cp turnserver.toml "$ctx/etc/turnpike/turnserver.toml"
cat >"$ctx/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/usr/sbin/nologin
turnpike:x:10001:10001:turnpike:/var/lib/turnpike:/usr/sbin/nologin
EOF
cat >"$ctx/etc/group" <<'EOF'
root:x:0:
turnpike:x:10001:
EOF
# glibc resolves host names (a PostgreSQL host, say) with its built-in
# files and dns sources; podman supplies /etc/hosts and /etc/resolv.conf.
echo "hosts: files dns" >"$ctx/etc/nsswitch.conf"
chmod 700 "$ctx/var/lib/turnpike"
chmod 1777 "$ctx/tmp"

cat >"$ctx/Containerfile" <<EOF
FROM scratch
COPY etc/ /etc/
COPY usr/ /usr/
COPY lib/ /lib/
COPY lib64/ /lib64/
COPY tmp/ /tmp/
COPY --chown=10001:10001 var/lib/turnpike/ /var/lib/turnpike/
LABEL org.opencontainers.image.title="turnpike" \\
      org.opencontainers.image.description="STUN/TURN server" \\
      org.opencontainers.image.version="$VERSION" \\
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
# The relative default store (db = "sqlite:turnpike.db") lands in the
# writable state directory, for serve and for store commands run with
# podman exec alike.
WORKDIR /var/lib/turnpike
VOLUME /var/lib/turnpike
USER 10001
EXPOSE 3478/udp 3478/tcp
# turnpike health asks /livez on the config's health_listen or admin_listen
# (a STUN Binding when both are off).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \\
  CMD ["/usr/bin/turnpike", "health", "--config", "/etc/turnpike/turnserver.toml"]
ENTRYPOINT ["/usr/bin/turnpike"]
CMD ["serve", "--config", "/etc/turnpike/turnserver.toml"]
EOF
for d in lib lib64; do
  [ -d "$ctx/$d" ] || sed -i "\|^COPY $d/|d" "$ctx/Containerfile"
done

old=$(podman image inspect -f '{{.Id}}' "localhost/turnpike:$VERSION" 2>/dev/null || true)
# --format docker: the OCI image format has no HEALTHCHECK.
podman build --quiet --format docker -f "$ctx/Containerfile" \
  -t "localhost/turnpike:$VERSION" -t localhost/turnpike:latest "$ctx" >/dev/null
new=$(podman image inspect -f '{{.Id}}' "localhost/turnpike:$VERSION")
# A rebuild leaves the previous image untagged: drop it unless a container
# still uses it, so repeated runs do not fill the disk.
if [ -n "$old" ] && [ "$old" != "$new" ]; then
  podman rmi "$old" >/dev/null 2>&1 || true
fi
echo "localhost/turnpike:$VERSION"
