#!/usr/bin/env bash
# What a slow inspector client costs a pipeline: generator -> noop (1 KB payloads,
# bench/pipelines/noop-1k.yaml) run to the end with the API on, RUNS rounds of three
# runs in alternation: A (nobody inspects), A' (the same again: the noise floor) and
# B (a `funnel inspect` on the source whose output is never read, so its WebSocket
# stalls at once and the session drops what does not fit). Prints each run's
# records/s (records counted at the sink / wall time of the run), the medians, and
# the records the slow session dropped (funnel_inspector_dropped_records_total).
#
#   bench/inspector.sh                  5,000,000 records, 3 rounds
#   RECORDS=2000000 RUNS=5 bench/inspector.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${RUNS:-3}"
RECORDS="${RECORDS:-5000000}"
PIPELINE=bench/pipelines/noop-1k.yaml
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/funnel/target}"
if [ -z "${FUNNEL_BIN:-}" ]; then
    cargo build --release --quiet --bin funnel
fi
BIN="${FUNNEL_BIN:-$CARGO_TARGET_DIR/release/funnel}"
PORT="${PORT:-18765}"

# Runs the pipeline once; with "slow", a stalled inspector watches its source.
# Prints "records/s dropped".
run_once() { # plain|slow
    local out pid start end acked dropped
    out="$(mktemp -d)"
    start="$(date +%s.%N)"
    BENCH_DIR="$PWD/bench" BENCH_RECORDS="$RECORDS" BENCH_OUT="$out" BENCH_RATE=0 \
        BENCH_LATENCY=false "$BIN" run --pipelines.path "$PIPELINE" --db.type memory \
        --api.http.address "127.0.0.1:$PORT" 2>"$out/log.txt" &
    pid=$!
    if [ "$1" = slow ]; then
        # The pipe into `sleep` is never read: once its 64 KiB fill, the client stops
        # reading the socket, then the server stops sending, and the session drops.
        for _ in $(seq 1 200); do
            if "$BIN" inspect noop-1k:gen --api.http.address "127.0.0.1:$PORT" --limit 1 \
                >/dev/null 2>&1; then
                break
            fi
            sleep 0.02
        done
        ("$BIN" inspect noop-1k:gen --api.http.address "127.0.0.1:$PORT" |
            { echo "$BASHPID" >"$out/reader.pid"; exec sleep 3600; }) &
    fi
    # Done when the noop sink has acknowledged every record.
    while :; do
        acked="$(curl -s "http://127.0.0.1:$PORT/metrics" |
            awk '/^funnel_pipeline_records_written_total/ {s += $2} END {print s + 0}')"
        [ "${acked%.*}" -ge "$RECORDS" ] && break
        sleep 0.05
    done
    end="$(date +%s.%N)"
    dropped="$(curl -s "http://127.0.0.1:$PORT/metrics" |
        awk '/^funnel_inspector_dropped_records_total/ {s += $2} END {print s + 0}')"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    if [ -f "$out/reader.pid" ]; then
        kill "$(cat "$out/reader.pid")" 2>/dev/null || true
    fi
    python3 -c "print(f'{$RECORDS / ($end - $start):.0f} {int(float($dropped))}')"
    rm -rf "$out"
}

a=() b=() c=()
run_once plain >/dev/null # warm-up
for i in $(seq 1 "$RUNS"); do
    a+=("$(run_once plain)")
    b+=("$(run_once plain)")
    c+=("$(run_once slow)")
    echo "round $i: A ${a[-1]%% *}  A' ${b[-1]%% *}  B (slow inspector) ${c[-1]%% *} records/s, B dropped ${c[-1]##* }"
done
python3 - "${a[@]%% *}" -- "${b[@]%% *}" -- "${c[@]%% *}" <<'PY'
import statistics, sys
args = " ".join(sys.argv[1:]).split(" -- ")
a, b, c = ([float(x) for x in part.split()] for part in args)
ma, mb, mc = (statistics.median(x) for x in (a, b, c))
print(f"median records/s: A {ma:,.0f}  A' {mb:,.0f}  B {mc:,.0f}")
print(f"A/A' difference {abs(ma - mb) / ma * 100:.1f}%; B vs A {(mc - ma) / ma * 100:+.1f}%")
PY
