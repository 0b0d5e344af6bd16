"""The plugin in rfc4740 mode against a fake KSR and scripted Diameter peers: replies, return
codes, and hostile or broken answers that must end in a clean 500, never an exception."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from diameter.message import Message
from fake_ksr import FakeKSR

from kamailio_auth_diameter.kamailio import cfgfile, plugin
from kamailio_auth_diameter.kamailio.plugin import AuthDiameter
from kamailio_auth_diameter.settings import SettingsError
from kamailio_auth_diameter.wire import base, sip_app
from kamailio_auth_diameter.wire.base import Identity
from kamailio_auth_diameter.wire.digest_avps import DigestHa1
from tests.fake_peer import SILENT, FakePeer
from tests.tlsca import make_pki

SERVER = Identity("aaa.example.com", "example.com")
CRED = 'Digest username="alice", realm="example.com", nonce="n1", uri="sip:example.com", response="r"'


@pytest.fixture
def peer() -> Iterator[FakePeer]:
    p = FakePeer()
    yield p
    p.stop()


def build(ksr: FakeKSR, values: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AuthDiameter:
    lines = [f'auth_diameter.{k} = {v!r} desc ""'.replace("'", '"') for k, v in values.items()]
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text("#!KAMAILIO\n" + "\n".join(lines) + "\nrequest_route {\n}\n")
    monkeypatch.setattr(cfgfile, "read_own_command_line", lambda: ["kamailio", "-f", str(cfg), "-DD"])
    ksr.cfg = dict(values)
    p = plugin.create(ksr)
    p.child_init(1)
    return p


@pytest.fixture
def make(peer: FakePeer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def factory(**extra: object) -> tuple[AuthDiameter, FakeKSR]:
        ksr = FakeKSR()
        values: dict[str, object] = {
            "protocol": "rfc4740",
            "peers": f"127.0.0.1:{peer.port}",
            "origin_host": "kamailio.example.com",
            "answer_timeout": 500,
            **extra,
        }
        return build(ksr, values, tmp_path, monkeypatch), ksr

    return factory


def maa(code: int, challenge: sip_app.DigestChallenge | None = None):
    def answer(msg: Message) -> bytes:
        return sip_app.encode_maa(
            base.decode_lean(msg.as_bytes()), SERVER, sip_app.MultimediaAuthAnswer(code, challenge)
        )

    return answer


def register(p: AuthDiameter, ksr: FakeKSR, credentials: str | None = None) -> int:
    ksr.request(
        "REGISTER", "sip:example.com", tu="sip:alice@example.com", authorization=[credentials] if credentials else None
    )
    return p.diameter_www_authorize(None, "example.com")


def test_challenge_then_success(make, peer: FakePeer) -> None:
    peer.behaviour = maa(2008, sip_app.DigestChallenge("example.com", "abc"))
    p, ksr = make()
    assert register(p, ksr) == -5
    assert ksr.replies == [(401, "Unauthorized")]
    assert ksr.reply_headers == [
        'WWW-Authenticate: Digest realm="example.com", nonce="abc", algorithm=MD5, qop="auth"\r\n'
    ]
    peer.behaviour = maa(2006)
    assert register(p, ksr, CRED) == 1 and ksr.replies == []
    cer = peer.cers[0]
    assert cer.identity.origin_host == "w1.kamailio.example.com" and cer.identity.origin_realm == "example.com"


def test_a_server_handing_over_ha1s_to_this_flow_a_proxy_is_a_logged_500(make, peer: FakePeer) -> None:
    """The proxy is in the server's --ha1-peer but runs rfc4740 (the server checks): its
    Flow B challenge is not forwarded, and the operator is told which setting to fix."""
    ha1 = DigestHa1("MD5", "0" * 32, "example.com", "auth")

    def flow_b(msg: Message) -> bytes:
        answer = sip_app.MultimediaAuthAnswer(2008, sip_app.DigestChallenge("example.com", "abc"), ha1s=(ha1,))
        return sip_app.encode_maa(base.decode_lean(msg.as_bytes()), SERVER, answer)

    peer.behaviour = flow_b
    p, ksr = make()
    assert register(p, ksr) == -5
    assert ksr.replies == [(500, "Server Internal Error")]
    assert any("Flow B" in line and "--ha1-peer" in line for line in ksr.errors)


@pytest.mark.parametrize("code", [4001, 5003, 5032, 5033])
def test_refusals_get_403(make, peer: FakePeer, code: int) -> None:
    peer.behaviour = maa(code)
    p, ksr = make()
    assert register(p, ksr, CRED) == -5 and ksr.replies == [(403, "Forbidden")]


def without_result_code(msg: Message) -> bytes:
    good = base.decode(maa(2006)(msg))
    return base.encode(good.header, [a for a in good.avps if a.code != base.AVP_RESULT_CODE])


@pytest.mark.parametrize(
    "behaviour",
    [
        maa(5012),
        maa(3002),
        maa(2008),  # a challenge code without a challenge
        maa(2008, sip_app.DigestChallenge("example.com", 'x", stale=true, injected="')),
        maa(1001, sip_app.DigestChallenge("example.com", "n\r\nX-Injected: 1")),
        without_result_code,
        lambda m: b"\x01\x00\x00\x14" + b"\xff" * 16,
        lambda m: SILENT,
    ],
    ids=["5012", "3002", "no-challenge", "quote-injection", "crlf-injection", "no-result-code", "garbage", "silent"],
)
def test_broken_or_hostile_answers_get_500(make, peer: FakePeer, behaviour) -> None:
    peer.behaviour = behaviour
    p, ksr = make()
    assert register(p, ksr, CRED) == -5
    assert ksr.replies == [(500, "Server Internal Error")] and ksr.reply_headers == []
    assert ksr.errors  # and it says why


def test_incomplete_credentials_get_400(make, peer: FakePeer) -> None:
    p, ksr = make()
    assert register(p, ksr, 'Digest username="alice", realm="example.com", nonce="n"') == 0
    assert ksr.replies == [(400, "Bad Request")] and peer.requests() == []


def test_group_check_with_sar(make, peer: FakePeer) -> None:
    def saa(msg: Message) -> bytes:
        req = sip_app.decode_sar(base.decode_lean(msg.as_bytes()))
        groups = ["voicemail"] if req.user_name == "alice" else []
        answer = sip_app.ServerAssignmentAnswer(2001, (sip_app.groups_user_data(groups),))
        return sip_app.encode_saa(base.decode_lean(msg.as_bytes()), SERVER, answer)

    peer.behaviour = saa
    p, ksr = make()
    ksr.request("INVITE", "sip:voicemail@example.com", fu="sip:alice@example.com")
    assert p.diameter_is_user_in(None, "From,voicemail") == 1
    ksr.request("INVITE", "sip:voicemail@example.com", fu="sip:bob@example.com")
    assert p.diameter_is_user_in(None, "From,voicemail") == -1
    sar = peer.requests(sip_app.CMD_SERVER_ASSIGNMENT)
    assert len(sar) == 2 and ksr.replies == []


def test_unusable_tls_file_stops_start_up(peer: FakePeer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {"protocol": "rfc4740", "use_tls": 1, "tls_ca_file": str(tmp_path / "missing.pem")}
    with pytest.raises(SettingsError, match=r"auth_diameter\.tls_ca_file: cannot load"):
        build(FakeKSR(), values, tmp_path, monkeypatch)


def test_peer_text_in_the_log_is_escaped(make, peer: FakePeer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A peer's Error-Message reaches the log escaped, on one line: it could forge log
    lines or drive a terminal (it went in raw)."""
    real = base.encode_cea

    def hostile_cea(msg: Message, caps: base.Capabilities, code: int) -> bytes:
        return real(msg, caps, code, "no\nJan 1 kamailio: auth ok for admin\x1b[2J")

    monkeypatch.setattr("tests.fake_peer.base.encode_cea", hostile_cea)
    peer.cea_result = base.RESULT_UNKNOWN_PEER
    p, ksr = make()
    assert register(p, ksr) == -5
    line = next(e for e in ksr.errors if "3010" in e)
    assert "no\\x0aJan 1 kamailio: auth ok for admin\\x1b[2J" in line
    assert line.count("\n") == 1 and "\x1b" not in line


