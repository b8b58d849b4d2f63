#!/usr/bin/env bash
# PostgreSQL connector benchmark: the release `funnel` binary reading from the server on
# 127.0.0.1:5432 (user postgres, database test, wal_level=logical; see
# scripts/setup-services.sh) into builtin:noop.
#
#   snapshot: a table of ROWS rows (bigint key, text, numeric, timestamptz, int),
#             snapshotMode initial;
#   cdc:      a backlog of ROWS changes (inserts, 10 transactions) waiting in a slot,
#             snapshotMode never.
#
# The time is from starting funnel to the moment the pipeline's acked-records counter
# (Prometheus, funnel_pipeline_records_acked_total) reaches ROWS: it includes start-up,
# connecting and, for the snapshot, creating the slot. It also prints Funnel's CPU time
# (user + system) over the same span, its peak RSS (VmHWM) at that moment, and the load
# average when it ends.
#
#   bench/postgres.sh              both, 1,000,000 rows
#   ROWS=200000 bench/postgres.sh
#   ONLY=snapshot bench/postgres.sh    (or ONLY=cdc) one workload
#   BIN=/path/to/funnel bench/postgres.sh   another binary (no build)
#   PERF=1 bench/postgres.sh           record each run with `perf record -g`
#                                      (perf-<name>.data in the current directory)
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS="${ROWS:-1000000}"
PORT="${PORT:-18089}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/funnel/target}"
ONLY="${ONLY:-}"
if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet -p funnel-cli
    BIN="$CARGO_TARGET_DIR/release/funnel"
fi
PERF_DIR="${PERF_DIR:-$PWD}"
PSQL=(psql -h 127.0.0.1 -U postgres -d test -X -q -tA -v ON_ERROR_STOP=1)
URL="postgres://postgres@127.0.0.1:5432/test"
WORK="$(mktemp -d)"
cleanup() {
    [ -n "${FUNNEL_PID:-}" ] && kill "$FUNNEL_PID" 2>/dev/null || true
    sleep 0.5
    "${PSQL[@]}" -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name IN ('bench_snap_slot', 'bench_cdc_slot') AND NOT active" >/dev/null || true
    "${PSQL[@]}" -c "DROP PUBLICATION IF EXISTS bench_snap_pub; DROP PUBLICATION IF EXISTS bench_cdc_pub; DROP TABLE IF EXISTS bench_snap, bench_cdc" >/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

pipeline() { # name table slot publication snapshotMode
    mkdir -p "$WORK/$1/pipelines"
    cat >"$WORK/$1/pipelines/p.yaml" <<YAML
version: "2.2"
pipelines:
  - id: $1
    status: running
    connectors:
      - id: src
        type: source
        plugin: builtin:postgres
        settings:
          url: $URL
          tables: $2
          logrepl.slotName: $3
          logrepl.publicationName: $4
          snapshotMode: $5
      - id: out
        type: destination
        plugin: builtin:noop
YAML
}

acked() {
    { curl -s "http://127.0.0.1:$PORT/metrics" 2>/dev/null || true; } |
        awk '/^funnel_pipeline_records_acked_total/ { s += $NF } END { printf "%d", s }'
}

run() { # name
    local wrap="env"
    if [ -n "${PERF:-}" ]; then wrap="perf record -g -q -o $PERF_DIR/perf-$1.data --"; fi
    (cd "$WORK/$1" && exec $wrap "$BIN" run --db.type memory --api.http.address "127.0.0.1:$PORT" 2>"$WORK/$1.log") &
    FUNNEL_PID=$!
    local start end n
    start="$(date +%s.%N)"
    while :; do
        n="$(acked)"
        if [ "${n:-0}" -ge "$ROWS" ]; then break; fi
        if ! kill -0 "$FUNNEL_PID" 2>/dev/null; then
            echo "funnel exited early:" >&2; cat "$WORK/$1.log" >&2; exit 1
        fi
        sleep 0.05
    done
    end="$(date +%s.%N)"
    # Funnel's CPU time (user + system) until then: less sensitive to load than the
    # wall time on a shared host.
    local pid="$FUNNEL_PID" cpu
    if [ -n "${PERF:-}" ]; then pid="$(pgrep -P "$FUNNEL_PID" | head -1)"; fi
    cpu="$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$pid/stat")"
    # Peak resident memory so far (VmHWM), in MB.
    local rss
    rss="$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$pid/status")"
    if [ -n "${PERF:-}" ]; then
        kill $(pgrep -P "$FUNNEL_PID") 2>/dev/null || true # funnel; perf then writes its data
    else
        kill "$FUNNEL_PID"
    fi
    wait "$FUNNEL_PID" || true
    FUNNEL_PID=""
    python3 -c "import sys; s=$end-$start; print(f'$1: {$ROWS:,} records in {s:.2f} s = {$ROWS/s:,.0f} records/s; funnel CPU {$cpu} s = {$ROWS/$cpu:,.0f} records per CPU-second; peak RSS $rss MB')"
    echo "  load average: $(cut -d' ' -f1-3 /proc/loadavg)"
}

echo "preparing $ROWS rows..."
"${PSQL[@]}" -c "DROP TABLE IF EXISTS bench_snap, bench_cdc;
  CREATE TABLE bench_snap (id bigint PRIMARY KEY, name text, amount numeric(12,2), at timestamptz, n int);
  INSERT INTO bench_snap SELECT g, 'name ' || g, g / 100.0, now(), g % 1000 FROM generate_series(1, $ROWS) g;
  CREATE TABLE bench_cdc (id bigint PRIMARY KEY, name text, amount numeric(12,2), at timestamptz, n int);"
"${PSQL[@]}" -c "VACUUM ANALYZE bench_snap"

if [ "$ONLY" != cdc ]; then
    pipeline bench_snap bench_snap bench_snap_slot bench_snap_pub initial
    run bench_snap
fi
[ "$ONLY" = snapshot ] && exit 0

# A backlog of ROWS changes waiting in a slot that exists before they are made.
"${PSQL[@]}" -c "CREATE PUBLICATION bench_cdc_pub FOR TABLE bench_cdc" >/dev/null
"${PSQL[@]}" -c "SELECT pg_create_logical_replication_slot('bench_cdc_slot', 'pgoutput')" >/dev/null
for i in $(seq 0 9); do
    lo=$((i * ROWS / 10 + 1)); hi=$(((i + 1) * ROWS / 10))
    "${PSQL[@]}" -c "INSERT INTO bench_cdc SELECT g, 'name ' || g, g / 100.0, now(), g % 1000 FROM generate_series($lo, $hi) g"
done
pipeline bench_cdc bench_cdc bench_cdc_slot bench_cdc_pub never
run bench_cdc
