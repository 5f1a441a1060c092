# Shared PostgreSQL helpers for run.sh and test.sh (sourced, not executed).
# A private cluster on a loopback port: no system service, no sudo prompts, nothing outside its folder.

pg_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] && [ -x "$dir/pg_ctl" ] && echo "$dir"
}

# Installs Debian's PostgreSQL when no server binaries are present.
ensure_postgres_installed() {
  if [ -n "$(pg_bindir)" ]; then return 0; fi
  echo "PostgreSQL is not installed: installing Debian's postgresql package..." >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
  [ -n "$(pg_bindir)" ] || { echo "PostgreSQL installation failed" >&2; return 1; }
}

# Runs a PostgreSQL server binary as the postgres user when we are root (the server refuses to run as root).
as_pg_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
  local port
  for port in $(seq "${1:-55433}" 55999); do
    if ! port_in_use "$port"; then echo "$port"; return 0; fi
  done
  return 1
}

# start_cluster DATA_DIR PORT: initialises the folder on first use, then starts the server if it is not running.
start_cluster() {
  local data="$1" port="$2" bin
  bin=$(pg_bindir)
  mkdir -p "$data"
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$data"
  chmod 700 "$data"
  if ! as_pg_owner test -w "$data"; then
    echo "The postgres user cannot write $data (a parent folder is private?); set TRANSFERAPI_PG_DATA to another folder." >&2
    return 1
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    as_pg_owner "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if ! as_pg_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg_owner "$bin/pg_ctl" -D "$data" -w -l "$data/server.log" \
      -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c fsync=${PG_FSYNC:-on} -c max_connections=200" start >/dev/null
  fi
}

stop_cluster() {
  local data="$1" bin
  bin=$(pg_bindir)
  [ -f "$data/PG_VERSION" ] && as_pg_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
}

# with_throwaway_cluster CMD...: runs CMD with TRANSFERAPI_TEST_POSTGRES pointing at a fresh cluster in /tmp,
# removed afterwards whatever CMD does (fsync off: nothing in it outlives the run).
with_throwaway_cluster() {
  ensure_postgres_installed
  local data port status=0
  data=$(mktemp -d /tmp/transferapi-pg.XXXXXX)
  chmod 755 "$data"
  port=$(free_port 55433)
  trap "stop_cluster '$data/db'; rm -rf '$data'" EXIT
  PG_FSYNC=off start_cluster "$data/db" "$port"
  echo "PostgreSQL throw-away cluster on 127.0.0.1:$port" >&2
  TRANSFERAPI_TEST_POSTGRES="Host=127.0.0.1;Port=$port;Username=postgres;Include Error Detail=true" "$@" || status=$?
  return "$status"
}
