#!/usr/bin/env bash
# The test suite, run by `make test` (and so by CI's .ci/run): starts a throw-away PostgreSQL server (Debian's
# package, installed if missing and we may) on a free local port so the shared-registry tests run too
# (PROVENANCE_TEST_PG; without a server they are skipped with a reason), then runs pytest on one worker process
# per core (pytest-xdist; every test makes its own files, schema and chain, so they share nothing). Extra
# arguments go to pytest: `bash scripts/test.sh tests/test_ledger.py -n 0` runs one file in this process.
set -euo pipefail
cd "$(dirname "$0")/.."

start_postgres() {
  if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "no PostgreSQL and not root: the PostgreSQL tests will be skipped" >&2; return 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  PGDIR=$(mktemp -d /tmp/provenance-test-pg.XXXXXX)
  PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  [ "$(id -u)" = 0 ] && chown postgres "$PGDIR"
  as_pg "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --auth=trust --locale=C -E UTF8 >"$PGDIR/initdb.log"
  as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -o \
    "-p $PORT -k $PGDIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
  trap 'as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast stop >/dev/null; rm -rf "$PGDIR"' EXIT
  export PROVENANCE_TEST_PG="postgresql://postgres@127.0.0.1:$PORT/postgres"
}

if [ -z "${PROVENANCE_TEST_PG:-}" ]; then
  start_postgres || true
fi
.venv/bin/python -m pytest -q -n auto --dist worksteal "$@"
