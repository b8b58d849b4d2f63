"""tansu 0.6 never gives a dead group member's partitions to the members left.

Minimal reproduction without Funnel, with librdkafka through Python's confluent-kafka
(any storage engine: the group coordinator is tansu-broker's, not the storage's):

    python bench/tansu_group_takeover.py localhost:PORT

Two consumer processes (A and B) join one group on a 4-partition topic (session
timeout 10 s, the eager range assignor) and split the partitions. B is killed with
SIGKILL. A Kafka broker expires B's session after 10 s, rebalances, and A owns all
four partitions. tansu 0.6.0 expires B (A's next heartbeat answers
REBALANCE_IN_PROGRESS), but A's JoinGroup finds A's member with unchanged metadata,
so the group stays "formed" at the same generation, and SyncGroup in that state
returns the assignment stored before B died (it ignores the leader's new one). A gets
its two partitions back; B's two are owned by nobody, for good. The script waits 60 s
and exits 1 when A still does not own all four.
"""

import os
import signal
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

SESSION_MS = 10000


def member(servers, topic, group):
    """A consumer that prints its assignment after every rebalance."""
    consumer = Consumer({
        "bootstrap.servers": servers,
        "group.id": group,
        "session.timeout.ms": SESSION_MS,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })

    def on_assign(_, partitions):
        print("assigned", ",".join(str(p.partition) for p in partitions), flush=True)

    consumer.subscribe([topic], on_assign=on_assign)
    while True:
        consumer.poll(0.2)


def main(servers):
    topic = "takeover-" + uuid.uuid4().hex[:6]
    group = "takeover-" + uuid.uuid4().hex[:6]
    admin = AdminClient({"bootstrap.servers": servers})
    for f in admin.create_topics([NewTopic(topic, 4, 1)]).values():
        f.result()
    producer = Producer({"bootstrap.servers": servers})
    for i in range(400):
        producer.produce(topic, key=str(i), value=str(i))
    producer.flush(30)

    def start(name):
        log = open(f"/tmp/{topic}-{name}.log", "w+")
        child = subprocess.Popen([sys.executable, __file__, "member", servers, topic, group],
                                 stdout=log, stderr=subprocess.STDOUT)
        return child, log

    def owned(log):
        log.seek(0)
        lines = [l.split()[1] if len(l.split()) > 1 else "" for l in log if l.startswith("assigned")]
        return None if not lines else [p for p in lines[-1].split(",") if p]

    def wait(what, seconds, condition):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if condition():
                print(f"{what}: yes after {seconds - (deadline - time.time()):.1f} s", flush=True)
                return True
            time.sleep(0.5)
        print(f"{what}: NO within {seconds} s", flush=True)
        return False

    a, a_log = start("a")
    b = None
    try:
        wait("A owns all 4 partitions", 60, lambda: len(owned(a_log) or []) == 4)
        b, b_log = start("b")
        if not wait("A and B split the partitions", 60,
                    lambda: len(owned(a_log) or []) + len(owned(b_log) or []) == 4
                    and owned(a_log) and owned(b_log)):
            return 2
        print(f"A owns {owned(a_log)}, B owns {owned(b_log)}; killing B (SIGKILL)", flush=True)
        os.kill(b.pid, signal.SIGKILL)
        b.wait()
        ok = wait("A owns all 4 partitions after B's session expired", 60,
                  lambda: len(owned(a_log) or []) == 4)
        a_log.seek(0)
        print("A's assignments:", " | ".join(l.strip() for l in a_log if l.startswith("assigned")))
        return 0 if ok else 1
    finally:
        for child in (a, b):
            if child and child.poll() is None:
                child.kill()


if __name__ == "__main__":
    if sys.argv[1] == "member":
        member(*sys.argv[2:5])
    else:
        sys.exit(main(sys.argv[1]))
