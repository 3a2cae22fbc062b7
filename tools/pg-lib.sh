# Shared by tools/pg-e2e and tools/pg-sink-check: a throwaway PostgreSQL
# cluster on a random port of 127.0.0.1, removed on exit. Source it; it
# defines BACKWATER, PG_SINK, work, url, sql(), background (pids to kill on
# exit) and skip() (exit 77).
# Env: BACKWATER and PG_SINK (binaries; built if unset).

skip() { echo "SKIPPED: $*"; exit 77; }
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] || skip "no PostgreSQL server binaries (apt-get install postgresql)"
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || skip "running as root but there is no postgres user to run the server"
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

if [ -z "${BACKWATER:-}" ] || [ -z "${PG_SINK:-}" ]; then
  cargo build --release --quiet --bin backwater --example pg_sink
  BACKWATER=target/release/backwater
  PG_SINK=target/release/examples/pg_sink
fi
BACKWATER=$(realpath "$BACKWATER")
PG_SINK=$(realpath "$PG_SINK")

work=$(mktemp -d /tmp/backwater-pg.XXXXXX)
chmod 755 "$work"
pgdata=$work/pgdata
mkdir "$pgdata"
[ "$(id -u)" = 0 ] && chown postgres: "$pgdata"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
background=()
cleanup() {
  for pid in "${background[@]}"; do kill "$pid" 2>/dev/null || true; done
  as_pg "$pg_bin/pg_ctl" -D "$pgdata" stop -m immediate >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

as_pg "$pg_bin/initdb" -D "$pgdata" -U postgres -A trust -E UTF8 >/dev/null
as_pg "$pg_bin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w \
  -o "-p $port -k $pgdata -c listen_addresses=127.0.0.1" start >/dev/null
url="host=127.0.0.1 port=$port user=postgres dbname=postgres"
sql() { "$pg_bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atq -c "$1"; }
pg_version() { "$pg_bin/postgres" --version | awk '{print $3}'; }

# The sink's tables, made by the sink itself on empty input.
create_sink_tables() { "$PG_SINK" --url "$url" </dev/null; }

fail=0
check() { if eval "$1"; then echo "ok        $2"; else echo "FAIL      $2"; fail=1; fi; }
verdict() { if [ "$fail" = 0 ]; then echo "PASS"; else echo "FAIL"; exit 1; fi; }
