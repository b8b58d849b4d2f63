#!/usr/bin/env bash
# Broker connector benchmarks: the release `funnel` binary against the NATS
# (127.0.0.1:4222, JetStream) and Redis (127.0.0.1:6379) servers, 1 KB messages
# (bench/payload-1k.txt), next to each broker's own client on the same server, one
# after the other:
#
#   nats  -> noop:  a stream of N messages, read by builtin:nats into builtin:noop;
#                   baseline `nats_bench sub` (a pull consumer acking each message,
#                   crates/funnel-connectors/examples/nats_bench.rs; `nats bench` is not
#                   packaged here);
#   gen   -> nats:  builtin:generator (N records) into builtin:nats; baseline
#                   `nats_bench pub` (publishes with up to 4096 publish acks awaited);
#                   run twice: each record published as its OpenCDC JSON (the
#                   default, about 1.7 KB with the base64 payload), then with
#                   `sdk.record.format: template` and `{{ printf "%s" .Payload.After }}`
#                   (the 1 KB payload alone, the client's message); then
#                   `nats_bench pub-id`, the client publishing each message with a
#                   `Nats-Msg-Id` header as the destination does (the server then
#                   de-duplicates: its share of the destination's work);
#   redis -> noop:  a stream of N entries, read by builtin:redis (XREAD) into noop;
#                   baseline `redis_bench xread` (a consumer loop reading the whole
#                   stream with XREAD COUNT 1000 after the last ID, with the same
#                   client library, crates/funnel-connectors/examples/redis_bench.rs),
#                   and for reference `redis-benchmark` repeating XREAD COUNT 1000 from
#                   the start (the same 1,000 entries each time: an upper bound for
#                   the server's replies, not a consumer; entries/s = requests/s x 1000);
#   gen   -> redis: generator into builtin:redis (XADD); baseline `redis-benchmark`
#                   running XADD with the same 1 KB value, pipelined 100 deep.
#
# Funnel's time runs from starting `funnel run` until the pipeline's acked-records
# counter reaches N (start-up included).
#
#   bench/brokers.sh                 all four, N=200000
#   N=100000 ONLY=nats bench/brokers.sh   (or ONLY=redis)
#   BIN=/path/to/funnel bench/brokers.sh  another binary (no build)
#   NATS_BENCH=/path/to/nats_bench ...    a built baseline client (no build)
#   REDIS_BENCH=/path/to/redis_bench ...  a built baseline client (no build)
#   LIMIT=300 ...                     seconds a run may take before the script fails
#                                     and prints the end of funnel's log
#   WRITE=0 ...                       only the broker -> noop rows (no generator ->
#                                     broker runs nor their baselines)
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-200000}"
PORT="${PORT:-18091}"
ONLY="${ONLY:-}"
WRITE="${WRITE:-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/funnel/target}"
if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet -p funnel-cli
    BIN="$CARGO_TARGET_DIR/release/funnel"
fi
if [ -z "${NATS_BENCH:-}" ]; then
    # Only the nats family: the example needs nothing else, and a default-feature
    # build of funnel-connectors would compile every connector family again.
    cargo build --release --quiet -p funnel-connectors --no-default-features \
        --features nats --example nats_bench
    NATS_BENCH="$CARGO_TARGET_DIR/release/examples/nats_bench"
fi
if [ -z "${REDIS_BENCH:-}" ] && [ "$ONLY" != nats ]; then
    cargo build --release --quiet -p funnel-connectors --no-default-features \
        --features redis --example redis_bench
    REDIS_BENCH="$CARGO_TARGET_DIR/release/examples/redis_bench"
