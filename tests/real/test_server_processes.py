"""``serve --processes N``: start-up errors are reported, dead children are replaced, SIGTERM stops all."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kamailio_auth_diameter.wire import legacy
from tests.harness import PYTHON, ROOT, ReferenceServer, free_port
from tests.real.conftest import make_server


def _children(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def _wait(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _group_check(port: int, msgid: int) -> int:
    """One legacy group check on a new connection; its Result-Code."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(legacy.encode_group_request("example.com", msgid, "voicemail", b"alice"))
        data = b""
        while len(data) < 4 or len(data) < int.from_bytes(data[1:4], "big"):
            chunk = s.recv(4096)
            assert chunk, "closed without an answer"
            data += chunk
    answer = legacy.decode_answer(data)
    assert answer.msgid == msgid
    return answer.result_code


@pytest.mark.parametrize("processes", ["1", "3"])
def test_an_address_in_use_stops_the_start_with_its_name(tmp_path: Path, processes: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for option in ("--legacy-listen", "--diameter-listen"):
            other = free_port()
            listen = {"--legacy-listen": other, "--diameter-listen": other, option: port}
            r = subprocess.run(
                [PYTHON, "-m", "kamailio_auth_diameter.server", "serve", "--db", str(tmp_path / "u.db"),
                 "--processes", processes, *(f"{o}=127.0.0.1:{p}" for o, p in listen.items())],
                cwd=ROOT, capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert (r.returncode, r.stderr) == (1, f"error: {option} 127.0.0.1:{port}: Address already in use\n")


def test_a_child_that_dies_is_logged_and_replaced_with_a_back_off(tmp_path: Path) -> None:
    server: ReferenceServer = make_server(tmp_path)
    server.extra = ("--processes", "2")
    server.start()
    try:
        assert server.proc is not None
        main = server.proc.pid
        _wait("two children", lambda: len(_children(main)) == 2)
        first = _children(main)
        assert _group_check(server.port, 1) == 2001

        victim = min(first)
        killed_at = time.monotonic()
        subprocess.run(["kill", "-9", str(victim)], check=True)
        _wait("a replacement", lambda: len(_children(main)) == 2 and _children(main) != first)
        second = _children(main)
        assert time.monotonic() - killed_at >= 0.9  # not at once: a child that died young waits 1 s
        replacement = (second - first).pop()
        log = server.log_path.read_text()
        assert f"server process {victim} was killed by signal 9 (SIGKILL); starting another in 1 s" in log
        assert f"server process {replacement} started in place of the one that died" in log
        for n in range(6):  # both processes serve (SO_REUSEPORT spreads the connections)
            assert _group_check(server.port, 10 + n) == 2001

        subprocess.run(["kill", "-9", str(replacement)], check=True)  # dying young again: twice as long
        _wait("the second back-off", lambda: "starting another in 2 s" in server.log_path.read_text())

        server.proc.send_signal(signal.SIGTERM)  # also during a back-off, SIGTERM stops everything
        assert server.proc.wait(10) == 0
        assert not _children(main)
        log = server.log_path.read_text()
        assert len(re.findall(r"INFO stopped: legacy", log)) == 1  # the one child left alive stopped cleanly
        assert "Traceback" not in log
    finally:
        server.stop()
