#!/usr/bin/env bash
# HTTP connectors benchmark: the release `funnel` binary next to a plain client or
# server on the same machine, over loopback.
#
# 1. Webhook ingest (http source -> noop destination): wrk posts NDJSON bodies of R
#    records (about 100 bytes each) over C keep-alive connections for D seconds; each
#    request is answered 200 only after its records were released by the pipeline.
#    Side by side: the same wrk run against bench/http_sink.py, a one-thread asyncio
#    server that answers 200 at once (the load generator's ceiling with a trivial
#    receiver). Printed: requests/s, records/s, non-2xx answers, Funnel's CPU time.
# 2. HTTP destination (generator -> http, batch.format json, sdk.batch.size B on both
#    ends, so a request carries B records): N records of the 1 KB payload
#    (bench/payload-1k.txt) posted to bench/http_sink.py;
#    time from starting `funnel run` until the pipeline's acked counter reaches N
#    (start-up included). Side by side: bench/http_client.py posting the same number of
#    records in JSON arrays of B to the same sink over one keep-alive connection.
#
# Each Funnel row runs REPEAT times (default 2): the spread between runs is the A/A
# noise floor. The load average is printed after each run; the machine is shared.
#
#   bench/http.sh                          N=200000 B=100 R=100 C=16 D=10
#   BIN=/path/to/funnel bench/http.sh      another binary (no build)
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-200000}"
B="${B:-100}"
R="${R:-100}"
C="${C:-16}"
D="${D:-10}"
REPEAT="${REPEAT:-2}"
PORT="${PORT:-18095}"
HPORT="${HPORT:-18096}"
SPORT="${SPORT:-18097}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/funnel/target}"
if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet -p funnel-cli --no-default-features --features http
    BIN="$CARGO_TARGET_DIR/release/funnel"
fi
command -v wrk >/dev/null || { echo "bench/http.sh needs wrk (apt-get install wrk)" >&2; exit 1; }
PAYLOAD="$PWD/bench/payload-1k.txt"
WORK="$(mktemp -d)"
cleanup() {
    [ -n "${FUNNEL_PID:-}" ] && kill "$FUNNEL_PID" 2>/dev/null || true
    [ -n "${SINK_PID:-}" ] && kill "$SINK_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
# shellcheck source=bench/lib.sh
. bench/lib.sh

wait_port() {
    local deadline=$((SECONDS + 60))
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || { echo "nothing listens on $1" >&2; exit 1; }
        sleep 0.05
    done
}

start_sink() {
    python3 bench/http_sink.py "$SPORT" >"$WORK/sink.log" 2>&1 &
    SINK_PID=$!
    wait_port "$SPORT"
}

stop_sink() {
    kill "$SINK_PID"; wait "$SINK_PID" || true; SINK_PID=""
    cat "$WORK/sink.log"
}

# The request body: R NDJSON records of about 100 bytes.
python3 -c "
for i in range($R):
    print('{\"id\":%d,\"name\":\"user %06d\",\"email\":\"user%06d@example.com\",\"note\":\"%s\"}' % (i, i, i, 'x' * 24))
" >"$WORK/body.ndjson"
cat >"$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-ndjson"
local f = io.open("$WORK/body.ndjson", "rb")
wrk.body = f:read("*a")
f:close()
LUA

# wrk_run NAME URL: wrk for D seconds; prints requests/s and records/s.
wrk_run() {
    wrk -t2 -c"$C" -d"${D}s" --timeout 60s -s "$WORK/post.lua" "$2" >"$WORK/wrk.txt"
    local rps non2xx
    rps="$(awk '/^Requests\/sec:/ { print $2 }' "$WORK/wrk.txt")"
    non2xx="$(awk '/Non-2xx/ { print $NF }' "$WORK/wrk.txt")"
    python3 -c "r=$rps; print(f'$1: {r:,.0f} requests/s = {r*$R:,.0f} records/s (${R} per request, $C connections, ${D} s); non-2xx: ${non2xx:-0}')"
    grep -E "Latency|requests in" "$WORK/wrk.txt" | sed 's/^/    /'
}

echo "== webhook ingest: wrk -t2 -c$C -d${D}s, $R records per request"
for i in $(seq "$REPEAT"); do
    mkdir -p "$WORK/hook$i/pipelines"
    cat >"$WORK/hook$i/pipelines/p.yaml" <<YAML
version: "2.2"
pipelines:
  - id: hook
    status: running
    connectors:
      - id: src
        type: source
        plugin: builtin:http
        settings:
          address: 127.0.0.1:$HPORT
          bufferSize: "256"
          backpressureTimeout: 30s
      - id: dst
        type: destination
        plugin: builtin:noop
YAML
    (cd "$WORK/hook$i" && exec "$BIN" run --db.type memory --api.http.address "127.0.0.1:$PORT" 2>"$WORK/hook$i.log") &
    FUNNEL_PID=$!
    wait_port "$HPORT"
    c0="$(cpu_of "$FUNNEL_PID")"
    wrk_run "funnel http source -> noop (run $i)" "http://127.0.0.1:$HPORT/hook"
    c1="$(cpu_of "$FUNNEL_PID")"
    echo "    funnel CPU $(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.2f", b - a }') s over ${D} s; records acked: $(acked)"
    kill "$FUNNEL_PID"; wait "$FUNNEL_PID" || true; FUNNEL_PID=""
    echo "    load average: $(cut -d' ' -f1-3 /proc/loadavg)"
done
start_sink
wrk_run "python asyncio sink (answers at once)" "http://127.0.0.1:$SPORT/hook"
echo "    $(stop_sink)"
echo "    load average: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== http destination: N=$N records of 1 KB, batch.format json, sdk.batch.size $B"
start_sink
for i in $(seq "$REPEAT"); do
    run "gen_http$i" "$(gen_block)
          sdk.batch.size: \"$B\"" "        plugin: builtin:http
        settings:
          url: http://127.0.0.1:$SPORT/in
          batch.format: json
          sdk.batch.size: \"$B\""
done
echo "    $(stop_sink)"
start_sink
python3 bench/http_client.py "$SPORT" "$N" "$B" "$PAYLOAD"
echo "    $(stop_sink)"
echo "    load average: $(cut -d' ' -f1-3 /proc/loadavg)"