fi
PAYLOAD="$PWD/bench/payload-1k.txt"
WORK="$(mktemp -d)"
# PREFIX (default "bench") starts every stream, subject and key name the run makes.
PREFIX="${PREFIX:-bench}"
TAG="b$$"
cleanup() {
    [ -n "${FUNNEL_PID:-}" ] && kill "$FUNNEL_PID" 2>/dev/null || true
    [ -n "${STREAM:-}" ] && "$NATS_BENCH" rm nats://127.0.0.1:4222 "$STREAM" >/dev/null 2>&1 || true
    redis-cli -h 127.0.0.1 del "$PREFIX:$TAG:in" "$PREFIX:$TAG:out" "$PREFIX:$TAG:base" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=bench/lib.sh
. "$PWD/bench/lib.sh"

GEN="$(gen_block)"

# rate: the last line of redis-benchmark -q, without the command (and its 1 KB value).
rate() {
    tr '\r' '\n' | tail -1 | sed 's/.*: \([0-9.]* requests per second\)/\1/'
}
NOOP="        plugin: builtin:noop"

if [ "$ONLY" != redis ]; then
    scripts/nats-server.sh ensure >/dev/null
    STREAM="${PREFIX}_$TAG"
    echo "nats: filling stream $STREAM with $N messages (baseline publish)"
    "$NATS_BENCH" pub nats://127.0.0.1:4222 "$STREAM" "$PREFIX.$TAG.in" "$N" "$PAYLOAD"
    "$NATS_BENCH" sub nats://127.0.0.1:4222 "$STREAM" "$N"
    run nats_noop "        plugin: builtin:nats
        settings:
          urls: nats://127.0.0.1:4222
          stream: $STREAM
          subject: $PREFIX.$TAG.in" "$NOOP"
    if [ "$WRITE" != 0 ]; then
        run gen_nats "$GEN" "        plugin: builtin:nats
        settings:
          urls: nats://127.0.0.1:4222
          subject: $PREFIX.$TAG.out"
        run gen_nats_payload "$GEN" "        plugin: builtin:nats
        settings:
          urls: nats://127.0.0.1:4222
          subject: $PREFIX.$TAG.out
          sdk.record.format: template
          sdk.record.format.options: '{{ printf \"%s\" .Payload.After }}'"
        "$NATS_BENCH" pub nats://127.0.0.1:4222 "$STREAM" "$PREFIX.$TAG.base" "$N" "$PAYLOAD"
        echo "nats_bench pub-id (a Nats-Msg-Id per message, as the destination sends):"
        "$NATS_BENCH" pub-id nats://127.0.0.1:4222 "$STREAM" "$PREFIX.$TAG.baseid" "$N" "$PAYLOAD"
    fi
fi

if [ "$ONLY" != nats ]; then
    scripts/redis-server.sh ensure >/dev/null
    VALUE="$(cat "$PAYLOAD")"
    echo "redis: filling $PREFIX:$TAG:in with $N entries (redis-benchmark XADD)"
    redis-benchmark -h 127.0.0.1 -q -n "$N" -c 1 -P 100 XADD "$PREFIX:$TAG:in" '*' data "$VALUE" | rate
    "$REDIS_BENCH" xread redis://127.0.0.1:6379 "$PREFIX:$TAG:in" "$N"
    echo "redis-benchmark XREAD COUNT 1000 (x1000 entries per request):"
    redis-benchmark -h 127.0.0.1 -q -n $((N / 1000 * 5)) -c 1 XREAD COUNT 1000 STREAMS "$PREFIX:$TAG:in" 0 | rate
    run redis_noop "        plugin: builtin:redis
        settings:
          redis.host: 127.0.0.1
          redis.key: $PREFIX:$TAG:in
          mode: stream" "$NOOP"
    if [ "$WRITE" != 0 ]; then
        run gen_redis "$GEN" "        plugin: builtin:redis
        settings:
          redis.host: 127.0.0.1
          redis.key: $PREFIX:$TAG:out
          mode: stream"
        echo "redis-benchmark XADD (1 KB value, pipelined 100):"
        redis-benchmark -h 127.0.0.1 -q -n "$N" -c 1 -P 100 XADD "$PREFIX:$TAG:base" '*' data "$VALUE" | rate
    fi
fi