@pytest.mark.parametrize(("mode", "refused"), [(0o644, True), (0o640, False), (0o600, False)])
def test_a_key_file_anyone_may_read_stops_start_up(
    peer: FakePeer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int, refused: bool
) -> None:
    """Our TLS key is a secret: readable by every user of the machine it stops Kamailio
    naming the setting; readable by its group it is used with a warning."""
    pki = make_pki(tmp_path / "pki")
    pki.client_key.chmod(mode)
    values = {
        "protocol": "rfc4740",
        "peers": f"127.0.0.1:{peer.port}",
        "use_tls": 1,
        "tls_ca_file": str(pki.ca_cert),
        "tls_cert_file": str(pki.client_cert),
        "tls_key_file": str(pki.client_key),
    }
    ksr = FakeKSR()
    if refused:
        with pytest.raises(SettingsError, match=r"auth_diameter\.tls_key_file .* chmod 600"):
            build(ksr, values, tmp_path, monkeypatch)
        return
    build(ksr, values, tmp_path, monkeypatch)
    assert bool(ksr.warnings) is (mode == 0o640)
    assert all("tls_key_file" in w and "its group" in w for w in ksr.warnings)


@pytest.mark.parametrize(
    ("values", "asked"),
    [
        ({"protocol": "rfc4740"}, True),
        ({"protocol": "rfc4740", "origin_host": "sip1.example.com"}, False),
        ({"protocol": "legacy"}, False),
    ],
)
def test_the_host_name_is_found_at_start_up_only_when_it_names_us(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, values: dict[str, object], asked: bool
) -> None:
    """getfqdn asks DNS without a bound: done once before Kamailio forks, bounded, and not
    at all when nothing needs it, never inside a request."""
    calls: list[float] = []
    monkeypatch.setattr(plugin, "local_fqdn", lambda timeout: calls.append(timeout) or "h.example.com")
    build(FakeKSR(), values, tmp_path, monkeypatch)
    assert calls == ([plugin.FQDN_WAIT] if asked else [])
