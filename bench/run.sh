#!/usr/bin/env bash
# End-to-end benchmark: runs the release `funnel` binary on the benchmark pipelines
# (bench/pipelines/*.yaml) and prints one line per workload: records/s counted at the
# sink (lines in the output file, or the noop destinations' own counter logged at
# exit), MB/s for file output, peak RSS and CPU seconds (/usr/bin/time -v), and the
# read->written latency percentiles p50/p99/p99.9 in ms (the destinations' HDR
# histogram, `latency: true`, logged at exit). Medians over the runs.
#
# Modes (MODE=...):
#   max        (default) one warm-up run, then RUNS runs at full speed.
#   aa         A/A control: RUNS rounds of the same workload twice in alternation
#              (A, A'); prints both medians and their difference, the noise floor
#              that any A/B difference must exceed.
#   half-rate  latency at half load: RUNS runs at full speed give the max rate, then
#              RUNS runs with the generator's `rate` at half of it; prints the
#              achieved rate and the latency percentiles of the half-rate runs.
#
#   bench/run.sh                                    every workload, 1,000,000 records, 3 runs
#   RECORDS=200000 RUNS=5 bench/run.sh bench/pipelines/noop-1k.yaml
#   MODE=aa RUNS=5 bench/run.sh bench/pipelines/noop-structured.yaml
#   MODE=half-rate bench/run.sh bench/pipelines/noop-structured.yaml
#   LATENCY=false bench/run.sh        without the latency histogram
#   STORE=redb bench/run.sh bench/pipelines/file-structured.yaml    positions in redb
#   STORE=postgres bench/run.sh ...   positions in the local PostgreSQL (PG=... to change)
#
# STORE is where positions are committed: memory (default), redb (a file in the run's
# directory) or postgres (a table of its own per run, dropped afterwards).
#
# A workload whose pipeline does not validate (e.g. a processor this build does not
# have yet) is skipped with a note.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE="${MODE:-max}"
RUNS="${RUNS:-3}"
RECORDS="${RECORDS:-1000000}"
LATENCY="${LATENCY:-true}"
STORE="${STORE:-memory}"
PG="${PG:-postgres://postgres@127.0.0.1:5432/test}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/funnel/target}"
if [ -z "${FUNNEL_BIN:-}" ]; then
    cargo build --release --quiet --bin funnel
