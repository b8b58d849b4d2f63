#!/usr/bin/env python3
"""A small RabbitMQ client loop (pika), the baseline for bench/rabbitmq.sh.

    rabbitmq_client.py pub URL QUEUE N PAYLOAD [WINDOW]
        publishes N persistent messages (the file PAYLOAD as body) to the default
        exchange with publisher confirms, at most WINDOW (default 1000) unconfirmed;
        the time runs from connecting to the last confirm.
    rabbitmq_client.py sub URL QUEUE N [PREFETCH]
        consumes N messages with manual acks (one `multiple` ack per 1000), prefetch
        PREFETCH (default 3048, Funnel's default window); from connecting to the Nth.
    rabbitmq_client.py rm URL QUEUE...
        deletes the queues.

Queues are declared durable, as the rabbitmq connector declares them by default.
"""
import sys
import time

import pika


def report(what, n, t0, t1):
    s = t1 - t0
    print(f"{what}: {n:,} messages in {s:.2f} s = {n / s:,.0f} records/s = {n * 1000 / s / 1e6:.1f} MB/s")


def pub(url, queue, n, payload, window=1000):
    body = open(payload, "rb").read()
    props = pika.BasicProperties(delivery_mode=2, content_type="application/octet-stream")
    st = {"sent": 0, "done": 0, "pending": set(), "t0": time.time(), "t1": None, "err": None}

    def publish_more(ch):
        while st["sent"] < n and len(st["pending"]) < window:
            ch.basic_publish("", queue, body, props)
            st["sent"] += 1
            st["pending"].add(st["sent"])

    def on_confirm(ch, frame):
        m = frame.method
        if isinstance(m, pika.spec.Basic.Nack):
            st["err"] = f"broker nacked delivery tag {m.delivery_tag}"
            conn.close()
            return
        if m.multiple:
            done = {t for t in st["pending"] if t <= m.delivery_tag}
        else:
            done = {m.delivery_tag} & st["pending"]
        st["pending"] -= done
        st["done"] += len(done)
        if st["done"] >= n:
            st["t1"] = time.time()
            conn.close()
            return
        publish_more(ch)

    def on_channel(ch):
        ch.queue_declare(
            queue,
            durable=True,
            callback=lambda _: ch.confirm_delivery(
                lambda frame: on_confirm(ch, frame), callback=lambda _: publish_more(ch)
            ),
        )

    def on_open_error(c, e):
        st["err"] = f"cannot connect: {e}"
        c.ioloop.stop()

    conn = pika.SelectConnection(
        pika.URLParameters(url),
        on_open_callback=lambda c: c.channel(on_open_callback=on_channel),
        on_open_error_callback=on_open_error,
        on_close_callback=lambda c, reason: c.ioloop.stop(),
    )
    conn.ioloop.start()
    if st["err"] or st["t1"] is None:
        sys.exit(f"pub: {st['err'] or 'connection closed early'} ({st['done']} confirmed)")
    report("pika publish (confirms, persistent)", n, st["t0"], st["t1"])


def sub(url, queue, n, prefetch=3048):
    t0 = time.time()
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.queue_declare(queue, durable=True)
    ch.basic_qos(prefetch_count=prefetch)
    count = 0
    for method, _props, _body in ch.consume(queue, auto_ack=False):
        count += 1
        if count % 1000 == 0 or count >= n:
            ch.basic_ack(method.delivery_tag, multiple=True)
        if count >= n:
            break
    t1 = time.time()
    ch.cancel()
    conn.close()
    report("pika consume (manual acks)", n, t0, t1)


def rm(url, queues):
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    for q in queues:
        ch.queue_delete(q)
    conn.close()


if __name__ == "__main__":
    cmd, url, *rest = sys.argv[1:]
    if cmd == "pub":
        pub(url, rest[0], int(rest[1]), rest[2], *(int(x) for x in rest[3:]))
    elif cmd == "sub":
        sub(url, rest[0], int(rest[1]), *(int(x) for x in rest[2:]))
    elif cmd == "rm":
        rm(url, rest)
    else:
        sys.exit(__doc__)
