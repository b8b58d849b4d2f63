#!/usr/bin/env bash
# End-to-end benchmark: runs the release `funnel` binary on the shipped benchmark
# pipelines (bench/pipelines/*.yaml) and reports, per workload, records/s counted at
# the sink (lines in the output file, or the noop destinations' own counter logged at
# exit), MB/s for file output, peak RSS and CPU seconds (from /usr/bin/time -v).
# One warm-up run, then RUNS measured runs: median, min and max.
#
#   bench/run.sh                          every workload, 1,000,000 records, 3 runs
#   RECORDS=200000 RUNS=5 bench/run.sh bench/pipelines/noop-1k.yaml
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${RUNS:-3}"
RECORDS="${RECORDS:-1000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/funnel/target}"
cargo build --release --quiet --bin funnel
BIN="$CARGO_TARGET_DIR/release/funnel"
PIPELINES=("$@")
if [ ${#PIPELINES[@]} -eq 0 ]; then
    PIPELINES=(bench/pipelines/*.yaml)
fi

printf '%-18s %14s %22s %9s %12s %9s\n' workload "records/s" "(min - max)" "MB/s" "peak RSS MB" "CPU s"
for pipeline in "${PIPELINES[@]}"; do
    name="$(basename "$pipeline" .yaml)"
    results=()
    for run in $(seq 0 "$RUNS"); do
        out="$(mktemp -d)"
        BENCH_DIR="$PWD/bench" BENCH_RECORDS="$RECORDS" BENCH_OUT="$out" \
            /usr/bin/time -v -o "$out/time.txt" \
            "$BIN" run --pipelines.path "$pipeline" --pipelines.exit-on-done \
            --db.type memory --api.http.address "" 2>"$out/log.txt" || {
            echo "$name: funnel failed, log:" >&2
            cat "$out/log.txt" >&2
            exit 1
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
        if [ "$run" -gt 0 ]; then
            results+=("$(python3 - "$out/time.txt" "$count" "$bytes" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
count, size = int(sys.argv[2]), int(sys.argv[3])
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
secs = 0.0
for part in wall.split(":"):
    secs = secs * 60 + float(part)
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024
cpu = float(re.search(r"User time \(seconds\): (\S+)", text).group(1)) + float(re.search(r"System time \(seconds\): (\S+)", text).group(1))
print(f"{count / secs:.0f} {size / secs / 1e6:.1f} {rss:.1f} {cpu:.2f} {count}")
PY
)")
        fi
        rm -rf "$out"
    done
    python3 - "$name" "$RECORDS" "${results[@]}" <<'PY'
import statistics, sys
name, expected = sys.argv[1], int(sys.argv[2])
runs = [list(map(float, r.split())) for r in sys.argv[3:]]
for r in runs:
    if r[4] < expected:
        sys.exit(f"{name}: only {r[4]:.0f} of {expected} records counted at the sink")
rate = [r[0] for r in runs]
med = lambda i: statistics.median(r[i] for r in runs)
print(f"{name:<18} {statistics.median(rate):>14,.0f} {f'({min(rate):,.0f} - {max(rate):,.0f})':>22} {med(1):>9.1f} {max(r[2] for r in runs):>12.1f} {med(3):>9.2f}")
PY
done
