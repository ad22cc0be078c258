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

# ensure_cargo: a Rust toolchain (>= 1.80) and the C libraries the build
# links. rustup's toolchain is used when present; otherwise Debian's.
ensure_cargo() {
  if [ -f "$HOME/.cargo/env" ]; then . "$HOME/.cargo/env"; fi
  if ! command -v cargo >/dev/null 2>&1; then
    apt_install cargo rustc rustfmt rust-clippy
  fi
  # DTLS links Debian's OpenSSL (the openssl crate finds it via pkg-config).
  apt_install pkg-config gcc libssl-dev
}

# stop_packaged_coturn: Debian's coturn package may start a turnserver on
# 3478; the tests need the port and only the client tools.
stop_packaged_coturn() {
  $SUDO service coturn stop >/dev/null 2>&1 || true
  $SUDO pkill -x turnserver >/dev/null 2>&1 || true
}

# stop_packaged_nginx: Debian's nginx package starts a server on port 80;
# the passthrough tests run their own nginx processes and need only the
# binary.
stop_packaged_nginx() {
  $SUDO service nginx stop >/dev/null 2>&1 || true
}

# stop_packaged_haproxy: the tests run their own haproxy processes on
# loopback; Debian's service (port 80/443 configs of its own) is not wanted.
stop_packaged_haproxy() {
  $SUDO service haproxy stop >/dev/null 2>&1 || true
  if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable haproxy >/dev/null 2>&1 || true
  fi
}

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

# start_test_postgres DIR PORT: a throwaway PostgreSQL cluster from Debian's
# packages in DIR (as the postgres user), listening on PORT of every address
# (the fleet tests reach it from network namespaces over 10.88.0.0/16; the
# cluster trusts loopback and asks that range for the password), with
# database and role "turnpike" (password "turnpike", may create databases:
# each fleet test makes its own). Sets TURNPIKE_TEST_PG.
# Debian's own cluster service is stopped so nothing else holds the port.
start_test_postgres() {
  local dir=$1 port=$2 bin
  apt_install postgresql
  $SUDO service postgresql stop >/dev/null 2>&1 || true
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  stop_test_postgres "$dir"
  $SUDO rm -rf "$dir"
  $SUDO install -d -o postgres -g postgres "$dir"
  as_postgres "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
  echo "host all turnpike 10.88.0.0/16 scram-sha-256" | as_postgres tee -a "$dir/data/pg_hba.conf" >/dev/null
  as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-p $port -k $dir -c listen_addresses=* -c fsync=off -c max_connections=300" start >/dev/null
  as_postgres "$bin/psql" -h "$dir" -p "$port" -U postgres -q \
    -c "CREATE ROLE turnpike LOGIN CREATEDB PASSWORD 'turnpike'" \
    -c "CREATE DATABASE turnpike OWNER turnpike" >/dev/null
  export TURNPIKE_TEST_PG="postgres://turnpike:turnpike@127.0.0.1:$port/turnpike"
}

# resume_test_postgres DIR PORT: starts again a cluster that
# stop_test_postgres stopped, data kept (store outage tests).
resume_test_postgres() {
  local dir=$1 port=$2 bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
    -o "-p $port -k $dir -c listen_addresses=* -c fsync=off -c max_connections=300" start >/dev/null
}

