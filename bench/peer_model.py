"""What the per-worker peer model costs, measured: the numbers behind README's choice.

1. A local agent (one process per host holding the Diameter connections, workers
   talking to it over a UNIX socket) adds one local round trip to every exchange.
   Its least possible cost is an echo: a blocking client and an asyncio agent that
   sends each frame straight back. We measure the CPU both sides spend per round
   trip, with the same 300-byte frames a MAR has.
2. The per-worker model instead pays, after an idle period long enough for the
   server to give up on the connection, one reconnect (TCP connect, CER/CEA, and
   the short wait for a reopening peer's DWRs) inside the next request. We
   measure that request against an ordinary one, with the plugin's own client
   (transport/client.py) and the reference server.

    .venv/bin/python bench/peer_model.py
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kamailio_auth_diameter import settings  # noqa: E402
from kamailio_auth_diameter.transport.client import DiameterClient, LocalPeer  # noqa: E402
from kamailio_auth_diameter.wire import sip_app  # noqa: E402
from kamailio_auth_diameter.wire.base import Identity  # noqa: E402
from tests.harness import ReferenceServer, free_port  # noqa: E402

FRAME = b"\x01" + (300).to_bytes(3, "big") + b"\0" * 296
ROUNDS = 20000


def _echo_agent(path: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)

    async def main() -> None:
        server = await asyncio.start_unix_server(handle, path)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def agent_hop() -> tuple[float, float]:
    """(client CPU us, agent CPU us) per local round trip."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "agent.sock")
        pid = os.fork()
        if pid == 0:
            _echo_agent(path)
            os._exit(0)
        try:
            while not os.path.exists(path):
                time.sleep(0.01)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            for _ in range(1000):
                sock.sendall(FRAME)
                sock.recv(65536)
            agent0 = _cpu_of(pid)
            c0 = time.process_time()
            for _ in range(ROUNDS):
                sock.sendall(FRAME)
                got = sock.recv(65536)
                while len(got) < len(FRAME):
                    got += sock.recv(65536)
            client = (time.process_time() - c0) / ROUNDS * 1e6
            agent = (_cpu_of(pid) - agent0) / ROUNDS * 1e6
            sock.close()
        finally:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    return client, agent


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reconnect_cost() -> tuple[float, float]:
    """(median ms of an ordinary MAR exchange, median ms of one that first reconnects)."""
    with tempfile.TemporaryDirectory() as tmp:
        server = ReferenceServer(db=Path(tmp) / "u.db", log_path=Path(tmp) / "s.log", diameter_port=free_port())
        server.start()
        try:
            me = Identity("w1.kamailio.example.com", "example.com")
            client = DiameterClient(LocalPeer(me, (6,), 1))
            client.configure(settings.parse({"protocol": "rfc4740", "peers": f"127.0.0.1:{server.diameter_port}"}))
            req = sip_app.MultimediaAuthRequest(
                "w1.kamailio.example.com;1;1", me.origin_host, me.origin_realm, "example.com",
                "sip:alice@example.com", "REGISTER", "alice@example.com",
            )  # fmt: skip

            def one() -> float:
                t = time.perf_counter()
                client.request(lambda h, e, r: sip_app.encode_mar(req, h, e, r), time.monotonic(), 2.0)
                return (time.perf_counter() - t) * 1000

            for _ in range(200):
                one()
            plain = [one() for _ in range(500)]
            again = []
            for _ in range(50):
                client.links[0].close(disconnect=False)  # as if the server had closed it while we idled
                again.append(one())
            return statistics.median(plain), statistics.median(again)
        finally:
            server.stop()


def main() -> int:
    client, agent = agent_hop()
    print(f"local agent, least cost per Diameter exchange: worker {client:.1f} us CPU + agent {agent:.1f} us CPU")
    print(f"  per flow (2 exchanges): {2 * (client + agent):.0f} us CPU more on the Kamailio host")
    plain, again = reconnect_cost()
    print(f"per-worker peer: an exchange takes {plain:.2f} ms; one that first reconnects {again:.2f} ms")
    print("  paid once per worker after each idle period longer than 2 x Tw (>= 12 s), within the request's deadline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
