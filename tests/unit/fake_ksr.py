"""Test doubles for the Kamailio side: a recording KSR and a threaded legacy (DISC-like) server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

from kamailio_auth_diameter.wire import legacy

CFG_PREFIX = "$sel(cfg_get.auth_diameter."


class _PV:
    def __init__(self, ksr: FakeKSR) -> None:
        self._ksr = ksr

    def get(self, name: str) -> Any:
        ksr = self._ksr
        ksr.calls.append(("pv.get", name))
        if ksr.raise_in is not None and "pv" in ksr.raise_in:
            raise RuntimeError("pv.get exploded")
        if name.startswith(CFG_PREFIX) and name.endswith(")"):
            return ksr.cfg.get(name[len(CFG_PREFIX) : -1])  # None when not declared
        if name.startswith("$hdrc(") and name.endswith(")"):
            return len(ksr.headers.get(name[6:-1], []))
        return ksr.pvs.get(name)

    def sets(self, name: str, value: str) -> int:
        ksr = self._ksr
        ksr.calls.append(("pv.sets", name, value))
        if ksr.raise_in is not None and "pv" in ksr.raise_in:
            raise RuntimeError("pv.sets exploded")
        ksr.pvs[name] = value
        return 1


class _Hdr:
    def __init__(self, ksr: FakeKSR) -> None:
        self._ksr = ksr

    def get_idx(self, name: str, idx: int) -> str | None:
        ksr = self._ksr
        ksr.calls.append(("hdr.get_idx", name, idx))
        if ksr.raise_in is not None and "hdr" in ksr.raise_in:
            raise RuntimeError("hdr.get_idx exploded")
        values = ksr.headers.get(name, [])
        return values[idx] if 0 <= idx < len(values) else None

    def append_to_reply(self, text: str) -> int:
        ksr = self._ksr
        ksr.calls.append(("hdr.append_to_reply", text))
        if ksr.raise_in is not None and "append" in ksr.raise_in:
            raise RuntimeError("append_to_reply exploded")
        ksr.reply_headers.append(text)
        return 1


class _SL:
    def __init__(self, ksr: FakeKSR) -> None:
        self._ksr = ksr

    def send_reply(self, code: int, reason: str) -> int:
        ksr = self._ksr
        ksr.calls.append(("sl.send_reply", code, reason))
        if ksr.raise_in is not None and "sl" in ksr.raise_in:
            raise RuntimeError("send_reply exploded")
        ksr.replies.append((code, reason))
        return 1


class _Statistics:
    """KSR.statistics: update_stat adds to ``ksr.stats``, or returns -1 for a name outside
    ``ksr.declared`` (when that is not None), as Kamailio does for an undeclared counter."""

    def __init__(self, ksr: FakeKSR) -> None:
        self._ksr = ksr

    def update_stat(self, name: str, n: int) -> int:
        ksr = self._ksr
        ksr.calls.append(("statistics.update_stat", name, n))
        if ksr.declared is not None and name not in ksr.declared:
            return -1
        ksr.stats[name] = ksr.stats.get(name, 0) + n
        return 1


class _Htable:
    """KSR.htable over ``ksr.tables`` ({(table, key): value}), with htable's return codes;
    tables outside ``ksr.table_names`` do not exist. No expiry: tests do not wait."""

    def __init__(self, ksr: FakeKSR) -> None:
        self._ksr = ksr

    def _known(self, table: str) -> bool:
        return table in self._ksr.table_names

    def _set(self, call: str, table: str, key: str, value: object, ok: int) -> int:
        self._ksr.calls.append((call, table, key))
        if not self._known(table):
            return -1
        self._ksr.tables[(table, key)] = value
        return ok

    def sht_setxi(self, table: str, key: str, value: int, expire: int) -> int:
        return self._set("htable.sht_setxi", table, key, value, 0)  # 0 on success, as htable's

    def sht_setxs(self, table: str, key: str, value: str, expire: int) -> int:
        return self._set("htable.sht_setxs", table, key, value, 1)

    def sht_get(self, table: str, key: str) -> object:
        self._ksr.calls.append(("htable.sht_get", table, key))
        return self._ksr.tables.get((table, key))

    def sht_rm(self, table: str, key: str) -> int:
        self._ksr.calls.append(("htable.sht_rm", table, key))
        self._ksr.tables.pop((table, key), None)
        return 1

    def sht_inc(self, table: str, key: str) -> int:
        self._ksr.calls.append(("htable.sht_inc", table, key))
        value = self._ksr.tables.get((table, key))
        if not isinstance(value, int):
            return -255
        self._ksr.tables[(table, key)] = value + 1
        return value + 1

    def sht_lock(self, table: str, key: str) -> int:
        return 1

    def sht_unlock(self, table: str, key: str) -> int:
        return 1


class FakeKSR:
    """The parts of app_python3's KSR the plugin uses, recording every call.

    ``raise_in`` names the KSR areas ("pv", "hdr", "append", "sl", "log") that raise.
    """

    def __init__(self, cfg: dict[str, object] | None = None) -> None:
        self.cfg: dict[str, object] = dict(cfg or {})
        self.pvs: dict[str, object] = {}
        self.headers: dict[str, list[str]] = {}
        self.calls: list[tuple[object, ...]] = []
        self.replies: list[tuple[int, str]] = []
        self.reply_headers: list[str] = []
        self.errors: list[str] = []
        self.infos: list[str] = []
        self.warnings: list[str] = []
        self.raise_in: set[str] | None = None
        self.stats: dict[str, int] = {}  # the counters of group script
        self.declared: set[str] | None = None  # the counters the cfg declares; None: any
        self.statistics = _Statistics(self)
        self.tables: dict[tuple[str, str], object] = {}  # htable items
        self.table_names = {"authdia_nc", "authdia_ha1"}  # the htables the cfg declares
        self.htable = _Htable(self)
        self.pv = _PV(self)
        self.hdr = _Hdr(self)
        self.sl = _SL(self)

    def err(self, text: str) -> None:
        if self.raise_in is not None and "log" in self.raise_in:
            raise RuntimeError("err exploded")
        self.errors.append(text)

    def info(self, text: str) -> None:
        if self.raise_in is not None and "log" in self.raise_in:
            raise RuntimeError("info exploded")
        self.infos.append(text)

    def warn(self, text: str) -> None:
        if self.raise_in is not None and "log" in self.raise_in:
            raise RuntimeError("warn exploded")
        self.warnings.append(text)

    def request(
        self,
        method: str = "INVITE",
        ruri: str | None = "sip:bob@example.com:5080",
        fu: str | None = "sip:alice@example.com",
        tu: str | None = "sip:bob@example.com",
        mi: int = 1,
        authorization: list[str] | None = None,
        proxy_authorization: list[str] | None = None,
    ) -> None:
        """Make the KSR describe a new SIP request."""
        self.pvs = {"$rm": method, "$ru": ruri, "$fu": fu, "$tu": tu, "$mi": mi}
        self.headers = {}
        if authorization is not None:
            self.headers["Authorization"] = list(authorization)
        if proxy_authorization is not None:
            self.headers["Proxy-Authorization"] = list(proxy_authorization)
        self.replies.clear()
        self.reply_headers.clear()


def read_frame(conn: socket.socket) -> bytes | None:
    """One length-framed message from a blocking socket, None on EOF."""
    head = b""
    while len(head) < 4:
        chunk = conn.recv(4 - len(head))
        if not chunk:
            return None
        head += chunk
    length = int.from_bytes(head[1:4], "big")
    body = b""
    while len(head) + len(body) < length:
        chunk = conn.recv(length - len(head) - len(body))
        if not chunk:
            return None
        body += chunk
    return head + body


Responder = Callable[[legacy.Message], "bytes | None"]


def answer_for(
    request: legacy.Message, result_code: int, challenge: bytes | None = None, service: bytes | None = None
) -> bytes:
    """A DISC-shaped answer echoing the request's SIP-MSGID and Service-Type."""
    msgid = request.first(legacy.AVP_SIP_MSGID)
    assert msgid is not None
    return legacy.encode_answer(
        service=service if service is not None else (request.first(legacy.AVP_SERVICE_TYPE) or b"6")[:1],
        msgid=msgid,
        result_code=result_code,
        session_id=b"fake;1;1",
        origin_host=b"fake.test",
        origin_realm=b"test",
        challenge=challenge,
    )


class FakeLegacyServer:
    """A threaded TCP server on 127.0.0.1:<OS port> that decodes requests and answers via ``responder``.

    ``responder`` returns the bytes to send back, or None to send nothing.
    """

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.requests: list[bytes] = []
        self.accepted = 0
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port: int = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._stopped = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while (raw := read_frame(conn)) is not None:
                with self._lock:
                    self.requests.append(raw)
                out = self.responder(legacy.decode_message(raw))
                if out:
                    conn.sendall(out)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        except OSError:
            pass
        self._sock.close()
        with self._lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
        self._thread.join(2)

    def __enter__(self) -> FakeLegacyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
