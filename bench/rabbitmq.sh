#!/usr/bin/env bash
# RabbitMQ connector benchmark: the release `funnel` binary against the RabbitMQ server
# on 127.0.0.1:5672 (guest/guest, vhost /), 1 KB messages (bench/payload-1k.txt), next
# to a small pika client loop (bench/rabbitmq_client.py) on the same server, one after
# the other. RabbitMQ ships no benchmark tool of its own here (PerfTest is a separate
# Java download), so the baseline is the client loop:
#
#   base pub:        pika publishes N persistent messages into a durable queue with
#                    publisher confirms, at most 1000 unconfirmed;
#   base sub:        pika consumes them with manual acks (prefetch 3048, one multiple
#                    ack per 1000);
#   rabbitmq -> noop: a durable queue filled with N messages (by pika, timed again as an
#                    A/A of base pub), read by builtin:rabbitmq into builtin:noop;
#   gen -> rabbitmq: builtin:generator (N records of the 1 KB payload) into
#                    builtin:rabbitmq (persistent, publisher confirms; each message is
#                    the record's OpenCDC JSON, larger than 1 KB).
#
# Funnel's time runs from starting `funnel run` until the pipeline's acked-records
# counter reaches N (start-up and connecting included); the client's from connecting.
# MB/s counts 1,000 bytes of payload per record. Also printed: Funnel's CPU time, the
# broker's (beam.smp) CPU time over the same span, and the load average at the end.
#
#   bench/rabbitmq.sh                      N=100000
#   N=50000 bench/rabbitmq.sh
#   BIN=/path/to/funnel bench/rabbitmq.sh  another binary (no build)
# Needs python3 with pika (`pip install pika`).
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-100000}"
PORT="${PORT:-18092}"
URL="${URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/funnel/target}"
if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet -p funnel-cli --no-default-features --features rabbitmq
    BIN="$CARGO_TARGET_DIR/release/funnel"
fi
CLIENT=(python3 "$PWD/bench/rabbitmq_client.py")
PAYLOAD="$PWD/bench/payload-1k.txt"
WORK="$(mktemp -d)"
TAG="b$$_$RANDOM"
cleanup() {
    [ -n "${FUNNEL_PID:-}" ] && kill "$FUNNEL_PID" 2>/dev/null || true
    "${CLIENT[@]}" rm "$URL" "bench_${TAG}_base" "bench_${TAG}_in" "bench_${TAG}_out" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

BROKER_PROC=beam.smp
# shellcheck source=bench/lib.sh
. "$PWD/bench/lib.sh"

# base WHAT COMMAND...: a client run, with the broker's CPU time and the load.
base() {
    local b0 b1
    b0="$(broker_cpu)"
    "${@:2}"
    b1="$(broker_cpu)"
    echo "  ($1) broker CPU $(awk -v a="$b0" -v b="$b1" 'BEGIN { printf "%.2f", b - a }') s; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
}

echo "rabbitmq: N=$N, queues bench_${TAG}_*"
base "base pub" "${CLIENT[@]}" pub "$URL" "bench_${TAG}_base" "$N" "$PAYLOAD"
base "base sub" "${CLIENT[@]}" sub "$URL" "bench_${TAG}_base" "$N"
echo "filling bench_${TAG}_in (A/A of base pub):"
base "fill" "${CLIENT[@]}" pub "$URL" "bench_${TAG}_in" "$N" "$PAYLOAD"
run rabbitmq_noop "        plugin: builtin:rabbitmq
        settings:
          url: $URL
          queue.name: bench_${TAG}_in" "        plugin: builtin:noop"
run gen_rabbitmq "$(gen_block)" "        plugin: builtin:rabbitmq
        settings:
          url: $URL
          queue.name: bench_${TAG}_out"
