"""The plain-client side of bench/http.sh's destination run: posts N records in
requests of B, each body a JSON array of B OpenCDC-like records of a 1 KB payload
(base64, as Funnel's http destination sends them with batch.format json), one
request after the other over one keep-alive connection (http.client), and prints the
rate. Standard library only.

    python3 bench/http_client.py PORT N B PAYLOAD-FILE
"""

import base64
import http.client
import json
import sys
import time

port, n, b, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
payload = base64.b64encode(open(path, "rb").read()).decode()


def record(i):
    return {
        "position": base64.b64encode(str(i).encode()).decode(),
        "operation": "create",
        "metadata": {"opencdc.readAt": str(time.time_ns())},
        "key": None,
        "payload": {"before": None, "after": payload},
    }


bodies = [
    json.dumps([record(i) for i in range(start, min(start + b, n))]).encode()
    for start in range(0, n, b)
]
total = sum(len(body) for body in bodies)
conn = http.client.HTTPConnection("127.0.0.1", port)
start = time.time()
for body in bodies:
    conn.request("POST", "/in", body=body, headers={"content-type": "application/json"})
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        sys.exit(f"status {response.status}")
s = time.time() - start
print(
    f"python http.client -> sink: {n:,} records in {len(bodies)} requests, "
    f"{total / 1e6:.1f} MB in {s:.2f} s = {n / s:,.0f} records/s, "
    f"{len(bodies) / s:,.0f} requests/s, {total / s / 1e6:.1f} MB/s"
)
