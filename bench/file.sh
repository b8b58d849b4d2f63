#!/usr/bin/env bash
# File ingest benchmark: the file source -> noop destination on an NDJSON file of N lines
# of about 240 bytes (default 1,000,000 lines, ~240 MB, made once and kept in
# $BENCH_CACHE), side by side with Vector (stdin source -> blackhole sink on the same
# file) when VECTOR_BIN names a `vector` binary; without it only Funnel runs.
#
# Funnel: time from starting `funnel run` until its pipeline has acked N records
# (polled on /metrics every 10 ms, start-up included), then SIGTERM. Vector: time of
# the whole `vector --config ... < file` process, which exits at the end of its input.
# The file is read once before the first run so both read it from the page cache.
# Runs alternate (Funnel, Vector, Funnel, ...): RUNS rounds after one warm-up round.
# COMPARE_BIN names a second funnel binary run in every round after the first (an A/B
# pair; the same binary twice is the A/A noise floor of the sitting). Printed per run:
# lines/s, CPU seconds, peak RSS and the load average; then per arm the median, min,
# max and spread, the median CPU time per line and the peak RSS, and the ratios of the
# medians (Funnel / Funnel B, Funnel / Vector).
#
#   bench/file.sh                                  build, 1M lines, 5 rounds
#   FUNNEL_BIN=/path/to/funnel RUNS=3 bench/file.sh
#   VECTOR_BIN=/usr/bin/vector bench/file.sh       with Vector and the ratio
#   LINES=200000 bench/file.sh                     a smaller file
#   COMPARE_BIN=/path/to/other/funnel bench/file.sh  A/B (or A/A) side by side
set -euo pipefail
cd "$(dirname "$0")/.."

LINES="${LINES:-1000000}"
RUNS="${RUNS:-5}"
PORT="${PORT:-18099}"
LIMIT="${LIMIT:-120}"
BENCH_CACHE="${BENCH_CACHE:-$HOME/.cache/funnel/bench}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/funnel/target}"
if [ -z "${FUNNEL_BIN:-}" ]; then
    cargo build --release --quiet -p funnel-cli --no-default-features --features jemalloc
    FUNNEL_BIN="$CARGO_TARGET_DIR/release/funnel"
