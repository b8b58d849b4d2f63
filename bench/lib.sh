# Shared by the broker benchmarks (bench/brokers.sh, bench/rabbitmq.sh, bench/mqtt.sh).
# Source it after setting N (records per run), PORT (funnel's API port), BIN (the funnel
# binary), WORK (a scratch directory) and PAYLOAD (the 1 KB payload file); set
# BROKER_PROC to the broker's process name to print its CPU time next to Funnel's.
# LIMIT (default 300) is the seconds a run may take before the script fails and prints
# the end of funnel's log; POLL, below, how often it asks funnel how far it got.

LIMIT="${LIMIT:-300}"
# POLL (default 0.05) is the seconds between two polls of funnel's /metrics. Each poll
# renders every metric, about 0.5 ms of funnel's CPU (measured on the 2-vCPU bench
# machine: 100 polls, 5 ticks), so about 0.06 s of CPU in a 6-second run; a longer
# interval costs less and makes the finishing time coarser by up to POLL.
POLL="${POLL:-0.05}"

# acked: the records funnel's pipelines acked so far.
acked() {
    { curl -s "http://127.0.0.1:$PORT/metrics" 2>/dev/null || true; } |
        awk '/^funnel_pipeline_records_acked_total/ { s += $NF } END { printf "%d", s }'
}

# cpu_of PID: user + system CPU seconds of a process.
cpu_of() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"
}

# broker_cpu: the broker's CPU seconds (0 without BROKER_PROC).
broker_cpu() {
    if [ -n "${BROKER_PROC:-}" ]; then
        cpu_of "$(pgrep -x "$BROKER_PROC" | head -1)"
    else
        echo 0
    fi
}

# gen_block: a generator source block of N records of the payload.
gen_block() {
    printf '%s\n' "        plugin: builtin:generator
        settings:
          format.type: file
          format.options.path: $PAYLOAD
          recordCount: \"$N\""
}

# run NAME SOURCE-BLOCK DESTINATION-BLOCK: funnel until N records are acked; prints
# the rate (start-up included, and from the first acked records on), funnel's CPU
# time (and the broker's) and the load average.
run() {
    mkdir -p "$WORK/$1/pipelines"
    cat >"$WORK/$1/pipelines/p.yaml" <<YAML
version: "2.2"
pipelines:
  - id: $1
    status: running
    connectors:
      - id: src
        type: source
$2
      - id: dst
        type: destination
$3
YAML
    local start end cpu b0 b1 deadline first="" first_n=0 n
    b0="$(broker_cpu)"
    start="$(date +%s.%N)"
    deadline=$((SECONDS + LIMIT))
    (cd "$WORK/$1" && exec "$BIN" run --db.type memory --api.http.address "127.0.0.1:$PORT" 2>"$WORK/$1.log") &
    FUNNEL_PID=$!
    while n="$(acked)" && [ "$n" -lt "$N" ]; do
        # The first poll that sees records acked: start-up is over.
        if [ -z "$first" ] && [ "$n" -gt 0 ]; then
            first="$(date +%s.%N)"; first_n="$n"
        fi
        if ! kill -0 "$FUNNEL_PID" 2>/dev/null; then
            echo "funnel exited early:" >&2; cat "$WORK/$1.log" >&2; exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "funnel $1: only $(acked) of $N records acked after $LIMIT s; its log:" >&2
            tail -n 40 "$WORK/$1.log" >&2; exit 1
        fi
        sleep "$POLL"
    done
    end="$(date +%s.%N)"
    b1="$(broker_cpu)"
    cpu="$(cpu_of "$FUNNEL_PID")"
    # Where the source's worker waited (funnel_source_wait_seconds, summed per phase).
    local waits
    waits="$({ curl -s "http://127.0.0.1:$PORT/metrics" 2>/dev/null || true; } |
        awk '/^funnel_source_wait_seconds_sum/ { match($0, /phase="[a-z]*"/); p = substr($0, RSTART + 7, RLENGTH - 8); s[p] += $NF }
             END { for (p in s) printf "%s %.3f s, ", p, s[p] }')"
    kill "$FUNNEL_PID"; wait "$FUNNEL_PID" || true; FUNNEL_PID=""
    local broker=""
    [ -n "${BROKER_PROC:-}" ] && broker="; broker CPU $(awk -v a="$b0" -v b="$b1" 'BEGIN { printf "%.2f", b - a }') s"
    python3 -c "s=$end-$start; print(f'funnel $1: {$N:,} records in {s:.2f} s = {$N/s:,.0f} records/s = {$N*1000/s/1e6:.1f} MB/s; funnel CPU $cpu s$broker')"
    # Without start-up (process start, connecting, creating consumers): from the first
    # poll that saw records acked to the end, as the clients measure after connecting.
    [ -n "$first" ] && python3 -c "s=$end-$first; n=$N-$first_n; print(f'  after start-up: {n:,} records in {s:.2f} s = {n/s:,.0f} records/s')"
    [ -n "$waits" ] && echo "  source waited: ${waits%, }"
    echo "  load average: $(cut -d' ' -f1-3 /proc/loadavg)"
}
