#!/usr/bin/env bash
# Standalone connector plugins: records/s through a Python plugin source (Conduit's
# Python SDK, crates/funnel-test-utils/fixtures/conduit/bench_source.py, 100-byte raw
# payloads) -> builtin noop, and builtin generator -> a Python no-op plugin destination
# (noop_destination.py), next to the same pipeline with built-in connectors only
# (generator -> noop, the same 100-byte payloads). For each: records/s counted at the sink, and the CPU seconds of
# the `funnel` process alone (utime+stime from /proc/<pid>/stat, the plugin excluded)
# per million records, i.e. the host's own cost per record. Medians over RUNS runs.
#
#   bench/plugins.sh                 3 runs of each, 15 s for the source, 200,000 records for the destination
#   RUNS=5 SECONDS_SOURCE=20 RECORDS=100000 bench/plugins.sh
#   FUNNEL_BIN=path/to/funnel bench/plugins.sh
#   MODE=aa bench/plugins.sh         A/A: every case run twice per round, both medians printed
#
# Needs the virtualenv scripts/setup-services.sh makes (~/.cache/funnel/conduit-py).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${RUNS:-3}"
SECONDS_SOURCE="${SECONDS_SOURCE:-15}"
RECORDS="${RECORDS:-200000}"
MODE="${MODE:-max}"
PYTHON="${FUNNEL_CONDUIT_PYTHON:-$HOME/.cache/funnel/conduit-py/bin/python}"
FIXTURES="$PWD/crates/funnel-test-utils/fixtures/conduit"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/funnel/target}"
if [ -z "${FUNNEL_BIN:-}" ]; then
    cargo build --release --quiet --bin funnel
fi
BIN="${FUNNEL_BIN:-$CARGO_TARGET_DIR/release/funnel}"
TICKS="$(getconf CLK_TCK)"

install_plugin() { # dir name fixture
    mkdir -p "$1"
    printf '#!%s\nimport runpy\nrunpy.run_path("%s", run_name="__main__")\n' \
        "$PYTHON" "$FIXTURES/$3" >"$1/$2"
    chmod 755 "$1/$2"
}

# CPU seconds (user+system) of process $1 alone, from /proc; empty once it is gone.
cpu_of() {
    awk -v t="$TICKS" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat" 2>/dev/null || true
}

# Runs funnel in $1 until it exits (or for $2 seconds, then SIGTERM); prints the last
# CPU sample of the funnel process.
run_funnel() { # dir seconds(0: until exit)
    local dir=$1 limit=$2 pid cpu="" now start
    (cd "$dir" && exec "$BIN" run --api.http.address 127.0.0.1:0 \
        $([ "$limit" = 0 ] && echo --pipelines.exit-on-done) 2>"$dir/funnel.log") &
    pid=$!
    start=$(date +%s.%N)
    while kill -0 "$pid" 2>/dev/null; do
        now="$(cpu_of "$pid")"
        [ -n "$now" ] && cpu=$now
        if [ "$limit" != 0 ] && awk -v s="$start" -v l="$limit" -v n="$(date +%s.%N)" 'BEGIN { exit !(n - s >= l) }'; then
            kill -TERM "$pid"
            limit=0
        fi
        sleep 0.2
    done
    wait "$pid" || true
    echo "$cpu"
}

# plugin source -> noop for SECONDS_SOURCE; prints "records/s cpu_s_per_million".
source_case() {
    local dir count cpu
    dir="$(mktemp -d)"
    install_plugin "$dir/connectors" bench bench_source.py
    mkdir -p "$dir/pipelines"
    cat >"$dir/pipelines/p.yaml" <<YAML
version: "2.2"
pipelines:
  - id: p
    connectors:
      - id: src
        type: source
        plugin: standalone:bench
      - id: dst
        type: destination
        plugin: builtin:noop
YAML
    cpu="$(run_funnel "$dir" "$SECONDS_SOURCE")"
    count="$(grep -o 'noop destinations acknowledged records records=[0-9]*' "$dir/funnel.log" | grep -o '[0-9]*$' || echo 0)"
    awk -v c="$count" -v s="$SECONDS_SOURCE" -v cpu="$cpu" \
        'BEGIN { printf "%.0f %.2f\n", c / s, (c > 0 ? cpu * 1000000 / c : 0) }'
    rm -rf "$dir"
}

# generator (RECORDS, 100-byte payloads) -> $1 (default: the plugin no-op
# destination); prints "records/s cpu_s_per_million".
destination_case() {
    local dir cpu start end plugin="${1:-standalone:pynoop}"
    dir="$(mktemp -d)"
    install_plugin "$dir/connectors" pynoop noop_destination.py
    mkdir -p "$dir/pipelines"
    cat >"$dir/pipelines/p.yaml" <<YAML
version: "2.2"
pipelines:
  - id: p
    connectors:
      - id: src
        type: source
        plugin: builtin:generator
        settings:
          format.type: file
          format.options.path: $PWD/bench/payload-100b.txt
          recordCount: "$RECORDS"
      - id: dst
        type: destination
        plugin: $plugin
YAML
    start=$(date +%s.%N)
    cpu="$(run_funnel "$dir" 0)"
    end=$(date +%s.%N)
    awk -v c="$RECORDS" -v s="$start" -v e="$end" -v cpu="$cpu" \
        'BEGIN { printf "%.0f %.2f\n", c / (e - s), cpu * 1000000 / c }'
    rm -rf "$dir"
}

# The same with built-in connectors only: generator -> noop.
builtin_case() { destination_case builtin:noop; }

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

report() { # name case
    local results
    results="$(for _ in $(seq "$RUNS"); do "$2"; done)"
    echo "$1: $(echo "$results" | cut -d' ' -f1 | median) records/s," \
        "$(echo "$results" | cut -d' ' -f2 | median) funnel CPU s per million records" \
        "(runs: $(echo "$results" | tr '\n' ';'))"
}

echo "funnel: $BIN; load: $(cut -d' ' -f1-3 /proc/loadavg)"
report "python plugin source -> noop" source_case
report "generator -> python plugin destination" destination_case
report "generator -> noop (built-in only)" builtin_case
if [ "$MODE" = aa ]; then
    report "python plugin source -> noop (A')" source_case
    report "generator -> python plugin destination (A')" destination_case
    report "generator -> noop (built-in only) (A')" builtin_case
fi
