"""Verify in the proxy end to end: real Kamailio (kamailio.cfg.example, 4 workers), the
reference server handing HA1s to the proxy (RFC 4740 Flow B, 3GPP Cx), sipp and a UA of
our own for what sipp cannot do (SHA-256, replays, forged uris, stale nonces)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kamailio_auth_diameter import digest
from kamailio_auth_diameter.nonce import NonceFactory
from tests.harness import Kamailio, ReferenceServer, SipReply, example_kamailio, free_port
from tests.real.conftest import make_server, run
from tests.real.test_faults import set_cfg
from tests.real.test_security import Ua
from tests.real.test_statistics import kamcmd_stats

pytestmark = pytest.mark.kamailio

ORIGIN = "kamailio.example.com"
MODES = ["rfc4740-ha1", "cx"]


def defines(mode: str, port: int, secret: Path, **more: str) -> dict[str, str]:
    return {
        "DIAMETER_PROTOCOL": f'"{mode}"',
        "DIAMETER_PEERS": f'"127.0.0.1:{port}"',
        "ORIGIN_HOST": f'"{ORIGIN}"',
        "NONCE_SECRET_FILE": f'"{secret}"',
        "DIGEST_ALGORITHMS": '"SHA-256,MD5"',
        **more,
    }


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secret") / "nonce.key"
    path.write_text(os.urandom(32).hex())
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceServer]:
    s = make_server(tmp_path_factory.mktemp("server"))
    s.diameter_port = free_port()
    s.extra = ("--origin-host", "aaa.example.com", "--origin-realm", "example.com", "-v",
               "--ha1-peer", f"*.{ORIGIN}")  # fmt: skip
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module", params=MODES)
def kamailio(request, tmp_path_factory: pytest.TempPathFactory, server: ReferenceServer, secret: Path):
    assert server.diameter_port is not None
    k = example_kamailio(
        tmp_path_factory.mktemp("kamailio"),
        server.port,
        children=4,
        **defines(request.param, server.diameter_port, secret),
    )
    k.start()
    yield k
    k.stop()
    k.assert_no_crash()


def mar_count(server: ReferenceServer) -> int:
    """MARs (RFC 4740: 286, Cx: 303) the server answered so far (it logs each with -v)."""
    return len(re.findall(r"command (?:286|303) from", server.log_path.read_text(errors="replace")))


def challenges(reply: SipReply) -> list[dict[str, str]]:
    name = "WWW-Authenticate" if reply.code == 401 else "Proxy-Authenticate"
    return [dict(re.findall(r'(\w+)="?([^",]*)"?', v)) for n, v in reply.headers if n.lower() == name.lower()]


def answer(
    challenge: dict[str, str],
    password: str = "secret",
    *,
    nc: int = 1,
    method: str = "REGISTER",
    uri: str = "sip:example.com",
    user: str = "alice",
) -> str:
    algorithm = challenge.get("algorithm", "MD5")
    d = digest.DigestInput(method, uri, challenge["nonce"], algorithm, "auth", f"{nc:08x}", "c0ffee")
    response = digest.response(digest.ha1(user, challenge["realm"], password, algorithm), d)
    return (
        f'Digest username="{user}", realm="{challenge["realm"]}", nonce="{challenge["nonce"]}", uri="{uri}", '
        f'response="{response}", algorithm={algorithm}, qop=auth, nc={nc:08x}, cnonce="c0ffee"'
    )


def first(k: Kamailio, method: str = "REGISTER", ruri: str = "sip:example.com") -> list[dict[str, str]]:
    reply = Ua(k.sip_port).ask(method, ruri)
    assert reply.code == (401 if method == "REGISTER" else 407), reply
    return challenges(reply)


def test_one_challenge_per_algorithm_sha256_first(kamailio: Kamailio) -> None:
    found = first(kamailio)
    assert [c["algorithm"] for c in found] == ["SHA-256", "MD5"]
    assert all(c["qop"] == "auth" and c["realm"] == "example.com" and len(c["nonce"]) == 48 for c in found)


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_register_and_invite_pass_in_each_algorithm(kamailio: Kamailio, algorithm: str) -> None:
    ua = Ua(kamailio.sip_port)
    c = next(c for c in first(kamailio) if c["algorithm"] == algorithm)
    assert ua.ask("REGISTER", "sip:example.com", answer(c)).code == 200
    c = next(c for c in first(kamailio, "INVITE", "sip:carol@example.com") if c["algorithm"] == algorithm)
    cred = answer(c, method="INVITE", uri="sip:carol@example.com")
    assert ua.ask("INVITE", "sip:carol@example.com", cred).code == 200


def test_sipp_register_and_invite_with_md5_only(kamailio: Kamailio, tmp_path: Path) -> None:
    """sipp 3.6 takes the first challenge and knows only MD5: the operator offers MD5 alone
    (here changed at run time, which the workers pick up within 0.1 s)."""
    set_cfg(kamailio, digest_algorithms="MD5")
    try:
        assert [c["algorithm"] for c in first(kamailio)] == ["MD5"]
        run(kamailio, tmp_path, "register_auth", auth_user="alice", password="secret", calls=3)
        run(kamailio, tmp_path, "invite_auth_200", auth_user="alice", password="secret", service="carol")
    finally:
        set_cfg(kamailio, digest_algorithms="SHA-256,MD5")


def test_wrong_password_is_rechallenged_and_unknown_user_is_403(kamailio: Kamailio, tmp_path: Path) -> None:
    ua = Ua(kamailio.sip_port)
    reply = ua.ask("REGISTER", "sip:example.com", answer(first(kamailio)[0], "guess"))
    assert reply.code == 401 and "stale" not in reply.header("WWW-Authenticate")
    c = challenges(ua.ask("REGISTER", "sip:example.com", user="mallory"))[1]
    assert ua.ask("REGISTER", "sip:example.com", answer(c, "x", user="mallory"), user="mallory").code == 403


def test_a_replay_is_refused_on_every_worker(kamailio: Kamailio) -> None:
    """Each request comes from a new source port: the kernel spreads them over the 4 UDP workers."""
    cred = answer(first(kamailio)[1])
    codes = [Ua(kamailio.sip_port).ask("REGISTER", "sip:example.com", cred).code for _ in range(12)]
    assert codes == [200] + [401] * 11
    assert "stale=true" in Ua(kamailio.sip_port).ask("REGISTER", "sip:example.com", cred).header("WWW-Authenticate")


def test_a_changed_uri_is_refused(kamailio: Kamailio) -> None:
    """A captured INVITE to carol, replayed to dave with the same credentials and a higher nc."""
    c = first(kamailio, "INVITE", "sip:carol@example.com")[1]
    ua = Ua(kamailio.sip_port)
    assert (
        ua.ask("INVITE", "sip:carol@example.com", answer(c, method="INVITE", uri="sip:carol@example.com")).code == 200
    )
    forged = answer(c, nc=2, method="INVITE", uri="sip:carol@example.com")
    assert ua.ask("INVITE", "sip:dave@example.com", forged).code == 407


def test_an_expired_nonce_gets_stale_and_the_retry_passes(kamailio: Kamailio, secret: Path) -> None:
    old = NonceFactory(secret.read_text().strip().encode(), 10, clock=lambda: time.time() - 60).make("example.com")
    ua = Ua(kamailio.sip_port)
    reply = ua.ask("REGISTER", "sip:example.com", answer({"realm": "example.com", "nonce": old, "algorithm": "MD5"}))
    assert reply.code == 401 and "stale=true" in (reply.header("WWW-Authenticate") or "")
    retry = answer(challenges(reply)[1])
    assert ua.ask("REGISTER", "sip:example.com", retry).code == 200


def test_a_repeat_register_within_the_ttl_sends_no_diameter_message(
    kamailio: Kamailio, server: ReferenceServer
) -> None:
    ua = Ua(kamailio.sip_port)

    def bob_registers() -> int:
        cred = answer(first(kamailio)[0], "bobpw", user="bob")
        return ua.ask("REGISTER", "sip:example.com", cred, user="bob").code

    before = mar_count(server)
    assert bob_registers() == 200
    assert mar_count(server) == before + 1  # bob was not cached: one fetch
    for _ in range(5):
        assert bob_registers() == 200
    assert mar_count(server) == before + 1


def test_a_password_change_takes_effect_on_the_next_register(kamailio: Kamailio, server: ReferenceServer) -> None:
    ua = Ua(kamailio.sip_port)
    assert ua.ask("REGISTER", "sip:example.com", answer(first(kamailio)[0])).code == 200
    server.add_user("alice", "example.com", "changed")
    try:
        assert ua.ask("REGISTER", "sip:example.com", answer(first(kamailio)[0], "changed")).code == 200
        assert ua.ask("REGISTER", "sip:example.com", answer(first(kamailio)[0])).code == 401
    finally:
        server.add_user("alice", "example.com", "secret")


def test_a_second_kamailio_with_the_same_secret_accepts_the_first_ones_nonce(
    kamailio: Kamailio, server: ReferenceServer, secret: Path, tmp_path: Path
) -> None:
    assert server.diameter_port is not None
    mode = kamailio.defines["DIAMETER_PROTOCOL"].strip('"')
    other = example_kamailio(tmp_path, server.port, **defines(mode, server.diameter_port, secret))
    other.start()
    try:
        c = first(kamailio)[0]
        assert Ua(other.sip_port).ask("REGISTER", "sip:example.com", answer(c)).code == 200
    finally:
        other.stop()
        other.assert_no_crash()


def test_a_response_accepted_before_a_restart_is_refused_after_it(
    kamailio: Kamailio, server: ReferenceServer, secret: Path, tmp_path: Path
) -> None:
    """The replay guard's counts live in shared memory, which a restart empties; the
    nonces this Kamailio made before it must not become usable once more."""
    assert server.diameter_port is not None
    mode = kamailio.defines["DIAMETER_PROTOCOL"].strip('"')
    k = example_kamailio(tmp_path, server.port, **defines(mode, server.diameter_port, secret))
    k.start()
    try:
        cred = answer(first(k)[0])
        assert Ua(k.sip_port).ask("REGISTER", "sip:example.com", cred).code == 200
        k.stop()
        time.sleep(1.1)  # nonces carry whole seconds: the restart is in a later second than the nonce
        k.start()
        replay = Ua(k.sip_port).ask("REGISTER", "sip:example.com", cred)
        assert replay.code == 401 and "stale=true" in (replay.header("WWW-Authenticate") or ""), replay
        assert Ua(k.sip_port).ask("REGISTER", "sip:example.com", answer(challenges(replay)[0])).code == 200
    finally:
        k.stop()
        k.assert_no_crash()


def test_baresip_registers(kamailio: Kamailio, tmp_path: Path) -> None:
    """A real UA: baresip registers as alice. baresip 1.0 (Debian 12) gives up on a SHA-256
    challenge that comes first, so this runs with the default, MD5 only."""
    set_cfg(kamailio, digest_algorithms="MD5")
    conf = tmp_path / "baresip"
    conf.mkdir()
    (conf / "config").write_text(
        "poll_method epoll\nsip_listen 127.0.0.1:0\nmodule_path /usr/lib/baresip/modules\n"
        "module g711.so\nmodule account.so\nnet_interface 127.0.0.1\n"
    )
    (conf / "accounts").write_text(
        f'<sip:alice@example.com>;auth_pass=secret;outbound="sip:127.0.0.1:{kamailio.sip_port}";regint=3600\n'
    )
    try:
        out = subprocess.run(
            ["baresip", "-f", str(conf), "-t", "3", "-s"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    finally:
        set_cfg(kamailio, digest_algorithms="SHA-256,MD5")
    assert re.search(r"SIP/2.0 401 Unauthorized", out), out[-3000:]
    assert re.search(r"SIP/2.0 200 OK", out) and "alice@example.com" in out, out[-3000:]


def test_cache_hits_fetches_and_replays_are_counted_in_kamailio_statistics(kamailio: Kamailio) -> None:
    """Three checked responses (the second and third against a cached HA1, the third a
    replay) as read back with kamcmd."""
    before = kamcmd_stats(kamailio)
    ua = Ua(kamailio.sip_port)
    assert ua.ask("REGISTER", "sip:example.com", answer(first(kamailio)[1])).code == 200
    cred = answer(first(kamailio)[1])
    assert ua.ask("REGISTER", "sip:example.com", cred).code == 200
    assert ua.ask("REGISTER", "sip:example.com", cred).code == 401
    after = kamcmd_stats(kamailio)
    delta = {name: after[name] - before[name] for name in after}
    assert delta["dia_ha1_cache_hits"] + delta["dia_ha1_fetches"] == 3 and delta["dia_ha1_cache_hits"] >= 2
    assert (delta["dia_replays"], delta["dia_ha1_refetches"], delta["dia_auth_stale"]) == (1, 0, 1)
