#!/usr/bin/env bash
# A private PostgreSQL server for tests and benchmarks: its own data directory and unix socket under a temp
# directory (TCP only when asked, on a free loopback port), started with Debian's binaries, stopped and
# removed by `stop`. Nothing touches a system cluster. Installed by scripts/install-system-deps.sh.
#
#   eval "$(bash scripts/pg-test-server.sh start)"   # sets MECHREWARD_PG_URL, MECHREWARD_PG_DIR
#   bash scripts/pg-test-server.sh stop "$MECHREWARD_PG_DIR"
#
# start prints shell assignments: MECHREWARD_PG_DIR (pass it to stop) and MECHREWARD_PG_URL, a connection
# string for the `postgres` database as the superuser `mechreward` (trust auth: the socket's directory is
# private). PG_TCP=1 also listens on 127.0.0.1:<free port> and gives a host:port URL. PG_FSYNC=on keeps fsync
# (benchmarks); tests run with fsync off: a test kills the sidecar, never PostgreSQL.
#
# initdb and postgres refuse to run as root: as root the server runs as the `postgres` system user (made by
# Debian's package) and the temp directory is handed to it; as anyone else it runs as that user.
set -euo pipefail

PG_BIN="${PG_BIN:-}"
if [[ -z "$PG_BIN" ]]; then
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
fi
if [[ -z "$PG_BIN" || ! -x "$PG_BIN/initdb" ]]; then
  echo "pg-test-server: no PostgreSQL binaries under /usr/lib/postgresql/*/bin; run: bash scripts/install-system-deps.sh" >&2
  exit 1
fi

as_owner() {
  if [[ "$(id -u)" -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cmd="${1:-}"
case "$cmd" in
  start)
    dir="$(mktemp -d "${TMPDIR:-/tmp}/mechreward-pg-XXXXXX")"
    mkdir -p "$dir/sock"
    [[ "$(id -u)" -eq 0 ]] && chown -R postgres: "$dir"
    chmod 700 "$dir"
    as_owner "$PG_BIN/initdb" -D "$dir/data" -U mechreward -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 || {
      cat "$dir/initdb.log" >&2
      exit 1
    }
    listen="''"
    port=5432
    if [[ "${PG_TCP:-0}" == 1 ]]; then
      port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
      listen=127.0.0.1
    fi
    fsync="${PG_FSYNC:-off}"
    as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-k $dir/sock -p $port -c listen_addresses=$listen -c fsync=$fsync -c max_connections=200 -c shared_buffers=32MB" \
      start >/dev/null || {
      cat "$dir/server.log" >&2
      exit 1
    }
    if [[ "${PG_TCP:-0}" == 1 ]]; then
      url="postgres://mechreward@127.0.0.1:$port/postgres"
    else
      url="postgres://mechreward@localhost:$port/postgres?host=$dir/sock"
    fi
    echo "MECHREWARD_PG_DIR=$dir"
    echo "MECHREWARD_PG_URL='$url'"
    ;;
  stop)
    dir="${2:?usage: pg-test-server.sh stop DIR}"
    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
      echo "pg-test-server: $dir is not a directory this script started" >&2
      exit 1
    fi
    as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: pg-test-server.sh start | stop DIR" >&2
    exit 2
    ;;
esac
