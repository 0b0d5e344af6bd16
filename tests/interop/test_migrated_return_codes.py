"""The C module's return values survive migrate-cfg: the same requests, the same replies and values.

One cfg calls each C function as a statement and then replies 299 with ``$rc`` in the
reason phrase, so every reply a request gets (the function's own, then the script's)
shows what the function returned: -5 lets the script go on after a 401/403/500, 0
stops it after a 400 (no 299), 1 is authorized. Kamailio runs it with the C module
and, migrated by ``migrate-cfg``, with the plugin, side by side against one reference
server, and each request must get the same list of replies from both.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kamailio_auth_diameter import digest
from tests.harness import ROOT, Kamailio, ReferenceServer

pytestmark = pytest.mark.kamailio
DOMAIN = "example.com"
C_CFG = """#!KAMAILIO
#!ifndef SIP_PORT
#!define SIP_PORT 5060
#!endif
#!ifndef CTL_SOCKET
#!define CTL_SOCKET "unix:/var/run/kamailio/kamailio_ctl"
#!endif
debug=2
log_stderror=no
children=1
auto_aliases=no
listen=udp:127.0.0.1:SIP_PORT
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "ctl.so"
loadmodule "auth_diameter.so"
modparam("ctl", "binrpc", CTL_SOCKET)
modparam("auth_diameter", "diameter_client_host", "127.0.0.1")
modparam("auth_diameter", "diameter_client_port", DIAMETER_PORT)

request_route {
	if (method == "ACK") {
		exit;
	}
	if (method == "INVITE") {
		diameter_proxy_authorize("$fd");
		$var(authorize) = $rc;
		if ($var(authorize) != 1) {
			sl_send_reply("299", "rc $var(authorize)");
			exit;
		}
		diameter_is_user_in("From", "voicemail");
		sl_send_reply("299", "rc 1 $rc");
		exit;
	}
	if (method == "SUBSCRIBE") {
		diameter_www_authorize("other.example");
		sl_send_reply("299", "rc $rc");
		exit;
	}
	if (method == "OPTIONS") {
		diameter_is_user_in("Credentials", "voicemail");
		sl_send_reply("299", "rc $rc");
		exit;
	}
	diameter_www_authorize("$td");
	sl_send_reply("299", "rc $rc");
}
"""


def replies(port: int, request: str, quiet: float = 0.3) -> list[tuple[int, str, str]]:
    """Every reply to one request: (code, reason, auth challenge header or "") until ``quiet`` s of silence."""
    out = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.sendto(request.replace("LPORT", str(s.getsockname()[1])).encode(), ("127.0.0.1", port))
        s.settimeout(5.0)
        while True:
            try:
                raw = s.recv(65536).decode("utf-8", "replace")
            except TimeoutError:
                return out
            s.settimeout(quiet)
            m = re.match(r"SIP/2\.0 (\d{3}) (.*?)\r\n", raw)
            assert m is not None, raw
            challenge = re.search(r"^(?:WWW|Proxy)-Authenticate: (.*?)\r$", raw, re.M)
            out.append((int(m.group(1)), m.group(2), challenge.group(1) if challenge else ""))


def request(method: str, user: str, ruri: str, auth: str = "") -> str:
    header = "Proxy-Authorization" if method == "INVITE" else "Authorization"
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:LPORT;branch=z9hG4bK{uuid.uuid4().hex[:16]}",
        f"From: <sip:{user}@{DOMAIN}>;tag={uuid.uuid4().hex[:8]}",
        f"To: <{ruri if method != 'REGISTER' else f'sip:{user}@{DOMAIN}'}>",
        f"Call-ID: {uuid.uuid4().hex}@127.0.0.1",
        f"CSeq: 1 {method}",
        "Max-Forwards: 70",
        *([f"{header}: {auth}"] if auth else []),
        "Content-Length: 0",
    ]
    return "\r\n".join(lines) + "\r\n\r\n"


def answer(challenge: str, method: str, ruri: str, user: str, password: str, realm: str = DOMAIN) -> str:
    """The Digest credentials of ``user@example.com`` for a challenge (qop=auth)."""
    nonce = re.search(r'nonce="([^"]*)"', challenge).group(1)
    username = f"{user}@{DOMAIN}"  # the 5.6.3 C module aborts on a username without a domain (B1)
    d = digest.DigestInput(method=method, uri=ruri, nonce=nonce, qop="auth", nc="00000001", cnonce="0a4f113b")
    response = digest.response(digest.ha1(username, realm, password), d)
    return (
        f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{ruri}", '
        f'response="{response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="0a4f113b"'
    )


def flows(port: int) -> list[list[tuple[int, str]]]:
    """Each request's replies (code, reason); each Kamailio gets its own challenges."""
    register, invite = ("REGISTER", f"sip:{DOMAIN}"), ("INVITE", f"sip:voicemail@{DOMAIN}")
    results = []

    def send(method: str, ruri: str, user: str = "alice", auth: str = "") -> list[tuple[int, str, str]]:
        got = replies(port, request(method, user, ruri, auth))
        results.append([(code, reason) for code, reason, _ in got])
        return got

    challenge = send(*register)[0][2]
    send(*register, auth=answer(challenge, *register, "alice", "secret"))
    send(*register, auth=answer(challenge, *register, "alice", "wrong"))
    send(*register, user="mallory", auth=answer(challenge, *register, "mallory", "x"))
    send(*register, auth=answer(challenge, *register, "alice", "secret", realm="other.example"))
    send(*register, auth='Digest username="alice@example.com", realm="example.com", uri="sip:x", nonce="abc')
    send("CANCEL", f"sip:{DOMAIN}")
    subscribe = ("SUBSCRIBE", f"sip:{DOMAIN}")
    send(*subscribe, auth=answer(challenge, *subscribe, "alice", "secret", realm="other.example"))
    for user, password in (("alice", "secret"), ("bob", "bobsecret")):
        challenge = send(*invite, user=user)[0][2]
        send(*invite, user=user, auth=answer(challenge, *invite, user, password))
    send("OPTIONS", f"sip:{DOMAIN}")
    return results


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceServer]:
    run_dir = tmp_path_factory.mktemp("return_codes")
    s = ReferenceServer(db=run_dir / "users.sqlite", log_path=run_dir / "server.log")
    s.add_user("alice", DOMAIN, "secret")
    s.add_user("bob", DOMAIN, "bobsecret")
    s.add_group("alice", "voicemail")
    s.start()
    yield s
    s.stop()


