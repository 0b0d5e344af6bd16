"""A local attacker against the reference server's listeners, for the resource-limit tests.

``python -m tests.attacker --port P [--idle N] [--partial N] [--never-reading N] --seconds S``
keeps, for S seconds or until SIGTERM, N connections of each kind open on
127.0.0.1:P, opening a new one whenever the server closes one:

* idle: connect and say nothing;
* partial: the first half of a 64 KB message, then nothing;
* never-reading: group requests as fast as the socket takes them, never reading an answer.

At the end it prints one JSON line of counters (those still 0 left out): how many
connections of each kind it opened, how many the server closed, the requests written,
and the connects that failed.
Raw non-blocking sockets, not asyncio streams: a stream would read the answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import socket
from collections import Counter

from kamailio_auth_diameter.wire import legacy
from kamailio_auth_diameter.wire.framing import MAX_MESSAGE

PARTIAL = b"\x01" + MAX_MESSAGE.to_bytes(4, "big")[1:] + b"\x80" + b"\0" * (MAX_MESSAGE // 2 - 5)
BATCH = b"".join(legacy.encode_group_request("example.com", i, "voicemail", b"mallory") for i in range(100))


async def _connect(port: int, counts: Counter) -> socket.socket | None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the answers pile up at the server, not here
    sock.setblocking(False)
    try:
        async with asyncio.timeout(2):  # not wait_for, which in 3.11 may swallow the task's cancellation
            await loop.sock_connect(sock, ("127.0.0.1", port))
    except (OSError, TimeoutError):
        sock.close()
        counts["connect_failed"] += 1
        await asyncio.sleep(0.05)
        return None
    return sock


async def _until_closed(sock: socket.socket) -> None:
    """Until the server closes the connection (nothing is ever sent to an idle or partial one)."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(OSError):
        while await loop.sock_recv(sock, 65536):
            pass


async def _hold(kind: str, port: int, counts: Counter) -> None:
    loop = asyncio.get_running_loop()
    while True:
        sock = await _connect(port, counts)
        if sock is None:
            continue
        counts[f"{kind}_opened"] += 1
        try:
            if kind == "partial":
                await loop.sock_sendall(sock, PARTIAL)
                await _until_closed(sock)
            elif kind == "idle":
                await _until_closed(sock)
            else:
                while True:
                    await loop.sock_sendall(sock, BATCH)  # does not yield while the socket takes it all
                    counts["requests_written"] += 100
                    await asyncio.sleep(0)
        except OSError:
            pass
        finally:
            sock.close()
        counts[f"{kind}_closed"] += 1
        await asyncio.sleep(0.01)


async def attack(port: int, idle: int, partial: int, never_reading: int, seconds: float) -> Counter:
    counts: Counter = Counter()
    tasks = [
        asyncio.create_task(_hold(kind, port, counts))
        for kind, n in (("idle", idle), ("partial", partial), ("never_reading", never_reading))
        for _ in range(n)
    ]
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return counts


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--idle", type=int, default=0)
    p.add_argument("--partial", type=int, default=0)
    p.add_argument("--never-reading", type=int, default=0)
    p.add_argument("--seconds", type=float, required=True)
    a = p.parse_args()
    print(json.dumps(asyncio.run(attack(a.port, a.idle, a.partial, a.never_reading, a.seconds))), flush=True)


if __name__ == "__main__":
    main()
