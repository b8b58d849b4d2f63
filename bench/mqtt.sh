#!/usr/bin/env bash
# MQTT connector benchmark: the release `funnel` binary against the Mosquitto broker on
# 127.0.0.1:1883 (anonymous; scripts/setup-services.sh sets max_queued_messages 0 and
# max_inflight_messages 1000), 1 KB messages (bench/payload-1k.txt), next to the
# broker's own clients `mosquitto_pub` / `mosquitto_sub` on the same broker, one after
# the other. Every message goes to a topic with a persistent session (clean session
# off, QoS 1) subscribed to it, so the broker queues it:
#
#   base pub:     `mosquitto_pub -l -q 1` publishes N lines of the payload (QoS 1, each
#                 acked by PUBACK) to a topic a stopped session subscribes to;
#   base sub:     `mosquitto_sub -c -q 1 -C N` resumes that session and reads the N
#                 queued messages;
#   mqtt -> noop: a session created for Funnel's client ID (by `mosquitto_sub -c -E`),
#                 N messages queued for it by `mosquitto_pub` (timed: A/A of base pub),
#                 then builtin:mqtt (QoS 1, persistent session) into builtin:noop;
#   gen -> mqtt:  builtin:generator (N records of the 1 KB payload) into builtin:mqtt
#                 (QoS 1, acked after PUBACK; each message is the record's OpenCDC JSON,
#                 larger than 1 KB), to a topic a stopped session subscribes to.
#
# Funnel's time runs from starting `funnel run` until the pipeline's acked-records
# counter reaches N (start-up and connecting included); the clients' from starting the
# command. MB/s counts 1,000 bytes of payload per record. Also printed: Funnel's CPU
# time, the broker's (mosquitto) CPU time over the same span, and the load average.
#
#   bench/mqtt.sh                      N=100000
#   N=50000 bench/mqtt.sh
#   BIN=/path/to/funnel bench/mqtt.sh  another binary (no build)
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-100000}"
PORT="${PORT:-18093}"
HOST="${HOST:-127.0.0.1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/funnel/target}"
if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet -p funnel-cli --no-default-features --features mqtt
    BIN="$CARGO_TARGET_DIR/release/funnel"
fi
PAYLOAD="$PWD/bench/payload-1k.txt"
VALUE="$(cat "$PAYLOAD")"
WORK="$(mktemp -d)"
# PREFIX (default "bench") starts every topic and client ID the run makes.
PREFIX="${PREFIX:-bench}"
TAG="b$$-$RANDOM"
T="$PREFIX/$TAG"
SESSIONS=("$PREFIX-$TAG-sub" "$PREFIX-$TAG-funnel" "$PREFIX-$TAG-out")
cleanup() {
    [ -n "${FUNNEL_PID:-}" ] && kill "$FUNNEL_PID" 2>/dev/null || true
    # A clean-session connect with each client ID drops its session and queue.
    for id in "${SESSIONS[@]}"; do
        timeout 10 mosquitto_sub -h "$HOST" -i "$id" -t "$T/none" -E >/dev/null 2>&1 || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

BROKER_PROC=mosquitto
# shellcheck source=bench/lib.sh
. "$PWD/bench/lib.sh"

session() { # client-id topic: a persistent QoS 1 subscription, then disconnect
    mosquitto_sub -h "$HOST" -i "$1" -c -q 1 -t "$2" -E
}

# timed WHAT COMMAND...: a client run, timed, with the broker's CPU time and the load.
timed() {
    local start end b0 b1
    b0="$(broker_cpu)"
    start="$(date +%s.%N)"
    "${@:2}"
    end="$(date +%s.%N)"
    b1="$(broker_cpu)"
    python3 -c "s=$end-$start; print(f'$1: {$N:,} messages in {s:.2f} s = {$N/s:,.0f} records/s = {$N*1000/s/1e6:.1f} MB/s; broker CPU {$b1-$b0:.2f} s')"
    echo "  load average: $(cut -d' ' -f1-3 /proc/loadavg)"
}

publish() { # topic: N lines of the payload at QoS 1
    { yes "$VALUE" || true; } | head -n "$N" | mosquitto_pub -h "$HOST" -i "$PREFIX-$TAG-pub" -q 1 -l -t "$1"
}

read_session() { # client-id topic: the N queued messages
    mosquitto_sub -h "$HOST" -i "$1" -c -q 1 -t "$2" -C "$N" >/dev/null
}

echo "mqtt: N=$N, topics $T/*"
session "$PREFIX-$TAG-sub" "$T/base"
timed "mosquitto_pub -l -q 1 (base pub)" publish "$T/base"
timed "mosquitto_sub -c -q 1 (base sub)" read_session "$PREFIX-$TAG-sub" "$T/base"

session "$PREFIX-$TAG-funnel" "$T/in"
timed "mosquitto_pub -l -q 1 (fill, A/A of base pub)" publish "$T/in"
run mqtt_noop "        plugin: builtin:mqtt
        settings:
          url: tcp://$HOST:1883
          clientId: $PREFIX-$TAG-funnel
          topic: $T/in" "        plugin: builtin:noop"

session "$PREFIX-$TAG-out" "$T/out"
run gen_mqtt "$(gen_block)" "        plugin: builtin:mqtt
        settings:
          url: tcp://$HOST:1883
          clientId: $PREFIX-$TAG-fout
          topic: $T/out"
