"""check --server against the real reference server, in each protocol the plugin speaks.

``python3 -m kamailio_auth_diameter check --server`` runs as a process of its own,
the password on its standard input (or in a file), against ``serve`` listening for
the legacy dialect and for RFC 6733 peers: a right and a wrong password, an unknown
user, SHA-256, INVITE with 407, a group member and a non-member, a server that is
down and one that never answers; and the server's log shows the exchanges came from
the identity the check printed.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import PYTHON, ROOT, ReferenceServer, free_port
from tests.real.conftest import make_server

PROTOCOLS = ["legacy", "rfc4740", "rfc4740-ha1", "cx"]
VERIFYING = ("rfc4740-ha1", "cx")
# The verifying modes' Origin-Host is one the server trusts with HA1s (--ha1-peer); an
# rfc4740 proxy is not: the server checks its responses itself (Flow A).
TRUSTED = "proxy.example.com"
ORIGIN = {"legacy": "sip.example.com", "rfc4740": "sip.example.com", "rfc4740-ha1": TRUSTED, "cx": TRUSTED}
STEP_END = re.compile(r"^    \S.* \(return -?\d\), \d+\.\d ms$")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceServer]:
    """alice (secret) in group voicemail, bob (bobpw)."""
    s = make_server(tmp_path_factory.mktemp("server"))
    s.diameter_port = free_port()
    s.extra = ("--origin-host", "aaa.example.com", "--origin-realm", "example.com", "-v", "--ha1-peer", f"*.{TRUSTED}")
    s.start()
    yield s
    s.stop()


def check(
    port: int, protocol: str, *args: str, password: str | None = "secret", user: str = "alice"
) -> subprocess.CompletedProcess[str]:
    cmd = [PYTHON, "-m", "kamailio_auth_diameter", "check", "--server", f"127.0.0.1:{port}", "--protocol", protocol]
    cmd += ["--origin-host", ORIGIN[protocol], "--user", user, "--realm", "example.com", *args]
    stdin = None if password is None else f"{password}\n"
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60)


def check_server(server: ReferenceServer, protocol: str, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    port = server.port if protocol == "legacy" else server.diameter_port
    assert port is not None
    return check(port, protocol, *args, **kw)


def verdict(r: subprocess.CompletedProcess[str]) -> str:
    return r.stdout.splitlines()[-1]


def step_ends(r: subprocess.CompletedProcess[str]) -> list[str]:
    """Each step's last line: its label, return value and time."""
    return [line for line in r.stdout.splitlines() if STEP_END.match(line)]


def server_saw(server: ReferenceServer, r: subprocess.CompletedProcess[str], protocol: str) -> bool:
    """The server's log has the check's requests: by its Origin-Host (from the check's
    first line) over Diameter, by the user authenticated in the legacy dialect."""
    log = server.log_path.read_text(errors="replace")
    if protocol == "legacy":
        return "authenticated 'alice@example.com'" in log
    m = re.search(r"Origin-Host (\S+),", r.stdout)
    assert m is not None, r.stdout
    return f"CER from {m.group(1)} " in log


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_right_password(server: ReferenceServer, protocol: str) -> None:
    r = check_server(server, protocol)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("check --server 127.0.0.1:") and f": protocol {protocol}" in lines[0]
    assert lines[1] == "[1] REGISTER sip:example.com  From/To: <sip:alice@example.com>  no credentials"
    assert "    reply: 401 Unauthorized" in lines
    assert any(line.startswith("[2] REGISTER sip:example.com") and "Authorization: Digest" in line for line in lines)
    assert [line.split(" (")[0].strip() for line in step_ends(r)] == ["challenged", "authorized"]
    assert verdict(r) == "verdict: authenticated: the password is right (exit 0)"
    assert server_saw(server, r, protocol)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_first_request_asks_the_server_unless_the_proxy_verifies(server: ReferenceServer, protocol: str) -> None:
    """Step 1's Diameter line: the verifying modes challenge with their own nonce."""
    lines = check_server(server, protocol).stdout.splitlines()
    first, second = (lines[i + 1] for i, line in enumerate(lines) if line.startswith("["))
    if protocol in VERIFYING:
        assert first == "    Diameter: no message"
        assert re.fullmatch(r"    Diameter: connected, answer in \d+\.\d ms", second)
        assert "    proxy: HA1 asked of the server" in lines  # a new process: nothing cached
    else:
        assert re.fullmatch(r"    Diameter: connected, answer in \d+\.\d ms", first)
        assert re.fullmatch(r"    Diameter: answer in \d+\.\d ms", second)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_wrong_password(server: ReferenceServer, protocol: str) -> None:
    """Challenged again (exit 1); RFC 4740's 4001 is final, a 403 (exit 3)."""
    r = check_server(server, protocol, user="bob", password="wrong")
    if protocol == "rfc4740":
        assert r.returncode == 3, r.stdout
        assert "    reply: 403 Forbidden" in r.stdout.splitlines()
    else:
        assert r.returncode == 1, r.stdout
        assert verdict(r) == "verdict: refused: a wrong password (challenged again) (exit 1)"
        assert r.stdout.count("    reply: 401 Unauthorized") == 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_unknown_user(server: ReferenceServer, protocol: str) -> None:
    r = check_server(server, protocol, user="carol")
    assert r.returncode == 3, r.stdout
    assert "    reply: 403 Forbidden" in r.stdout.splitlines()
    assert verdict(r).startswith("verdict: refused with 403: the server does not know the user")
    if protocol in VERIFYING:
        assert "    note: the server does not know 'carol' in 'example.com'" in r.stdout.splitlines()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sha_256(server: ReferenceServer, protocol: str) -> None:
    """The verifying modes offer SHA-256 when told to, and the server has alice's SHA-256
    HA1; the legacy and RFC 4740 Flow A challenges offer MD5 only."""
    r = check_server(server, protocol, "--algorithm", "SHA-256", "--set", "digest_algorithms=SHA-256,MD5")
    if protocol in VERIFYING:
        assert r.returncode == 0, r.stdout
        assert "algorithm=SHA-256, cnonce=" in r.stdout
        assert len(re.search(r'response="(\w+)"', r.stdout).group(1)) == 64
    else:
        assert r.returncode == 5, r.stdout
        assert verdict(r) == "verdict: no challenge offers SHA-256 (offered: MD5) (exit 5)"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_invite_is_challenged_with_407(server: ReferenceServer, protocol: str) -> None:
    r = check_server(server, protocol, "--method", "INVITE", "--uri", "sip:bob@example.com")
    assert r.returncode == 0, r.stdout
    lines = r.stdout.splitlines()
    assert lines[1] == "[1] INVITE sip:bob@example.com  From/To: <sip:alice@example.com>  no credentials"
    assert "    reply: 407 Proxy Authentication Required" in lines
    assert any("Proxy-Authorization: Digest" in line and 'uri="sip:bob@example.com"' in line for line in lines)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("group", "code"), [("voicemail", 0), ("admins", 1)])
