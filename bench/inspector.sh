#!/usr/bin/env bash
# What a slow inspector client costs a pipeline: generator -> noop (1 KB payloads,
# bench/pipelines/noop-1k.yaml, no end) with the API on, RUNS rounds of three runs in
# alternation: A (nobody inspects), A' (the same again: the noise floor) and B (a
# `funnel inspect` on the source whose output is never read, so its WebSocket stalls
# and the session drops what does not fit). Each run measures records written per
# second over WINDOW seconds (from /metrics), after a 2 s warm-up and, for B, once the
# session has started dropping; prints each run, the medians, and the records B's
# session dropped in its window (funnel_inspector_dropped_records_total), with the CPU
# the funnel process used in the window (percent of one core). RATE holds the
# generator at that many records per second (0, the default: as fast as it goes); at
# a fixed rate, the cost of the inspector shows as CPU rather than as records/s.
#
#   bench/inspector.sh                  3 rounds, 10 s windows, unlimited
#   RUNS=5 WINDOW=20 RATE=500000 bench/inspector.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${RUNS:-3}"
WINDOW="${WINDOW:-10}"
RATE="${RATE:-0}"
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

# CPU time (user + system, in clock ticks) of process $1.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

# Runs the pipeline once; with "slow", a stalled inspector watches its source.
# Prints "records/s dropped cpu%".
run_once() { # plain|slow
    local out pid t0 t1 w0 w1 d0 d1 c0 c1
    out="$(mktemp -d)"
    BENCH_DIR="$PWD/bench" BENCH_RECORDS=-1 BENCH_OUT="$out" BENCH_RATE="$RATE" \
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
    c0="$(cpu_ticks "$pid")"
    sleep "$WINDOW"
    t1="$(date +%s.%N)"
    w1="$(metric funnel_pipeline_records_written_total)"
    d1="$(metric funnel_inspector_dropped_records_total)"
    c1="$(cpu_ticks "$pid")"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    if [ -f "$out/reader.pid" ]; then
        kill "$(cat "$out/reader.pid")" 2>/dev/null || true
    fi
    python3 -c "print(f'{($w1 - $w0) / ($t1 - $t0):.0f} {$d1 - $d0} {($c1 - $c0) / $(getconf CLK_TCK) / ($t1 - $t0) * 100:.0f}')"
    rm -rf "$out"
}

a=() b=() c=()
echo "$(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), rate ${RATE} (0: unlimited), $BIN"

for i in $(seq 1 "$RUNS"); do
    a+=("$(run_once plain)")
    b+=("$(run_once plain)")
    c+=("$(run_once slow)")
    read -r ra _ ca <<<"${a[-1]}"
    read -r rb _ cb <<<"${b[-1]}"
    read -r rc dc cc <<<"${c[-1]}"
    echo "round $i: records/s (CPU %) A $ra ($ca)  A' $rb ($cb)  B (slow inspector) $rc ($cc), B dropped $dc (load average $(cut -d' ' -f1-3 /proc/loadavg))"
done
rates() { for x in "$@"; do echo -n "${x%% *} "; done; }
cpus() { for x in "$@"; do echo -n "${x##* } "; done; }
python3 - "$(rates "${a[@]}")" "$(rates "${b[@]}")" "$(rates "${c[@]}")" \
    "$(cpus "${a[@]}")" "$(cpus "${b[@]}")" "$(cpus "${c[@]}")" <<'PY'
import statistics, sys
a, b, c, ca, cb, cc = ([float(x) for x in arg.split()] for arg in sys.argv[1:])
ma, mb, mc = (statistics.median(x) for x in (a, b, c))
pa, pb, pc = (statistics.median(x) for x in (ca, cb, cc))
print(f"median records/s: A {ma:,.0f}  A' {mb:,.0f}  B {mc:,.0f}")
print(f"median CPU %: A {pa:.0f}  A' {pb:.0f}  B {pc:.0f}")
print(f"A/A' difference {abs(ma - mb) / ma * 100:.1f}%; B vs A {(mc - ma) / ma * 100:+.1f}%")
PY