fi
BIN="${FUNNEL_BIN:-$CARGO_TARGET_DIR/release/funnel}"
PIPELINES=("$@")
if [ ${#PIPELINES[@]} -eq 0 ]; then
    PIPELINES=(bench/pipelines/*.yaml)
fi
case "$MODE" in
max | aa | half-rate) ;;
*)
    echo "MODE must be max, aa or half-rate (got $MODE)" >&2
    exit 2
    ;;
esac

# The environment every pipeline file reads.
bench_env() { # out rate
    echo BENCH_DIR="$PWD/bench" BENCH_RECORDS="$RECORDS" BENCH_OUT="$1" \
        BENCH_RATE="$2" BENCH_LATENCY="$LATENCY"
}

# The PostgreSQL store table of the run whose directory is `out`.
store_table() { # out
    echo "bench_store_$(basename "$1" | tr -c 'a-zA-Z0-9\n' _ | tr 'A-Z' 'a-z')"
}

# The store flags of a run whose directory is `out`.
store_args() { # out
    case "$STORE" in
    memory) echo --db.type memory ;;
    redb) echo --db.type redb --db.redb.path "$1/funnel.db" ;;
    postgres) echo --db.type postgres --db.postgres.connection-string "$PG" \
        --db.postgres.table "$(store_table "$1")" ;;
    *)
        echo "STORE must be memory, redb or postgres (got $STORE)" >&2
        exit 2
        ;;
    esac
}

# Drops the PostgreSQL store tables of the run whose directory is `out`.
drop_store() { # out
    [ "$STORE" = postgres ] || return 0
    local table
    table="$(store_table "$1")"
    psql "$PG" -q -c "DROP TABLE IF EXISTS $table, ${table}_leases, ${table}_instances" >/dev/null
}

# Runs a pipeline once at `rate` (0: unlimited); prints
# "records/s MB/s rss_mb cpu_s count p50_ms p99_ms p999_ms" (latencies "-" if absent).
run_once() { # pipeline rate
    local pipeline=$1 rate=$2 out count bytes acked sinks
    out="$(mktemp -d)"
    # shellcheck disable=SC2046
    env $(bench_env "$out" "$rate") /usr/bin/time -v -o "$out/time.txt" \
        "$BIN" run --pipelines.path "$pipeline" --pipelines.exit-on-done \
        $(store_args "$out") --api.http.address "" 2>"$out/log.txt" || {
        echo "$(basename "$pipeline" .yaml): funnel failed, log:" >&2
        cat "$out/log.txt" >&2
        rm -rf "$out"
        return 1
    }
    if [ -f "$out/out.jsonl" ]; then
        count="$(wc -l <"$out/out.jsonl")"
        bytes="$(stat -c %s "$out/out.jsonl")"
    else
        acked="$(grep -o 'noop destinations acknowledged records records=[0-9]*' "$out/log.txt" | grep -o '[0-9]*$' || echo 0)"
        # Several noop destinations each count every record: report source records.
        sinks="$(grep -c 'plugin: builtin:noop' "$pipeline")"
        count=$((acked / sinks))
        bytes=0
    fi
    drop_store "$out"
    python3 - "$out/time.txt" "$out/log.txt" "$count" "$bytes" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
log = open(sys.argv[2]).read()
count, size = int(sys.argv[3]), int(sys.argv[4])
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
secs = 0.0
for part in wall.split(":"):
    secs = secs * 60 + float(part)
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024
cpu = float(re.search(r"User time \(seconds\): (\S+)", text).group(1)) + float(re.search(r"System time \(seconds\): (\S+)", text).group(1))
lat = ["-", "-", "-"]
line = [l for l in log.splitlines() if "read to written latency" in l]
if line:
    for i, key in enumerate(["p50_us", "p99_us", "p999_us"]):
        m = re.search(key + r"=(\d+)", line[-1])
        if m:
            lat[i] = f"{int(m.group(1)) / 1000:.3f}"
print(f"{count / secs:.0f} {size / secs / 1e6:.1f} {rss:.1f} {cpu:.2f} {count}", *lat)
PY
    rm -rf "$out"
}

# Prints the stats line of a series of run_once results (one per argument).
summarize() { # name expected label runs...
    python3 - "$@" <<'PY'
import statistics, sys
name, expected, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
runs = [r.split() for r in sys.argv[4:]]
for r in runs:
    if float(r[4]) < expected:
        sys.exit(f"{name}: only {float(r[4]):.0f} of {expected} records counted at the sink")
num = lambda i: [float(r[i]) for r in runs]
rate = num(0)
def lat(i):
    vals = [float(r[i]) for r in runs if r[i] != "-"]
    return f"{statistics.median(vals):.2f}" if vals else "-"
rng = f"({min(rate):,.0f} - {max(rate):,.0f})"
print(f"{name + label:<26} {statistics.median(rate):>12,.0f} {rng:>24} {statistics.median(num(1)):>7.1f}"
      f" {max(num(2)):>8.1f} {statistics.median(num(3)):>7.2f} {lat(5):>8} {lat(6):>8} {lat(7):>8}")
PY
}

header() {
    printf '%-26s %12s %24s %7s %8s %7s %8s %8s %8s\n' workload "records/s" "(min - max)" "MB/s" \
        "RSS MB" "CPU s" "p50 ms" "p99 ms" "p999 ms"
}

validates() { # pipeline -> 0 if `funnel pipelines validate` accepts it
    local errors
    # shellcheck disable=SC2046
    if errors="$(env $(bench_env /tmp 0) "$BIN" pipelines validate "$1" 2>&1)"; then
        return 0
    fi
    echo "$(basename "$1" .yaml): skipped, the pipeline does not validate: $(echo "$errors" | grep -v '^$' | head -1)"
    return 1
}

case "$MODE" in
max | half-rate) header ;;
aa) printf '%-26s %12s %12s %9s\n' workload "A records/s" "A' records/s" "A/A diff" ;;
esac

for pipeline in "${PIPELINES[@]}"; do
    name="$(basename "$pipeline" .yaml)"
    validates "$pipeline" || continue
    case "$MODE" in
    max)
        results=()
        run_once "$pipeline" 0 >/dev/null # warm-up
        for _ in $(seq 1 "$RUNS"); do
            results+=("$(run_once "$pipeline" 0)")
        done
        summarize "$name" "$RECORDS" "" "${results[@]}"
        ;;
    aa)
        a=()
        b=()
        run_once "$pipeline" 0 >/dev/null # warm-up
        for _ in $(seq 1 "$RUNS"); do
            a+=("$(run_once "$pipeline" 0 | cut -d' ' -f1)")
            b+=("$(run_once "$pipeline" 0 | cut -d' ' -f1)")
        done
        python3 - "$name" "${#a[@]}" "${a[@]}" "${b[@]}" <<'PY'
import statistics, sys
name, n = sys.argv[1], int(sys.argv[2])
vals = list(map(float, sys.argv[3:]))
a, b = statistics.median(vals[:n]), statistics.median(vals[n:])
print(f"{name:<26} {a:>12,.0f} {b:>12,.0f} {abs(a - b) / max(a, b) * 100:>8.1f}%")
PY
        ;;
    half-rate)
        full=()
        run_once "$pipeline" 0 >/dev/null # warm-up
        for _ in $(seq 1 "$RUNS"); do
            full+=("$(run_once "$pipeline" 0)")
        done
        half="$(printf '%s\n' "${full[@]}" | cut -d' ' -f1 | sort -n |
            awk '{v[NR]=$1} END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.0f", m / 2}')"
        results=()
        for _ in $(seq 1 "$RUNS"); do
            results+=("$(run_once "$pipeline" "$half")")
        done
        summarize "$name" "$RECORDS" " @${half}/s" "${results[@]}"
        ;;
    esac
done
