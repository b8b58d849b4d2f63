"""tansu 0.6 (SQLite storage) stalls under produce + consume when messages carry headers.

Minimal reproduction without Funnel, with librdkafka through Python's confluent-kafka:
20,000 messages of ~360 bytes over 3 partitions at up to 2,000/s (acks=all,
idempotent, zstd, linger 5 ms), read at the same time by a group member that commits
every 200 messages. Prints the delivered and read counts every second.

    python bench/tansu_headers_stall.py localhost:PORT            # 5 headers per message
    python bench/tansu_headers_stall.py localhost:PORT --no-headers

Against a fresh private tansu (2-core machine under load, 2026-12-05): without headers
every message is delivered and read in 16-17 s; with five headers per message (what
the kafka destination writes: the record's metadata) reads stop at ~4,900 for 30 s and
more, deliveries plateau for seconds at a time, and ListOffsets requests time out.
The same run against tansu's memory storage (`--storage-engine memory://tansu/`)
delivers and reads all 20,000 in 14 s: the stall is the SQLite storage's.
"""

import sys
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

servers = sys.argv[1]
headers = "--no-headers" not in sys.argv
topic = "stall-" + uuid.uuid4().hex[:6]
admin = AdminClient({"bootstrap.servers": servers})
for f in admin.create_topics([NewTopic(topic, 3, 1)]).values():
    f.result()
N = 20000
acked = [0]
read = [0]


def produce():
    p = Producer({"bootstrap.servers": servers, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, "compression.type": "zstd"})

    def report(err, _msg):
        if err is None:
            acked[0] += 1

    for i in range(N):
        extra = [("opencdc.readAt", str(time.time_ns())),
                 ("conduit.source.connector.id", "p1:src"),
                 ("opencdc.version", "v1"),
                 ("conduit.source.plugin.name", "builtin:generator"),
                 ("conduit.source.plugin.version", "v0.1.0")] if headers else None
        p.produce(topic, key=str(i), value=("x" * 350 + str(i)).encode(), headers=extra,
                  on_delivery=report)
        p.poll(0)
        time.sleep(0.0005)
    p.flush(60)


def consume():
    c = Consumer({"bootstrap.servers": servers, "group.id": "g-" + topic,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    n = 0
    while read[0] < N:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        read[0] += 1
        n += 1
        if n % 200 == 0:
            c.commit(asynchronous=True)


threading.Thread(target=produce, daemon=True).start()
threading.Thread(target=consume, daemon=True).start()
for s in range(90):
    time.sleep(1)
    print(s + 1, "delivered", acked[0], "read", read[0], flush=True)
    if read[0] >= N:
        break
