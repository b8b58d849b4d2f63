#!/usr/bin/env bash
# What a slow inspector client costs a pipeline: generator -> noop (1 KB payloads,
# bench/pipelines/noop-1k.yaml, no end) with the API on, RUNS rounds of three runs in
# alternation: A (nobody inspects), A' (the same again: the noise floor) and B (a
# `funnel inspect` on the source whose output is never read, so its WebSocket stalls
# and the session drops what does not fit). Each run measures records written per
# second over WINDOW seconds (from /metrics), after a 2 s warm-up and, for B, once the
# session has started dropping; prints each run, the medians, and the records B's
# session dropped in its window (funnel_inspector_dropped_records_total).
#
#   bench/inspector.sh                  3 rounds, 10 s windows
#   RUNS=5 WINDOW=20 bench/inspector.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${RUNS:-3}"
WINDOW="${WINDOW:-10}"
PIPELINE=bench/pipelines/noop-1k.yaml
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/funnel/target}"
if [ -z "${FUNNEL_BIN:-}" ]; then
    cargo build --release --quiet --bin funnel
fi
BIN="${FUNNEL_BIN:-$CARGO_TARGET_DIR/release/funnel}"
PORT="${PORT:-18765}"

# The sum of the samples of metric $1 in /metrics.
metric() {
    curl -s "http://127.0.0.1:$PORT/metrics" |
        awk -v m="$1" '$1 ~ "^" m "({|$)" {s += $2} END {printf "%.0f\n", s}'
}

# Runs the pipeline once; with "slow", a stalled inspector watches its source.
# Prints "records/s dropped".
run_once() { # plain|slow
    local out pid t0 t1 w0 w1 d0 d1
    out="$(mktemp -d)"
    BENCH_DIR="$PWD/bench" BENCH_RECORDS=-1 BENCH_OUT="$out" BENCH_RATE=0 \
        BENCH_LATENCY=false "$BIN" run --pipelines.path "$PIPELINE" --db.type memory \
        --api.http.address "127.0.0.1:$PORT" 2>"$out/log.txt" &
    pid=$!
    until curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null; do sleep 0.05; done
    if [ "$1" = slow ]; then
        # The pipe into `sleep` is never read: once its 64 KiB fill, the client stops
        # reading the socket, then the server stops sending, and the session drops.
        ("$BIN" inspect noop-1k:gen --api.http.address "127.0.0.1:$PORT" |
            { echo "$BASHPID" >"$out/reader.pid"; exec sleep 3600; }) &
        until [ "$(metric funnel_inspector_dropped_records_total)" -gt 0 ]; do sleep 0.1; done
    fi
    sleep 2
    t0="$(date +%s.%N)"
    w0="$(metric funnel_pipeline_records_written_total)"
    d0="$(metric funnel_inspector_dropped_records_total)"
    sleep "$WINDOW"
    t1="$(date +%s.%N)"
    w1="$(metric funnel_pipeline_records_written_total)"
    d1="$(metric funnel_inspector_dropped_records_total)"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    if [ -f "$out/reader.pid" ]; then
        kill "$(cat "$out/reader.pid")" 2>/dev/null || true
    fi
    python3 -c "print(f'{($w1 - $w0) / ($t1 - $t0):.0f} {$d1 - $d0}')"
    rm -rf "$out"
}

a=() b=() c=()

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
