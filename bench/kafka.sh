#!/usr/bin/env bash
# Kafka connector benchmark, side by side with librdkafka driven by Python's
# confluent-kafka, against the same broker (127.0.0.1:9092, see
# scripts/setup-services.sh) and the same messages.
#
#   produce: funnel, generator (1 KB payload, bench/payload-1k.txt) -> kafka; each
#            message is the record as OpenCDC JSON, with its metadata as headers. Then
#            Python: a producer loop writing one of funnel's messages (key, value and
#            headers), as many times.
#   consume: funnel, kafka -> noop, reading the topic funnel wrote from the beginning
#            with a new group. Then Python: a consumer loop over the same topic with a
#            new group.
#
# Both producers: acks=all, idempotent, linger 5 ms, no compression (the test broker
# cannot read snappy); every message is counted only once its delivery report (funnel:
# its ack to the engine) came. Funnel's time runs from starting `funnel run` until the
# pipeline's acked-records counter (Prometheus) reaches RECORDS, start-up included;
# Python's from creating the client until the last delivery report / message.
# RUNS rounds alternate funnel and Python; two funnel runs of a round are the A/A noise.
#
#   bench/kafka.sh                     200,000 records, 2 rounds
#   RECORDS=100000 RUNS=3 bench/kafka.sh
#   BIN=/path/to/funnel bench/kafka.sh (a funnel built with --features kafka; no build)
#   SERVERS=127.0.0.1:19092 bench/kafka.sh (another broker; default 127.0.0.1:9092)
#   ONLY=produce bench/kafka.sh        (the produce half only)
#
# confluent-kafka is installed into a virtualenv under ~/.cache/funnel/bench-venv
# (not in CI).
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS="${RECORDS:-200000}"
RUNS="${RUNS:-2}"
PORT="${PORT:-18091}"
SERVERS="${SERVERS:-127.0.0.1:9092}"
export SERVERS
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/funnel/target}"
if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet -p funnel-cli --features kafka
    BIN="$CARGO_TARGET_DIR/release/funnel"