# stop_test_postgres DIR: stops the cluster start_test_postgres made.
stop_test_postgres() {
  local dir=$1 bin
  [ -d "$dir/data" ] || return 0
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  as_postgres "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# setup_podman: Debian's podman and runc, and a containers.conf for hosts
# without systemd (cgroupfs, not systemd's cgroup manager) whose hard
# open-file limit is below podman's default per-container ulimits.
# Exports CONTAINERS_CONF (target/podman/containers.conf), so the host's
# /etc/containers is left alone.
setup_podman() {
  apt_install podman runc
  mkdir -p target/podman
  cat >target/podman/containers.conf <<'CONF'
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF
  CONTAINERS_CONF=$(pwd)/target/podman/containers.conf
  export CONTAINERS_CONF
}

as_user() {
  local user=$1
  shift
  if [ "$(id -u)" -eq 0 ]; then runuser -u "$user" -- "$@"; else sudo -u "$user" "$@"; fi
}

# start_test_mariadb DIR PORT: a throwaway MariaDB server from Debian's
# packages in DIR (as the mysql user), on 127.0.0.1:PORT and the socket
# DIR/sock, with user "turnpike" (password "turnpike", may create
# databases: each import test makes its own) and database "turnpike". The
# `import coturn-db` tests read coturn's MySQL schema from it. Sets
# TURNPIKE_TEST_MYSQL. Debian's own service is stopped so nothing else
# holds the data directory's port.
start_test_mariadb() {
  local dir=$1 port=$2 i
  apt_install mariadb-server
  $SUDO service mariadb stop >/dev/null 2>&1 || true
  stop_test_mariadb "$dir"
  $SUDO rm -rf "$dir"
  $SUDO install -d -o mysql -g mysql "$dir"
  as_user mysql mariadb-install-db --no-defaults --datadir="$dir/data" \
    --auth-root-authentication-method=socket --skip-test-db >/dev/null
  # Durability is not wanted here: no binary log, no flush per commit.
  as_user mysql /usr/sbin/mariadbd --no-defaults --datadir="$dir/data" \
    --socket="$dir/sock" --pid-file="$dir/pid" --port="$port" \
    --bind-address=127.0.0.1 --skip-name-resolve --log-error="$dir/log" \
    --innodb-buffer-pool-size=32M --innodb-flush-log-at-trx-commit=0 \
    --skip-log-bin >/dev/null 2>&1 &
  for i in $(seq 1 100); do
    $SUDO mariadb --no-defaults -S "$dir/sock" -u root -e "SELECT 1" >/dev/null 2>&1 && break
    sleep 0.2
  done
  # root logs in over the socket as the system's root (unix_socket auth).
  $SUDO mariadb --no-defaults -S "$dir/sock" -u root -e \
    "CREATE USER IF NOT EXISTS 'turnpike'@'%' IDENTIFIED BY 'turnpike';
     GRANT ALL PRIVILEGES ON *.* TO 'turnpike'@'%';
     CREATE DATABASE IF NOT EXISTS turnpike;"
  export TURNPIKE_TEST_MYSQL="mysql://turnpike:turnpike@127.0.0.1:$port/turnpike"
}

# stop_test_mariadb DIR: stops the server start_test_mariadb made.
stop_test_mariadb() {
  local dir=$1 pid i
  [ -f "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  $SUDO kill "$pid" 2>/dev/null || return 0
  for i in $(seq 1 100); do
    $SUDO kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
}

# start_test_redis DIR PORT: a throwaway Redis server from Debian's
# packages, on 127.0.0.1:PORT, keeping nothing on disk. The `import
# coturn-db` tests read coturn's Redis schema from it, each test in its own
# database number. Sets TURNPIKE_TEST_REDIS.
start_test_redis() {
  local dir=$1 port=$2 i
  apt_install redis-server
  $SUDO service redis-server stop >/dev/null 2>&1 || true
  stop_test_redis "$dir"
  $SUDO rm -rf "$dir"
  $SUDO install -d -o redis -g redis "$dir"
  as_user redis redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" \
    --save '' --appendonly no --daemonize yes --pidfile "$dir/pid" \
    --logfile "$dir/log" --databases 16
  for i in $(seq 1 50); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  export TURNPIKE_TEST_REDIS="redis://127.0.0.1:$port"
}

# stop_test_redis DIR: stops the server start_test_redis made.
stop_test_redis() {
  local dir=$1 pid
  [ -f "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  $SUDO kill "$pid" 2>/dev/null || true
}
