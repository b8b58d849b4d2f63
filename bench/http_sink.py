"""A minimal HTTP/1.1 sink for bench/http.sh: answers every request 200 with an
empty body at once (keep-alive), counting requests and body bytes; prints the counts
when stopped (SIGTERM/SIGINT). One asyncio thread, standard library only.

    python3 bench/http_sink.py PORT
"""

import asyncio
import signal
import sys

requests = 0
body_bytes = 0
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"


async def serve(reader, writer):
    global requests, body_bytes
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            requests += 1
            body_bytes += length
            writer.write(OK)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port):
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    print(f"sink: {requests} requests, {body_bytes} body bytes", flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
