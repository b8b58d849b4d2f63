#!/usr/bin/env bash
# Prepares the services and tools the tests use. Idempotent; run as root in CI.
#
# PostgreSQL (127.0.0.1:5432, user postgres): the postgres connector's logical
# replication needs `wal_level = logical`. When the server runs with another level, this
# sets it with ALTER SYSTEM and restarts the cluster, then waits until it accepts
# connections again. A server that is down is started.
set -euo pipefail

# cargo-fuzz, for scripts/fuzz.sh (the libFuzzer targets in fuzz/); installed once into
# ~/.cargo/bin and kept there.
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
    echo "setup-services: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

PG_HOST=127.0.0.1
PG_USER=postgres

pg_ready() {
    psql -h "$PG_HOST" -U "$PG_USER" -d postgres -tAc 'select 1' >/dev/null 2>&1
}

pg_wait() {
    for _ in $(seq 1 60); do
        if pg_ready; then
            return 0
        fi
        sleep 1
    done
    echo "setup-services: PostgreSQL does not accept connections on $PG_HOST" >&2
    return 1
}

pg_cluster() {
    local version
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    pg_ctlcluster --skip-systemctl-redirect "$version" main "$1"
}

if command -v psql >/dev/null 2>&1; then
    if ! pg_ready; then
        echo "setup-services: PostgreSQL is down, starting it"
        pg_cluster start || true
        pg_wait
    fi
    level="$(psql -h "$PG_HOST" -U "$PG_USER" -d postgres -tAc 'show wal_level')"
    if [ "$level" != "logical" ]; then
        echo "setup-services: wal_level is $level; setting it to logical and restarting PostgreSQL"
        psql -h "$PG_HOST" -U "$PG_USER" -d postgres -tAc 'ALTER SYSTEM SET wal_level = logical' >/dev/null
        pg_cluster restart
        pg_wait
    fi
    if ! psql -h "$PG_HOST" -U "$PG_USER" -d postgres -tAc "select 1 from pg_database where datname = 'test'" | grep -q 1; then
        psql -h "$PG_HOST" -U "$PG_USER" -d postgres -tAc 'CREATE DATABASE test' >/dev/null
    fi
    echo "setup-services: PostgreSQL ready (wal_level=$(psql -h "$PG_HOST" -U "$PG_USER" -d postgres -tAc 'show wal_level'))"
fi
