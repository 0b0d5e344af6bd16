"""A scripted legacy Diameter peer for fault injection: each request gets what ``mode`` says."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

from kamailio_auth_diameter.wire import legacy


def avp(code: int, data: bytes, flags: int = 0x40) -> bytes:
    return struct.pack(">IB", code, flags) + (8 + len(data)).to_bytes(3, "big") + data + b"\0" * (-len(data) % 4)


def message(*avps: bytes, version: int = 1) -> bytes:
    body = b"".join(avps)
    return bytes([version]) + (20 + len(body)).to_bytes(3, "big") + b"\x00\x00\x01\x09" + b"\0" * 12 + body


def answer_for(request: bytes, result: int | None, challenge: bytes | None = None, msgid: bytes | None = None) -> bytes:
    req = legacy.decode_message(request)
    avps = [avp(404, req.first(404)[:1]), avp(406, msgid or req.first(406), 0)]
    if result is not None:
        avps.append(avp(268, result.to_bytes(4, "big")))
    if challenge is not None:
        avps.append(avp(402, challenge))
    return message(*avps)


CHALLENGE = b'Digest realm="example.com", nonce="0123456789abcdef", qop="auth"'


class FakeDiameter:
    """Threaded TCP peer on 127.0.0.1; set ``mode`` to change how it answers."""

    def __init__(self) -> None:
        self.mode = "challenge"
        self.requests: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        with contextlib.suppress(OSError), conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while len(buf) >= 4 and len(buf) >= int.from_bytes(buf[1:4], "big"):
                    n = int.from_bytes(buf[1:4], "big")
                    request, buf = buf[:n], buf[n:]
                    self.requests.append(request)
                    if not self._reply(conn, request):
                        return

    def _reply(self, conn: socket.socket, request: bytes) -> bool:
        mode = self.mode
        if mode == "challenge":
            conn.sendall(answer_for(request, 4001, CHALLENGE + b"\r\n"))
        elif mode == "challenge-no-crlf":
            conn.sendall(answer_for(request, 4001, CHALLENGE))
        elif mode == "challenge-injection":
            conn.sendall(answer_for(request, 4001, CHALLENGE + b"\r\nX-Injected: yes\r\n"))
        elif mode == "challenge-escape":  # a terminal escape: clears the screen of whoever reads the reply
            conn.sendall(answer_for(request, 4001, CHALLENGE[:-1] + b'\x1b[2J"\r\n'))
        elif mode == "no-result-code":
            conn.sendall(answer_for(request, None))
        elif mode == "success":
            conn.sendall(answer_for(request, 2001))
        elif mode == "unknown-code":
            conn.sendall(answer_for(request, 3002))
        elif mode == "split":
            raw = answer_for(request, 4001, CHALLENGE + b"\r\n")
            conn.sendall(raw[:7])
            time.sleep(0.3)
            conn.sendall(raw[7:])
        elif mode == "stale-then-right":
            stale = answer_for(request, 2001, msgid=b"\xff\xff\xff\x7f")
            conn.sendall(stale + answer_for(request, 4001, CHALLENGE + b"\r\n"))
        elif mode == "stale-only":
            conn.sendall(answer_for(request, 2001, msgid=b"\xff\xff\xff\x7f"))
        elif mode == "bad-version":
            conn.sendall(message(avp(268, b"\0\0\x07\xd1"), version=2))
        elif mode == "huge-length":
            conn.sendall(b"\x01\x01\x11\x70" + b"\0" * 60)
        elif mode == "garbage-avp":
            conn.sendall(message(b"\0\0\x01\x0c\x40\xff\xff\xff"))
        elif mode == "close":
            return False
        elif mode == "silent":
            pass
        elif mode == "silent-once":  # this request gets no answer, the following ones a challenge
            self.mode = "challenge"
        else:
            raise AssertionError(f"unknown mode {mode}")
        return True

    def close(self) -> None:
        self._stop = True
        self._sock.close()
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.close()