def test_a_group_check(server: ReferenceServer, protocol: str, group: str, code: int) -> None:
    """No password asked; Cx has no group membership: the plugin's log line and exit 5."""
    r = check_server(server, protocol, "--group", group, password=None)
    lines = r.stdout.splitlines()
    assert lines[1] == f'[1] diameter_is_user_in("From,{group}")  From: <sip:alice@example.com>  User-Name: alice'
    if protocol == "cx":
        assert r.returncode == 5, r.stdout
        assert "    log: diameter_is_user_in: the cx mode has no group membership (Cx has no message for it)" in lines
        return
    assert r.returncode == code, r.stdout
    assert re.fullmatch(r"    Diameter: connected, answer in \d+\.\d ms", lines[2])
    if code == 0:
        assert verdict(r) == "verdict: alice is in group voicemail (exit 0)"
    else:
        assert verdict(r) == "verdict: alice is not in group admins (or the server does not know it) (exit 1)"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_server_that_is_down(protocol: str) -> None:
    r = check(free_port(), protocol)
    assert r.returncode == 4, r.stdout
    assert "    Diameter: connect failed, server down, exchange failed" in r.stdout.splitlines()
    assert re.search(r"    log: Diameter exchange failed: .*Connection refused", r.stdout)
    assert "    reply: 500 Server Internal Error" in r.stdout.splitlines()
    assert verdict(r) == "verdict: no answer from the server (exit 4)"
    # the verifying modes challenge by themselves; only the response needs the server
    assert [line.split(" (")[0].strip() for line in step_ends(r)] == (
        ["challenged", "error"] if protocol in VERIFYING else ["error"]
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_server_that_never_answers(protocol: str) -> None:
    """A peer that accepts the connection and says nothing: answer_timeout, then exit 4."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        r = check(silent.getsockname()[1], protocol, "--set", "answer_timeout=300")
    assert r.returncode == 4, r.stdout
    assert verdict(r) == "verdict: no answer from the server (exit 4)"
    assert re.search(r"    Diameter: .*exchange failed", r.stdout)


def test_the_password_from_a_file(server: ReferenceServer, tmp_path: Path) -> None:
    path = tmp_path / "alice.pw"
    path.write_text("secret\n")
    path.chmod(0o600)
    r = check_server(server, "cx", "--password-file", str(path), password=None)
    assert r.returncode == 0, r.stdout + r.stderr
    path.chmod(0o644)
    r = check_server(server, "cx", "--password-file", str(path), password=None)
    assert r.returncode == 2
    assert r.stdout == "" and "is accessible to every user of this machine" in r.stderr
