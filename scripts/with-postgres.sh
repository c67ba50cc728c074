#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL on a free loopback port, its URL
# in PARKING_TEST_DATABASE_URL; stops the server and removes its data after.
#   bash scripts/with-postgres.sh cargo run -p parking-tests --bin bench-core -- --backend postgres
set -euo pipefail

pg_bin=$(dirname "$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
pg_dir=$(mktemp -d /tmp/parking-pg.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg=()
if [[ $(id -u) -eq 0 ]]; then
    # PostgreSQL refuses to run as root.
    chown postgres "$pg_dir"
    as_pg=(runuser -u postgres --)
fi
stop_pg() {
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
}
trap stop_pg EXIT
# Tests need no durability; benchmarks measure with it (PARKING_PG_FSYNC=on).
fsync="${PARKING_PG_FSYNC:-off}"
export PARKING_PG_FSYNC="$fsync"
"${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U parking -A trust --no-sync >/dev/null
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w \
    -o "-p $port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=$fsync -c synchronous_commit=$fsync -c max_connections=300" \
    start >/dev/null
echo "with-postgres: PostgreSQL on 127.0.0.1:$port (fsync $fsync)" >&2
export PARKING_TEST_DATABASE_URL="postgres://parking@127.0.0.1:$port/postgres"
"$@"