def test_migrated_cfg_returns_what_the_c_module_returns(server: ReferenceServer, tmp_path: Path) -> None:
    old, new = tmp_path / "c_module.cfg", tmp_path / "migrated.cfg"
    old.write_text(C_CFG)
    r = subprocess.run(
        [sys.executable, "-m", "kamailio_auth_diameter", "migrate-cfg", str(old), "-o", str(new)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    got = {}
    for name, cfg in (("c_module", old), ("plugin", new)):
        k = Kamailio(cfg=cfg, run_dir=tmp_path / name, defines={"DIAMETER_PORT": str(server.port)})
        k.start()
        try:
            got[name] = flows(k.sip_port)
        finally:
            k.stop()
        k.assert_no_crash()
    assert got["plugin"] == got["c_module"]
    assert got["c_module"] == [
        [(401, "Unauthorized"), (299, "rc -5")],
        [(299, "rc 1")],
        [(401, "Unauthorized"), (299, "rc -5")],
        [(403, "Forbidden"), (299, "rc -5")],
        [(401, "Unauthorized"), (299, "rc -5")],  # credentials for another realm than $td are not looked at
        [(400, "Bad Request")],  # 0: the script stopped
        [(299, "rc 1")],  # CANCEL: nothing to check
        [(299, "rc -5")],  # the credentials' realm is the parameter's, not the From domain: no reply
        [(407, "Proxy Authentication Required"), (299, "rc -5")],
        [(299, "rc 1 1")],
        [(407, "Proxy Authentication Required"), (299, "rc -5")],
        [(299, "rc 1 -1")],
        [(299, "rc -4")],  # who=Credentials with nothing authorized
    ]