fi
WORK="$(mktemp -d)"
FUNNEL_PID=""
cleanup() {
    [ -n "$FUNNEL_PID" ] && kill "$FUNNEL_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# The input: N deterministic NDJSON log lines of about 245 bytes.
mkdir -p "$BENCH_CACHE"
INPUT="$BENCH_CACHE/lines-v1-$LINES.ndjson"
if [ ! -s "$INPUT" ]; then
    python3 - "$LINES" "$INPUT.tmp" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
levels = ["info", "info", "info", "warn", "error", "debug"]
services = ["checkout", "payments", "search", "inventory", "auth", "gateway"]
verbs = ["GET", "POST", "PUT", "DELETE"]
with open(path, "w") as f:
    for i in range(n):
        x = (i * 2654435761) & 0xFFFFFFFF
        line = (
            '{"timestamp":"2026-12-05T15:%02d:%02d.%06dZ","host":"web-%02d.internal",'
            '"service":"%s","level":"%s","trace_id":"%032x","user_id":%d,"status":%d,'
            '"latency_ms":%d,"message":"%s /api/v1/orders/%d completed"}'
            % ((i // 60000) % 60, (i // 1000) % 60, (i * 997) % 1000000, x % 32,
               services[x % 6], levels[(x >> 3) % 6], x * 0x9E3779B97F4A7C15 & (2**128 - 1),
               x % 100000, 200 + (x % 5) * 100 if x % 7 == 0 else 200, x % 500,
               verbs[(x >> 5) % 4], x % 1000000)
        )
        f.write(line + "\n")
PY
    mv "$INPUT.tmp" "$INPUT"
fi
cat "$INPUT" >/dev/null # into the page cache
BYTES="$(stat -c %s "$INPUT")"

mkdir -p "$WORK/pipelines"
cat >"$WORK/pipelines/file-noop.yaml" <<YAML
version: "2.2"
pipelines:
  - id: file-noop
    status: running
    connectors:
      - id: src
        type: source
        plugin: builtin:file
        settings:
          path: $INPUT
      - id: dst
        type: destination
        plugin: builtin:noop
YAML
cat >"$WORK/vector.toml" <<TOML
data_dir = "$WORK"
[sources.in]
type = "stdin"
[sinks.out]
type = "blackhole"
inputs = ["in"]
print_interval_secs = 0
TOML

# run_funnel: prints "seconds cpu_seconds peak_rss_mb".
run_funnel() {
    (cd "$WORK" && exec "$FUNNEL_BIN" run --pipelines.path "$WORK/pipelines" --db.type memory \
        --api.http.address "127.0.0.1:$PORT" 2>"$WORK/funnel.log") &
    FUNNEL_PID=$!
    local start=$EPOCHREALTIME
    python3 - "$PORT" "$LINES" "$LIMIT" "$FUNNEL_PID" "$start" <<'PY' || { tail -n 30 "$WORK/funnel.log" >&2; exit 1; }
import http.client, os, sys, time
port, n, limit, pid, start = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], float(sys.argv[5])
def acked():
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        c.request("GET", "/metrics")
        body = c.getresponse().read().decode()
        c.close()
    except OSError:
        return 0
    return sum(int(float(l.split()[-1])) for l in body.splitlines()
               if l.startswith("funnel_pipeline_records_acked_total"))
while True:
    if acked() >= n:
        end = time.time()
        break
    if not os.path.exists(f"/proc/{pid}"):
        sys.exit("funnel exited early")
    if time.time() - start > limit:
        sys.exit(f"funnel: fewer than {n} records acked after {limit} s")
    time.sleep(0.01)
stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
hwm = [l for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM")][0].split()[1]
print(f"{end - start:.4f} {cpu:.2f} {int(hwm) / 1024:.1f}")
PY
    kill "$FUNNEL_PID"
    wait "$FUNNEL_PID" || true
    FUNNEL_PID=""
}

# run_vector: prints "seconds cpu_seconds peak_rss_mb".
run_vector() {
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/vector.time" \
        "$VECTOR_BIN" --quiet --config "$WORK/vector.toml" <"$INPUT" >"$WORK/vector.log" 2>&1 ||
        { tail -n 30 "$WORK/vector.log" >&2; exit 1; }
    awk '{ printf "%s %.2f %.1f\n", $1, $2 + $3, $4 / 1024 }' "$WORK/vector.time"
}

rate() { awk -v n="$LINES" -v s="$1" 'BEGIN { printf "%.0f", n / s }'; }

echo "input: $INPUT ($LINES lines, $BYTES bytes); funnel: $FUNNEL_BIN"
[ -n "${COMPARE_BIN:-}" ] && echo "funnel B: $COMPARE_BIN"
[ -n "${VECTOR_BIN:-}" ] && echo "vector: $VECTOR_BIN ($("$VECTOR_BIN" --version 2>/dev/null | head -1))"
run_funnel >/dev/null # warm-up
[ -n "${COMPARE_BIN:-}" ] && FUNNEL_BIN="$COMPARE_BIN" run_funnel >/dev/null
[ -n "${VECTOR_BIN:-}" ] && run_vector >/dev/null
RESULTS="$WORK/results"
: >"$RESULTS"
for i in $(seq 1 "$RUNS"); do
    line="round $i:"
    arms=(funnel)
    [ -n "${COMPARE_BIN:-}" ] && arms+=(funnel-B)
    [ -n "${VECTOR_BIN:-}" ] && arms+=(vector)
    for arm in "${arms[@]}"; do
        case "$arm" in
        funnel) out="$(run_funnel)" ;;
        funnel-B) out="$(FUNNEL_BIN="$COMPARE_BIN" run_funnel)" ;;
        vector) out="$(run_vector)" ;;
        esac
        read -r s cpu rss <<<"$out"
        echo "$arm $(rate "$s") $cpu $rss" >>"$RESULTS"
        line="$line  $arm $(rate "$s") lines/s CPU $cpu s RSS $rss MB;"
    done
    echo "$line load $(cut -d' ' -f1-3 /proc/loadavg)"
done
python3 - "$RESULTS" "$LINES" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
lines = int(sys.argv[2])
med = {}
for arm in ["funnel", "funnel-B", "vector"]:
    r = [float(x[1]) for x in rows if x[0] == arm]
    if not r:
        continue
    cpu = statistics.median(float(x[2]) for x in rows if x[0] == arm)
    rss = max(float(x[3]) for x in rows if x[0] == arm)
    med[arm] = statistics.median(r)
    print(f"{arm:<9} median {med[arm]:>11,.0f} lines/s (min {min(r):,.0f}, max {max(r):,.0f}, "
          f"spread {(max(r) - min(r)) / med[arm] * 100:.0f}%); CPU {cpu:.2f} s = "
          f"{cpu / lines * 1e9:,.0f} ns/line; peak RSS {rss:.1f} MB")
if "funnel-B" in med:
    print(f"ratio funnel / funnel-B: {med['funnel'] / med['funnel-B']:.2f}")
if "vector" in med:
    print(f"ratio funnel / vector: {med['funnel'] / med['vector']:.2f}")
PY
