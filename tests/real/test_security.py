"""The holes an outside attacker found, closed, proven with a real Kamailio running
kamailio.cfg.example, real SIP clients (sipp, and a raw UDP client for requests a UA
would never send) and the reference server, in both wire formats:

* identity spoofing: a valid user's own credentials on a request from, or a REGISTER
  of, another user;
* replayed credentials: the same nonce and nonce-count again, no qop, a malformed
  nonce-count, a captured INVITE replayed to another Request-URI;
* password guessing: the server's per-user throttle, and the example cfg's per-source
  ban (pike and htable) for sources other than Kamailio's own host.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import (
    PYTHON,
    Kamailio,
    ReferenceServer,
    SipClient,
    SipReply,
    example_kamailio,
    free_port,
    large_sip_messages,
    sipp,
)
from tests.real.conftest import make_server
from tests.real.test_faults import set_cfg
from tests.real.test_rfc4740 import rfc4740_defines

pytestmark = pytest.mark.kamailio

MALLORY = ("mallory", "example.com", "mallorypw")
CHALLENGE = re.compile(r'realm="([^"]+)", nonce="([^"]+)"')


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceServer]:
    s = make_server(tmp_path_factory.mktemp("server"))
    s.add_user(*MALLORY)
    s.diameter_port = free_port()
    s.extra = ("--origin-host", "aaa.example.com", "--origin-realm", "example.com")
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module", params=["legacy", "rfc4740"])
def kamailio(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, server) -> Iterator[Kamailio]:
    defines = {"AUTH_FAILURES_MAX": "4", "PIKE_DENSITY": "40"}
    if request.param == "rfc4740":
        assert server.diameter_port is not None
        defines |= rfc4740_defines(server.diameter_port)
    k = example_kamailio(tmp_path_factory.mktemp(f"kamailio-{request.param}"), server.port, **defines)
    k.start()
    yield k
    k.stop()
    k.assert_no_crash()


# --- a UA that computes its own digests ------------------------------------------------


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def authorization(
    challenge: str,
    method: str,
    uri: str,
    user: str = "alice",
    password: str = "secret",
    nc: str | None = "00000001",
) -> str:
    """The credentials a UA sends for a challenge header's realm and nonce (qop=auth,
    or the RFC 2069 form when ``nc`` is None)."""
    m = CHALLENGE.search(challenge)
    assert m, challenge
    realm, nonce = m.groups()
    ha1 = md5(f"{user}:{realm}:{password}")
    ha2 = md5(f"{method}:{uri}")
    base = f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}"'
    if nc is None:
        return base + f', response="{md5(f"{ha1}:{nonce}:{ha2}")}"'
    response = md5(f"{ha1}:{nonce}:{nc}:c0ffee:auth:{ha2}")
    return base + f', response="{response}", algorithm=MD5, qop=auth, nc={nc}, cnonce="c0ffee"'


class Ua(SipClient):
    """A UA for the requests of these tests, with credentials of its own making."""

    def ask(
        self,
        method: str,
        ruri: str,
        header: str | None = None,
        user: str = "alice",
        timeout: float = 5.0,
        from_user: str | None = None,
    ) -> SipReply:
        """``user`` is the identity: To for REGISTER (and From, unless ``from_user``), From otherwise."""
        name = "Authorization" if method == "REGISTER" else "Proxy-Authorization"
        to = f"sip:{user}@example.com" if method == "REGISTER" else ruri
        return self.request(
            method,
            ruri,
            from_uri=f"sip:{from_user or user}@example.com",
            to_uri=to,
            headers=(f"{name}: {header}",) if header else (),
            timeout=timeout,
        )

    def challenge(self, method: str = "REGISTER", ruri: str = "sip:example.com", user: str = "alice") -> str:
        reply = self.ask(method, ruri, user=user)
        assert reply.code in (401, 407), reply
        header = reply.header("WWW-Authenticate") or reply.header("Proxy-Authenticate")
        assert header is not None
        return header


def stale(reply: SipReply) -> bool:
    header = reply.header("WWW-Authenticate") or reply.header("Proxy-Authenticate") or ""
    return reply.code in (401, 407) and "stale=true" in header


# --- identity ---------------------------------------------------------------------------


def test_register_of_another_user_with_own_credentials_is_403(kamailio: Kamailio, tmp_path: Path) -> None:
    """mallory registers alice's address with mallory's own password: 403 (was 200:
    mallory would then receive alice's calls)."""
    r = sipp("register_forbidden", kamailio.sip_port, run_dir=tmp_path, user="alice", auth_user="mallory",
             password="mallorypw")  # fmt: skip
    assert r.returncode == 0, r.output
    assert "digest username 'mallory' is not the To user 'alice'@example.com" in kamailio.log()


def test_call_as_another_user_with_own_credentials_is_403(kamailio: Kamailio, tmp_path: Path) -> None:
    """An INVITE From alice with mallory's credentials: 403 (was 200, and the example's
    From group check then said alice may call voicemail)."""
    for service in ("carol", "voicemail"):
        r = sipp("invite_auth_403", kamailio.sip_port, run_dir=tmp_path / service, user="alice",
                 auth_user="mallory", password="mallorypw", service=service)  # fmt: skip
        assert r.returncode == 0, r.output
    assert "digest username 'mallory' is not the From user 'alice'@example.com" in kamailio.log()


def test_group_check_is_on_the_credentials(kamailio: Kamailio, tmp_path: Path) -> None:
    """Even with identity_check off (the C module's behaviour), the example's group check
    asks about the authenticated user, not the From header the caller wrote."""
    set_cfg(kamailio, identity_check=0)
    try:
        ua = Ua(kamailio.sip_port)
        ruri = "sip:voicemail@example.com"
        reply = ua.ask("INVITE", ruri, authorization(ua.challenge("INVITE", ruri), "INVITE", ruri, *MALLORY[::2]))
        assert (reply.code, reply.reason) == (403, "Not in group voicemail")
        r = sipp("invite_auth_200", kamailio.sip_port, run_dir=tmp_path, auth_user="alice", password="secret",
                 service="voicemail")  # fmt: skip
        assert r.returncode == 0, r.output
    finally:
        set_cfg(kamailio, identity_check=1)


def test_server_refuses_another_users_register_itself(server: ReferenceServer, tmp_path: Path) -> None:
    """RFC 4740: the server checks User-Name against SIP-AOR for REGISTER (5033, a 403),
    so a proxy with identity_check = 0 still cannot be used to hijack a registration."""
    assert server.diameter_port is not None
    k = example_kamailio(tmp_path / "k", server.port, children=1, IDENTITY_CHECK="0",
                         **rfc4740_defines(server.diameter_port))  # fmt: skip
    k.start()
    try:
        r = sipp("register_forbidden", k.sip_port, run_dir=tmp_path, user="alice", auth_user="mallory",
                 password="mallorypw")  # fmt: skip
        assert r.returncode == 0, r.output
        assert "digest username" not in k.log()  # the proxy let it through: the server refused it
    finally:
        k.stop()
        k.assert_no_crash()


def test_a_mixed_case_domain_registers(kamailio: Kamailio, tmp_path: Path) -> None:
    """A UA registering as alice@Example.COM is challenged in realm example.com, the realm
    her HA1 was computed over, so the right password works (it was refused: 403)."""
    r = sipp("register_auth", kamailio.sip_port, run_dir=tmp_path, domain="Example.COM", auth_user="alice",
             password="secret")  # fmt: skip
    assert r.returncode == 0, r.output


# --- replay ------------------------------------------------------------------------------


def test_replayed_register_is_stale(kamailio: Kamailio) -> None:
    """The same credentials twice: 200, then 401 with stale=true (it was 200 every time);
    the next nonce-count is accepted."""
    ua = Ua(kamailio.sip_port)
    challenge = ua.challenge()
    first = authorization(challenge, "REGISTER", "sip:example.com")
    assert ua.ask("REGISTER", "sip:example.com", first).code == 200
    assert stale(ua.ask("REGISTER", "sip:example.com", first))
    second = authorization(challenge, "REGISTER", "sip:example.com", nc="00000002")
    assert ua.ask("REGISTER", "sip:example.com", second).code == 200


@pytest.mark.parametrize("nc", [None, "zzzz", "00000000"])
def test_responses_without_a_usable_nonce_count_are_challenged(kamailio: Kamailio, nc: str | None) -> None:
    """qop="auth" was offered: a response without it (no nonce-count, so no replay guard)
    or with a malformed count gets a fresh challenge (it was 200)."""
    ua = Ua(kamailio.sip_port)
    reply = ua.ask("REGISTER", "sip:example.com", authorization(ua.challenge(), "REGISTER", "sip:example.com", nc=nc))
    assert reply.code == 401 and not stale(reply)


def test_captured_invite_sent_to_another_number_is_refused(kamailio: Kamailio) -> None:
    """alice's INVITE to carol, intercepted before it arrived and sent to dave with the
    same credentials: a fresh challenge, as the digest uri is not the Request-URI (it
    connected the call). Sent again as it was, to carol, it is a replay."""
    ua = Ua(kamailio.sip_port)
    carol = "sip:carol@example.com"
    header = authorization(ua.challenge("INVITE", carol), "INVITE", carol)
    reply = ua.ask("INVITE", "sip:dave@example.com", header)
    assert reply.code == 407 and not stale(reply)
    assert ua.ask("INVITE", carol, header).code == 200
    assert stale(ua.ask("INVITE", carol, header))


# --- guessing ---------------------------------------------------------------------------


def test_password_guessing_is_throttled_per_user(kamailio: Kamailio) -> None:
    """After 5 wrong passwords in a row the user's responses go unchecked for a doubling
    delay: even the right password is refused until it ends (before: 300 guesses in
    0.06 s, then the right one got in). From Kamailio's own host, so no ban applies."""
    ua = Ua(kamailio.sip_port)
    for _ in range(6):
        wrong = authorization(ua.challenge(user="bob"), "REGISTER", "sip:example.com", user="bob", password="guess")
        assert ua.ask("REGISTER", "sip:example.com", wrong, user="bob").code in (401, 403)
    right = authorization(ua.challenge(user="bob"), "REGISTER", "sip:example.com", user="bob", password="bobpw")
    assert ua.ask("REGISTER", "sip:example.com", right, user="bob").code in (401, 403)
    time.sleep(1.1)
    right = authorization(ua.challenge(user="bob"), "REGISTER", "sip:example.com", user="bob", password="bobpw")
    assert ua.ask("REGISTER", "sip:example.com", right, user="bob").code == 200


def test_a_source_with_refused_credentials_is_banned(kamailio: Kamailio) -> None:
    """The example cfg bans a source after AUTH_FAILURES_MAX (4 here) refused credentials:
    its requests are then dropped, while other sources are served. First challenges do
    not count."""
    guesser = Ua(kamailio.sip_port, source="127.0.0.2")
    for _ in range(3):
        guesser.challenge(user="eve")
    for _ in range(4):  # eve is nobody: every guess is refused (and no user's throttle is touched)
        wrong = authorization(guesser.challenge(user="eve"), "REGISTER", "sip:example.com", user="eve")
        assert guesser.ask("REGISTER", "sip:example.com", wrong, user="eve").code == 403
    time.sleep(0.2)  # the worker records the ban after the 403 went out: another may take the next request first
    with pytest.raises(TimeoutError):
        guesser.ask("REGISTER", "sip:example.com", user="eve", timeout=1.0)
    assert "banning 127.0.0.2: 4 refused credentials" in kamailio.log()
    other = Ua(kamailio.sip_port, source="127.0.0.3")
    assert other.ask("OPTIONS", "sip:example.com").code == 407


def test_a_flooding_source_is_banned(kamailio: Kamailio) -> None:
    flooder = Ua(kamailio.sip_port, source="127.0.0.4")
    with pytest.raises(TimeoutError):
        for _ in range(100):
            flooder.ask("OPTIONS", "sip:example.com", timeout=1.0)
    assert "banning 127.0.0.4: request flood" in kamailio.log()
    assert SipClient(kamailio.sip_port).options().code == 407  # Kamailio's own host is never banned


# --- one large request ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["legacy", "rfc4740"])
def test_one_huge_request_fails_alone(server: ReferenceServer, tmp_path: Path, mode: str) -> None:
    """A 30,000-character user name (in To and in the credentials, as identity_check
    wants) makes an MAR of ~90 KB, past the 64 KiB frame limit: that request gets 400,
    and the same worker serves the next ones at once. Before, the server closed on the
    oversized frame, the peer was marked failed, the re-send failed the second peer,
    and every request of that worker got 500 for the back-off."""
    defines = rfc4740_defines(server.diameter_port) if mode == "rfc4740" else {}
    k = example_kamailio(tmp_path / "k", server.port, children=1, **defines, **large_sip_messages())
    k.start()
    try:
        user = "u" * 30_000
        reply = Ua(k.sip_port).ask(
            "REGISTER",
            "sip:example.com",
            f'Digest username="{user}", realm="example.com", nonce="n", uri="sip:example.com", response="r"',
            user=user,
            from_user="alice",
        )
        assert reply.code == (400 if mode == "rfc4740" else 401), reply
        r = sipp("register_auth", k.sip_port, run_dir=tmp_path / "after", auth_user="alice", password="secret",
                 calls=5)  # fmt: skip
        assert r.returncode == 0, r.output
        if mode == "rfc4740":
            assert "more than the 65536 a frame may" in k.log()
    finally:
        k.stop()
        k.assert_no_crash()


def test_server_options_hide_unknown_users_and_turn_throttling_off(tmp_path: Path) -> None:
    """--hide-unknown-users: an unknown user is re-challenged like a wrong password (401,
    not 403); --throttle-max 0: no block after many wrong passwords."""
    s = make_server(tmp_path)
    s.extra = ("--hide-unknown-users", "--throttle-max", "0")
    s.start()
    k = example_kamailio(tmp_path / "k", s.port, children=1)
    try:
        k.start()
        ua = Ua(k.sip_port)
        nobody = authorization(ua.challenge(user="nobody"), "REGISTER", "sip:example.com", user="nobody")
        reply = ua.ask("REGISTER", "sip:example.com", nobody, user="nobody")
        assert reply.code == 401 and not stale(reply)
        for _ in range(8):
            wrong = authorization(ua.challenge(), "REGISTER", "sip:example.com", password="guess")
            assert ua.ask("REGISTER", "sip:example.com", wrong).code == 401
        right = authorization(ua.challenge(), "REGISTER", "sip:example.com")
        assert ua.ask("REGISTER", "sip:example.com", right).code == 200
    finally:
        k.stop()
        s.stop()
    assert "throttling" not in s.log_path.read_text()


def test_a_database_anyone_may_read_is_refused(tmp_path: Path) -> None:
    """It holds HA1s (password equivalents) and the nonce secret: a new one is 0600 (it
    was -rw-r--r--), one every user may read stops the server, one its group may read is
    a warning in its log."""
    s = make_server(tmp_path)
    db = Path(s.db)
    assert db.stat().st_mode & 0o777 == 0o600
    db.chmod(0o644)
    r = subprocess.run(
        [PYTHON, "-m", "kamailio_auth_diameter.server", "serve", "--db", str(db), "--legacy-listen",
         f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert r.returncode == 1
    assert f"accessible to every user of this machine (mode 0644) and holds secrets: chmod 600 {db}" in r.stderr
    db.chmod(0o640)
    s.start()
    s.stop()
    assert "accessible to its group (mode 0640)" in s.log_path.read_text()
