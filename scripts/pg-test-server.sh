#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 for the store tests and print its URL.
# Prints nothing (and the PostgreSQL tests skip, saying so) when no server can be had here.
# Installs Debian's postgresql package first when it is missing and we are root.
set -u
PORT=${POSTTRAIN_PG_PORT:-54329}
DIR=${POSTTRAIN_PG_DIR:-/tmp/posttrain-pg}
URL="postgresql+psycopg://postgres@127.0.0.1:${PORT}/posttrain_test"

pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
BIN=$(pgbin)
if [ -z "$BIN" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >/dev/null 2>&1
  BIN=$(pgbin)
fi
[ -n "$BIN" ] || { echo "pg-test-server: no PostgreSQL binaries" >&2; exit 0; }

# initdb refuses to run as root: run the server as the postgres user when we are root.
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }

if ! as_pg "'$BIN/pg_ctl' -D '$DIR/data' status" >/dev/null 2>&1; then
  rm -rf "$DIR" && mkdir -p "$DIR"
  [ "$(id -u)" = 0 ] && chown postgres "$DIR"
  as_pg "'$BIN/initdb' -D '$DIR/data' -A trust -U postgres" >"$DIR.initdb.log" 2>&1 \
    || { echo "pg-test-server: initdb failed (see $DIR.initdb.log)" >&2; exit 0; }
  as_pg "'$BIN/pg_ctl' -D '$DIR/data' -l '$DIR/server.log' -w -o \"-p $PORT -k '$DIR' -c listen_addresses=127.0.0.1\" start" \
    >/dev/null 2>&1 || { echo "pg-test-server: server did not start (see $DIR/server.log)" >&2; exit 0; }
fi
as_pg "'$BIN/psql' -h 127.0.0.1 -p $PORT -U postgres -tAc \"SELECT 1 FROM pg_database WHERE datname='posttrain_test'\"" \
  | grep -q 1 || as_pg "'$BIN/createdb' -h 127.0.0.1 -p $PORT -U postgres posttrain_test" >/dev/null 2>&1
echo "$URL"
