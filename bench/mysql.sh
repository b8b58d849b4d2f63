#!/usr/bin/env bash
# MySQL / MariaDB connector benchmark: the release `funnel` binary reading from the
# server on 127.0.0.1:3306 (root, database test, binlog in ROW format; see
# scripts/setup-services.sh).
#
#   snapshot: a table of ROWS rows (bigint key, varchar, decimal, datetime(6), int)
#             -> builtin:noop;
#   cdc:      a backlog of ROWS changes (inserts in 10 transactions) made while the
#             pipeline is stopped, its position in the binlog -> builtin:noop;
#   pg:       the snapshot table -> builtin:postgres (upserts into a PostgreSQL table
#             on 127.0.0.1:5432), end to end.
#
# The time is from starting funnel to the moment the pipeline's acked-records counter
# (Prometheus, funnel_pipeline_records_acked_total) reaches ROWS: it includes start-up
# and connecting. It also prints Funnel's CPU time (user + system) over the same span,
# the server's (mariadbd) CPU time, and the load average when it ends.
#
#   bench/mysql.sh                      all three, 1,000,000 rows
#   ROWS=200000 bench/mysql.sh
#   ONLY=snapshot bench/mysql.sh        (or ONLY=cdc, ONLY=pg) one workload
#   BIN=/path/to/funnel bench/mysql.sh  another binary (no build)
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS="${ROWS:-1000000}"
PORT="${PORT:-18091}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/funnel/target}"
ONLY="${ONLY:-}"
if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet -p funnel-cli --no-default-features --features mysql,postgres
    BIN="$CARGO_TARGET_DIR/release/funnel"
fi
MYSQL=(mysql -h 127.0.0.1 -u root test -N)
PSQL=(psql -h 127.0.0.1 -U postgres -d test -X -q -tA -v ON_ERROR_STOP=1)
DSN="root@tcp(127.0.0.1:3306)/test"
WORK="$(mktemp -d)"
cleanup() {
    [ -n "${FUNNEL_PID:-}" ] && kill "$FUNNEL_PID" 2>/dev/null || true
    "${MYSQL[@]}" -e "DROP TABLE IF EXISTS bench_my_snap, bench_my_cdc" || true
    "${PSQL[@]}" -c "DROP TABLE IF EXISTS bench_my_pg" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

pipeline() { # name table destination-yaml
    mkdir -p "$WORK/$1/pipelines"
    cat >"$WORK/$1/pipelines/p.yaml" <<YAML
version: "2.2"
pipelines:
  - id: $1
    status: running
    connectors:
      - id: src
        type: source
        plugin: builtin:mysql
        settings:
          dsn: "$DSN"
          tables: $2
$3
YAML
}

NOOP='      - id: out
        type: destination
        plugin: builtin:noop'

acked() {
    { curl -s "http://127.0.0.1:$PORT/metrics" 2>/dev/null || true; } |
        awk '/^funnel_pipeline_records_acked_total/ { s += $NF } END { printf "%d", s }'
}

server_cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$(pgrep -x mariadbd | head -1)/stat"
}

start() { # name
    (cd "$WORK/$1" && exec "$BIN" run --api.http.address "127.0.0.1:$PORT" 2>>"$WORK/$1.log") &
    FUNNEL_PID=$!
}

wait_acked() { # name count
    while :; do
        n="$(acked)"
        if [ "${n:-0}" -ge "$2" ]; then break; fi
        if ! kill -0 "$FUNNEL_PID" 2>/dev/null; then
            echo "funnel exited early:" >&2; cat "$WORK/$1.log" >&2; exit 1
        fi
        sleep 0.05
    done
}

stop() {
    kill "$FUNNEL_PID"
    wait "$FUNNEL_PID" || true
    FUNNEL_PID=""
}

run() { # name
    local start end cpu s0 s1
    s0="$(server_cpu)"
    start="$(date +%s.%N)"
    start "$1"
    wait_acked "$1" "$ROWS"
    end="$(date +%s.%N)"
    s1="$(server_cpu)"
    cpu="$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$FUNNEL_PID/stat")"
    stop
    python3 -c "import sys; s=$end-$start; print(f'$1: {$ROWS:,} records in {s:.2f} s = {$ROWS/s:,.0f} records/s; funnel CPU {$cpu} s = {$ROWS/$cpu:,.0f} records per CPU-second; mariadbd CPU {$s1-$s0:.2f} s')"
    echo "  load average: $(cut -d' ' -f1-3 /proc/loadavg)"
}

echo "preparing $ROWS rows..."
"${MYSQL[@]}" -e "DROP TABLE IF EXISTS bench_my_snap, bench_my_cdc;
  CREATE TABLE bench_my_snap (id bigint PRIMARY KEY, name varchar(64), amount decimal(12,2), at datetime(6), n int);
  INSERT INTO bench_my_snap SELECT seq, CONCAT('name ', seq), seq / 100, NOW(6), seq % 1000 FROM seq_1_to_$ROWS;
  CREATE TABLE bench_my_cdc LIKE bench_my_snap;"

if [ -z "$ONLY" ] || [ "$ONLY" = snapshot ]; then
    pipeline bench_snap bench_my_snap "$NOOP"
    run bench_snap
fi

if [ -z "$ONLY" ] || [ "$ONLY" = cdc ]; then
    # The pipeline reads one row and one change, so its position is in the binlog, and
    # stops; the backlog is made while it is stopped.
    pipeline bench_cdc bench_my_cdc "$NOOP"
    "${MYSQL[@]}" -e "INSERT INTO bench_my_cdc VALUES (0, 'seed', 0, NOW(6), 0)"
    start bench_cdc
    wait_acked bench_cdc 1
    "${MYSQL[@]}" -e "UPDATE bench_my_cdc SET n = 1 WHERE id = 0"
    wait_acked bench_cdc 2
    stop
    for i in $(seq 0 9); do
        lo=$((i * ROWS / 10 + 1)); hi=$(((i + 1) * ROWS / 10))
        "${MYSQL[@]}" -e "INSERT INTO bench_my_cdc SELECT seq, CONCAT('name ', seq), seq / 100, NOW(6), seq % 1000 FROM seq_${lo}_to_${hi}"
    done
    run bench_cdc
fi

if [ -z "$ONLY" ] || [ "$ONLY" = pg ]; then
    "${PSQL[@]}" -c "DROP TABLE IF EXISTS bench_my_pg;
      CREATE TABLE bench_my_pg (id bigint PRIMARY KEY, name text, amount numeric(12,2), at timestamptz, n int)"
    pipeline bench_pg bench_my_snap '      - id: out
        type: destination
        plugin: builtin:postgres
        settings:
          url: postgres://postgres@127.0.0.1:5432/test
          table: bench_my_pg'
    run bench_pg
    echo "  rows in PostgreSQL: $("${PSQL[@]}" -c 'SELECT count(*) FROM bench_my_pg')"
fi