fi
VENV="$HOME/.cache/funnel/bench-venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import confluent_kafka' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q confluent-kafka
fi
PY="$VENV/bin/python"
WORK="$(mktemp -d)"
cleanup() {
    [ -n "${FUNNEL_PID:-}" ] && kill "$FUNNEL_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "librdkafka (python): $("$PY" -c 'import confluent_kafka as c; print(c.version()[0], c.libversion()[0])')"
echo "records: $RECORDS; load average: $(cut -d' ' -f1-3 /proc/loadavg)"

create_topic() { # name
    "$PY" - "$1" <<'PY'
import os, sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": os.environ["SERVERS"]})
for f in admin.create_topics([NewTopic(sys.argv[1], num_partitions=3, replication_factor=1)]).values():
    f.result()
PY
}

acked() {
    { curl -s "http://127.0.0.1:$PORT/metrics" 2>/dev/null || true; } |
        awk '/^funnel_pipeline_records_acked_total/ { s += $NF } END { printf "%d", s }'
}

# Runs funnel on $WORK/$1 until RECORDS are acked; prints the seconds.
run_funnel() { # dir
    (cd "$WORK/$1" && exec "$BIN" run --db.type memory --api.http.address "127.0.0.1:$PORT" 2>"$WORK/$1.log") &
    FUNNEL_PID=$!
    local start end n
    start="$(date +%s.%N)"
    while :; do
        n="$(acked)"
        if [ "${n:-0}" -ge "$RECORDS" ]; then break; fi
        if ! kill -0 "$FUNNEL_PID" 2>/dev/null; then
            echo "funnel exited early:" >&2; cat "$WORK/$1.log" >&2; exit 1
        fi
        sleep 0.02
    done
    end="$(date +%s.%N)"
    kill "$FUNNEL_PID"
    wait "$FUNNEL_PID" || true
    FUNNEL_PID=""
    python3 -c "print(f'{$end-$start:.3f}')"
}

produce_pipeline() { # dir topic
    mkdir -p "$WORK/$1/pipelines"
    cat >"$WORK/$1/pipelines/p.yaml" <<YAML
version: "2.2"
pipelines:
  - id: $1
    status: running
    connectors:
      - id: gen
        type: source
        plugin: builtin:generator
        settings:
          format.type: file
          format.options.path: $PWD/bench/payload-1k.txt
          recordCount: "$RECORDS"
      - id: out
        type: destination
        plugin: builtin:kafka
        settings:
          servers: $SERVERS
          topic: $2
          compression: none
YAML
}

consume_pipeline() { # dir topic
    mkdir -p "$WORK/$1/pipelines"
    cat >"$WORK/$1/pipelines/p.yaml" <<YAML
version: "2.2"
pipelines:
  - id: $1
    status: running
    connectors:
      - id: in
        type: source
        plugin: builtin:kafka
        settings:
          servers: $SERVERS
          topics: $2
          groupID: $1
          readFromBeginning: "true"
      - id: out
        type: destination
        plugin: builtin:noop
YAML
}

# The size of one message funnel wrote to $1, and the python producer's time for
# RECORDS such messages into $2.
python_produce() { # source-topic target-topic
    "$PY" - "$1" "$2" "$RECORDS" <<'PY'
import os, sys, time
from confluent_kafka import Consumer, Producer
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = Consumer({"bootstrap.servers": os.environ["SERVERS"], "group.id": "bench-peek-" + dst,
              "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.subscribe([src])
m = None
while m is None or m.error():
    m = c.poll(1.0)
key, value, headers = m.key(), m.value(), m.headers()
c.close()
start = time.time()
p = Producer({"bootstrap.servers": os.environ["SERVERS"], "acks": "all", "enable.idempotence": True,
              "linger.ms": 5, "compression.type": "none"})
done = 0
def report(err, msg):
    global done
    if err is not None:
        raise SystemExit(f"delivery failed: {err}")
    done += 1
for i in range(n):
    while True:
        try:
            p.produce(dst, value, key=key, headers=headers, on_delivery=report)
            break
        except BufferError:
            p.poll(0.01)
    p.poll(0)
p.flush()
assert done == n, (done, n)
print(f"{len(value)} {time.time() - start:.3f}")
PY
}

python_consume() { # topic
    "$PY" - "$1" "$RECORDS" <<'PY'
import os, sys, time, uuid
from confluent_kafka import Consumer
topic, n = sys.argv[1], int(sys.argv[2])
start = time.time()
c = Consumer({"bootstrap.servers": os.environ["SERVERS"], "group.id": "bench-" + uuid.uuid4().hex,
              "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.subscribe([topic])
got = 0
while got < n:
    for m in c.consume(num_messages=1000, timeout=1.0):
        if m.error():
            raise SystemExit(f"consume failed: {m.error()}")
        got += 1
print(f"{time.time() - start:.3f}")
c.close()
PY
}

line() { # what seconds bytes-per-record
    python3 -c "s=$2; print(f'$1: {$RECORDS/s:,.0f} records/s, {$RECORDS*$3/s/1e6:,.1f} MB/s ({s:.2f} s)')"
}

for round in $(seq 1 "$RUNS"); do
    stamp="$(date +%s%N)"
    echo "== round $round (load average $(cut -d' ' -f1-3 /proc/loadavg))"
    for ab in a b; do
        topic="bench-funnel-$stamp-$ab"
        create_topic "$topic"
        produce_pipeline "produce-$stamp-$ab" "$topic"
        secs="$(run_funnel "produce-$stamp-$ab")"
        read -r size py_secs < <(
            create_topic "bench-python-$stamp-$ab"
            python_produce "$topic" "bench-python-$stamp-$ab"
        )
        line "produce funnel ($ab)" "$secs" "$size"
        line "produce python ($ab)" "$py_secs" "$size"
        if [ "${ONLY:-}" = produce ]; then
            continue
        fi
        consume_pipeline "consume-$stamp-$ab" "$topic"
        secs="$(run_funnel "consume-$stamp-$ab")"
        py_secs="$(python_consume "$topic")"
        line "consume funnel ($ab)" "$secs" "$size"
        line "consume python ($ab)" "$py_secs" "$size"
    done
done
