"""kamailio/plugin: the three cfg functions end to end, with a fake KSR and a fake legacy server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_ksr import FakeKSR, FakeLegacyServer, answer_for

from kamailio_auth_diameter.kamailio import cfgfile, config, plugin
from kamailio_auth_diameter.kamailio.plugin import AuthDiameter
from kamailio_auth_diameter.settings import SettingsError
from kamailio_auth_diameter.wire import legacy

Make = Callable[..., AuthDiameter]
CHALLENGE = b'Digest realm="example.com", nonce="0123456789abcdef", qop="auth"\r\n'
# §4.5 worked example: INVITE sip:bob@example.com:5080 from sip:alice@example.com, msg id 1
WORKED_EXAMPLE = bytes.fromhex(
    "01000078 80000109 00000001 00000000 00000000"
    "00000190 4000001c 626f62406578616d706c652e636f6d3a35303830"
    "0000011b 40000013 6578616d706c652e636f6d 00"
    "00000194 40000009 36 000000"
    "00000196 0000000c 01000000"
    "00000001 4000001a 616c696365406578616d706c652e636f6d 00 0000"
)


def cred(realm: str = "example.com", user: str = "alice") -> str:
    return f'Digest username="{user}", realm="{realm}", nonce="n", uri="sip:bob@example.com", response="r"'


class Script:
    """How the fake server answers: service '6' by ``auth``, service '8' by ``members``."""

    def __init__(self) -> None:
        self.auth: tuple[int | None, bytes | None] = (4001, CHALLENGE)
        self.members: set[tuple[bytes, bytes]] = set()
        self.raw: bytes | None = None  # when set, sent instead of a proper answer
        self.stale_first = False  # when set, a 5003 answer for another msgid goes out first

    def __call__(self, msg: legacy.Message) -> bytes | None:
        if self.raw is not None:
            return self.raw
        if self.stale_first:
            msgid = int.from_bytes(msg.first(legacy.AVP_SIP_MSGID) or b"\0\0\0\0", "little") + 1
            stale = legacy.encode_answer(
                service=b"6",
                msgid=msgid.to_bytes(4, "little"),
                result_code=5003,
                session_id=b"s",
                origin_host=b"h",
                origin_realm=b"r",
            )
            return stale + answer_for(msg, self.auth[0] or 0, self.auth[1])
        if msg.first(legacy.AVP_SERVICE_TYPE) == b"8":
            key = (msg.first(legacy.AVP_USER_NAME) or b"", msg.first(legacy.AVP_USER_GROUP) or b"")
            return answer_for(msg, 2001 if key in self.members else 4001)
        rc, challenge = self.auth
        if rc is None:  # no Result-Code at all (B2)
            return legacy.encode_message(
                [legacy._avp(404, b"6"), legacy._avp(406, msg.first(406) or b"", 0)], request=False
            )
        return answer_for(msg, rc, challenge)


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def server(script: Script) -> Iterator[FakeLegacyServer]:
    with FakeLegacyServer(script) as s:
        yield s


@pytest.fixture
def make_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Make:
    """make_text(ksr, cfg_text) -> the plugin, built by create() from that kamailio.cfg text."""

    def factory(ksr: FakeKSR, text: str) -> AuthDiameter:
        path = tmp_path / "kamailio.cfg"
        path.write_text("#!KAMAILIO\n" + text + "request_route {\n}\n")
        monkeypatch.setattr(cfgfile, "read_own_command_line", lambda: ["kamailio", "-f", str(path)])
        return plugin.create(ksr)

    return factory


def settings_for(port: int, **extra: object) -> dict[str, object]:
    values: dict[str, object] = {
        "diameter_client_host": "127.0.0.1",
        "diameter_client_port": port,
        "answer_timeout": 1000,
        "reconnect_interval": 1000,
    }
    values.update(extra)
    return values


@pytest.fixture
def every_request_rereads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings are normally re-read at most every 0.1 s; these tests change them at once."""
    monkeypatch.setattr(config, "REFRESH_INTERVAL", 0.0)


@pytest.fixture
def ksr() -> FakeKSR:
    k = FakeKSR()
    k.request()
    return k


@pytest.fixture
def p(make: Make, ksr: FakeKSR, server: FakeLegacyServer) -> AuthDiameter:
    return make(ksr, settings_for(server.port))


def sent(server: FakeLegacyServer, index: int = -1) -> legacy.Message:
    return legacy.decode_message(server.requests[index])


# --- create -----------------------------------------------------------------------


def test_create_logs_ready(p: AuthDiameter, ksr: FakeKSR) -> None:
    assert isinstance(p, AuthDiameter)
    assert any("ready" in line for line in ksr.infos)
    assert p.child_init(1) == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("diameter_client_port", 70000),
        ("diameter_client_port", 0),
        ("use_domain", 2),
        ("answer_timeout", 0),
        ("connect_timeout", 60001),
        ("reconnect_interval", -1),
        ("diameter_client_host", "bad host"),
        ("bogus_setting", 1),
    ],
)
def test_bad_setting_at_create_raises_naming_it(make: Make, ksr: FakeKSR, name: str, value: object) -> None:
    with pytest.raises(SettingsError, match=rf"auth_diameter\.{name}\b"):
        make(ksr, {name: value})


# --- authorize --------------------------------------------------------------------


def test_www_challenge(p: AuthDiameter, ksr: FakeKSR, server: FakeLegacyServer) -> None:
    assert p.diameter_www_authorize(None, "") == -5
    assert ksr.replies == [(401, "Unauthorized")]
    assert ksr.reply_headers == ["WWW-Authenticate: " + CHALLENGE.decode()]
    # the header is appended before the reply is sent
    names = [c[0] for c in ksr.calls if c[0] in ("hdr.append_to_reply", "sl.send_reply")]
    assert names == ["hdr.append_to_reply", "sl.send_reply"]
    assert server.requests == [WORKED_EXAMPLE]


def test_proxy_challenge(p: AuthDiameter, ksr: FakeKSR) -> None:
    assert p.diameter_proxy_authorize(None, "") == -5
    assert ksr.replies == [(407, "Proxy Authentication Required")]
    assert ksr.reply_headers == ["Proxy-Authenticate: " + CHALLENGE.decode()]


def test_challenge_without_crlf_gets_one(p: AuthDiameter, ksr: FakeKSR, script: Script) -> None:
    script.auth = (4001, CHALLENGE[:-2])
    assert p.diameter_www_authorize(None, "") == -5
    assert ksr.reply_headers == ["WWW-Authenticate: " + CHALLENGE.decode()]


@pytest.mark.parametrize("challenge", [CHALLENGE[:-2] + b"\r\nX-Evil: 1\r\n", b"Digest \0\r\n", b"\xff\r\n"])
def test_hostile_challenge_is_500(p: AuthDiameter, ksr: FakeKSR, script: Script, challenge: bytes) -> None:
    script.auth = (4001, challenge)
    assert p.diameter_www_authorize(None, "") == -5
    assert ksr.replies == [(500, "Server Internal Error")]
    assert ksr.reply_headers == []
    assert ksr.errors


def test_authorized_returns_1_without_reply(
    p: AuthDiameter, ksr: FakeKSR, script: Script, server: FakeLegacyServer
) -> None:
    script.auth = (2001, None)
    body = cred()
    ksr.request(authorization=[body])
    assert p.diameter_www_authorize(None, "") == 1
    assert ksr.replies == []
    assert ksr.reply_headers == []
    msg = sent(server)
    assert [a[0] for a in msg.avps] == [400, 283, 404, 406, 1, 401, 403]
    assert msg.first(401) == body.encode()
    assert msg.first(403) == b"INVITE"
    assert msg.first(1) == b"alice@example.com"


STALE = b'Digest realm="example.com", nonce="0123456789abcdef", qop="auth", stale=true\r\n'


@pytest.mark.parametrize(
    ("method", "credentials", "answer", "label"),
    [
        ("INVITE", False, (4001, CHALLENGE), "challenged"),
        ("INVITE", True, (4001, CHALLENGE), "refused"),  # a wrong password is re-challenged
        ("INVITE", True, (4001, STALE), "stale"),
        ("INVITE", True, (5003, None), "refused"),
        ("INVITE", True, (2001, None), "authorized"),
        ("INVITE", True, (5012, None), "error"),
        ("ACK", True, (2001, None), "exempt"),
    ],
)
def test_result_label_for_the_script(
    p: AuthDiameter,
    ksr: FakeKSR,
    script: Script,
    method: str,
    credentials: bool,
    answer: tuple[int, bytes | None],
    label: str,
) -> None:
    """$avp(auth_diameter) tells the script what -5 meant, e.g. to count refused
    credentials per source without counting first challenges or server outages."""
    script.auth = answer
    ksr.request(method=method, authorization=[cred()] if credentials else None)
    p.diameter_www_authorize(None, "")
    assert ksr.pvs["$avp(auth_diameter)"] == label


def test_result_label_for_a_bad_request_and_a_spoofed_identity(p: AuthDiameter, ksr: FakeKSR) -> None:
    ksr.request(authorization=['Digest username="x'])
    assert p.diameter_www_authorize(None, "") == 0
    assert ksr.pvs["$avp(auth_diameter)"] == "bad-request"
    ksr.request(authorization=[cred(user="mallory")])
    assert p.diameter_www_authorize(None, "") == -5
    assert ksr.pvs["$avp(auth_diameter)"] == "refused"


def test_authorized_without_credentials_returns_1(p: AuthDiameter, ksr: FakeKSR, script: Script) -> None:  # B3
    script.auth = (2001, None)
    assert p.diameter_www_authorize(None, "") == 1
    assert ksr.replies == []
    assert p.diameter_is_user_in(None, "Credentials,voicemail") == -4


@pytest.mark.parametrize(("rc", "challenge"), [(5003, None), (5003, CHALLENGE)])
def test_5003_is_403(p: AuthDiameter, ksr: FakeKSR, script: Script, rc: int, challenge: bytes | None) -> None:
    script.auth = (rc, challenge)
    assert p.diameter_www_authorize(None, "") == -5
    assert ksr.replies == [(403, "Forbidden")]
    assert ksr.reply_headers == []


@pytest.mark.parametrize(("rc", "challenge"), [(4001, None), (5012, CHALLENGE), (None, CHALLENGE)])
def test_other_answers_are_500(
    p: AuthDiameter, ksr: FakeKSR, script: Script, rc: int | None, challenge: bytes | None
) -> None:
    script.auth = (rc, challenge)
    assert p.diameter_proxy_authorize(None, "") == -5
    assert ksr.replies == [(500, "Server Internal Error")]


@pytest.mark.parametrize("raw", [b"\x02\x00\x00\x14" + b"\0" * 16, b"\x01\x00\x00\x18" + b"\0" * 20])
def test_garbage_answer_is_500(p: AuthDiameter, ksr: FakeKSR, script: Script, raw: bytes) -> None:
    script.raw = raw
    assert p.diameter_www_authorize(None, "") == -5
    assert ksr.replies == [(500, "Server Internal Error")]
    assert ksr.errors


def test_server_down_is_500(make: Make, ksr: FakeKSR) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = make(ksr, settings_for(port))
    assert p.diameter_www_authorize(None, "") == -5
    assert ksr.replies == [(500, "Server Internal Error")]
    assert any("connect" in e for e in ksr.errors)
    assert p.diameter_is_user_in(None, "From,voicemail") == -1


def test_no_answer_is_500_after_the_deadline(make: Make, ksr: FakeKSR) -> None:
    with FakeLegacyServer(lambda msg: None) as silent:
        p = make(ksr, settings_for(silent.port, answer_timeout=200))
        assert p.diameter_www_authorize(None, "") == -5
        assert ksr.replies == [(500, "Server Internal Error")]


def test_wrong_msgid_answers_are_skipped(p: AuthDiameter, ksr: FakeKSR, script: Script) -> None:
    script.auth = (2001, None)
    script.stale_first = True
    assert p.diameter_www_authorize(None, "") == 1
    assert ksr.replies == []


@pytest.mark.parametrize("method", ["ACK", "CANCEL"])
def test_ack_and_cancel_pass_without_traffic(
    p: AuthDiameter, ksr: FakeKSR, server: FakeLegacyServer, method: str
) -> None:
    ksr.request(method=method)
    assert p.diameter_www_authorize(None, "") == 1
    assert p.diameter_proxy_authorize(None, "") == 1
    assert ksr.replies == []
    assert server.requests == []


@pytest.mark.parametrize(
    "body", ['Digest username="alice, realm=example.com', 'Digest username="alice", realm="example.com",']
)
def test_malformed_credentials_is_400(p: AuthDiameter, ksr: FakeKSR, server: FakeLegacyServer, body: str) -> None:
    ksr.request(authorization=[body])
    assert p.diameter_www_authorize(None, "") == 0
    assert ksr.replies == [(400, "Bad Request")]
    assert server.requests == []


@pytest.fixture
def c_module(make: Make, ksr: FakeKSR, server: FakeLegacyServer) -> AuthDiameter:
    """The plugin with identity_check = 0: the C module's behaviour, where the digest
    username need not be the From/To user."""
    return make(ksr, settings_for(server.port, identity_check=0))


def test_lenient_credentials_are_forwarded_byte_for_byte(
    c_module: AuthDiameter, ksr: FakeKSR, script: Script, server: FakeLegacyServer
) -> None:
    # what Kamailio accepts the C module forwards: trailing junk after values, CR/LF
    # inside quotes, a backslash that escapes nothing
    p = c_module
    script.auth = (2001, None)
    body = 'Digest username="al\\" junk, realm="example.com"x, nonce="a\r\nb", response="r"'
    ksr.request(authorization=[body])
    assert p.diameter_www_authorize(None, "") == 1
    msg = sent(server)
    assert msg.first(401) == body.encode()
    assert msg.first(1) == b"al\\@example.com"


def test_credentials_without_realm_are_not_used(
    p: AuthDiameter, ksr: FakeKSR, script: Script, server: FakeLegacyServer
) -> None:
    # no comma before realm: Kamailio skips it, so the header matches no realm
    script.auth = (2001, None)
    ksr.request(authorization=['Digest username="alice" realm="example.com"'])
    assert p.diameter_www_authorize(None, "") == 1
    assert [a[0] for a in sent(server).avps] == [400, 283, 404, 406, 1]


def test_proxy_uses_proxy_authorization(
    p: AuthDiameter, ksr: FakeKSR, script: Script, server: FakeLegacyServer
) -> None:
    script.auth = (2001, None)
    ksr.request(authorization=['Digest username="x'], proxy_authorization=[cred()])
    assert p.diameter_proxy_authorize(None, "") == 1
    assert sent(server).first(401) == cred().encode()


def test_realm_mismatch_is_minus_5_without_traffic(p: AuthDiameter, ksr: FakeKSR, server: FakeLegacyServer) -> None:
    ksr.request(authorization=[cred("other.org")])
    assert p.diameter_www_authorize(None, "other.org") == -5
    assert ksr.replies == []
    assert server.requests == []


def test_unparsable_from_is_400(p: AuthDiameter, ksr: FakeKSR) -> None:
    ksr.request(fu="garbage")
    assert p.diameter_www_authorize(None, "") == 0
    assert ksr.replies == [(400, "Bad Request")]


@pytest.mark.parametrize("ruri", ["tel:", "sip:bob@"])
def test_unparsable_ruri_is_minus_5_no_reply(
    p: AuthDiameter, ksr: FakeKSR, server: FakeLegacyServer, ruri: str
) -> None:
    ksr.request(ruri=ruri)
    assert p.diameter_www_authorize(None, "") == -5
    assert ksr.replies == []
    assert server.requests == []


def test_tel_ruri_is_sent_as_number_and_empty_host(p: AuthDiameter, ksr: FakeKSR, server: FakeLegacyServer) -> None:
    # the identity (From) has a host, so the request can be built: Resource is "+123@\0"
    ksr.request(ruri="tel:+123;phone-context=example.com")
    assert p.diameter_www_authorize(None, "") == -5
    assert ksr.replies == [(401, "Unauthorized")]
    msg = sent(server)
    assert msg.first(400) == b"+123@\0"
    assert msg.first(283) == b"example.com"


@pytest.mark.parametrize(
    ("realm", "authorization"),
    [
        ("", None),
        ("", ['Digest username="alice", nonce="n", response="r"']),  # no realm: matches ""
        ("example.com", None),
    ],
)
def test_tel_from_cannot_be_encoded_is_500(
    c_module: AuthDiameter, ksr: FakeKSR, server: FakeLegacyServer, realm: str, authorization: list[str] | None
) -> None:
    # the realm derived from tel: is "" (no 400); the empty From host cannot be sent as
    # Destination-Realm, so the request is never built
    p = c_module
    ksr.request(fu="tel:+123", authorization=authorization)
    assert p.diameter_www_authorize(None, realm) == -5
    assert ksr.replies == [(500, "Server Internal Error")]
    assert server.requests == []
    assert any("cannot build the request" in e for e in ksr.errors)


def test_tel_from_with_matching_credentials_is_minus_5_no_reply(
    p: AuthDiameter, ksr: FakeKSR, server: FakeLegacyServer
) -> None:
    # the credentials' realm can never equal the empty host of a tel: From
    ksr.request(fu="tel:+123", authorization=[cred()], proxy_authorization=[cred()])
    assert p.diameter_www_authorize(None, "example.com") == -5
    assert ksr.replies == []
    assert p.diameter_proxy_authorize(None, "example.com") == -5
    assert ksr.replies == []
    assert server.requests == []


def test_register_uses_to(p: AuthDiameter, ksr: FakeKSR, server: FakeLegacyServer) -> None:
    ksr.request(method="REGISTER", ruri="sip:example.com", fu="sip:alice@from.org", tu="sip:alice@example.com")
    assert p.diameter_www_authorize(None, "") == -5
    msg = sent(server)
    assert msg.first(283) == b"example.com"
    assert msg.first(1) == b"alice@example.com\0"
    assert msg.first(400) == b"example.com\0\0"


def test_msgid_is_taken_from_mi(p: AuthDiameter, ksr: FakeKSR, server: FakeLegacyServer) -> None:
    ksr.request(mi=0x01020304)
    p.diameter_www_authorize(None, "")
    assert sent(server).first(406) == b"\x04\x03\x02\x01"


def test_connection_is_reused(p: AuthDiameter, ksr: FakeKSR, server: FakeLegacyServer) -> None:
    for mi in range(1, 4):
        ksr.request(mi=mi)
        assert p.diameter_www_authorize(None, "") == -5
    assert server.accepted == 1
    assert len(server.requests) == 3


# --- exceptions never escape ----------------------------------------------------------


@pytest.mark.parametrize("area", ["pv", "hdr", "append", "sl"])
def test_ksr_exceptions_never_escape_authorize(p: AuthDiameter, ksr: FakeKSR, area: str) -> None:
    ksr.request(authorization=[cred()])
    ksr.raise_in = {area}
    for call in (p.diameter_www_authorize, p.diameter_proxy_authorize):
        result = call(None, "")
        assert type(result) is int
        assert result in (0, -5)
    assert ksr.errors


def test_ksr_exceptions_never_escape_is_user_in(p: AuthDiameter, ksr: FakeKSR) -> None:
    ksr.raise_in = {"pv"}
    assert p.diameter_is_user_in(None, "From,voicemail") == -1
    assert ksr.errors


@pytest.mark.parametrize(
    ("function", "param"),
    [
        ("diameter_www_authorize", ""),
        ("diameter_proxy_authorize", "example.com"),
        ("diameter_is_user_in", "From,voicemail"),
        ("diameter_is_user_in", "bogus"),
    ],
)
def test_exceptions_never_escape_even_when_logging_fails(
    p: AuthDiameter, ksr: FakeKSR, function: str, param: str
) -> None:
    # "Every method returns an int whatever happens": that includes KSR.err itself raising.
    ksr.raise_in = {"pv", "hdr", "append", "sl", "log"}
    assert type(getattr(p, function)(None, param)) is int


def test_non_int_mi_does_not_escape(p: AuthDiameter, ksr: FakeKSR) -> None:
    ksr.pvs["$mi"] = None
    assert p.diameter_www_authorize(None, "") == -5
    assert p.diameter_is_user_in(None, "From,voicemail") == -1


# --- is_user_in -------------------------------------------------------------------


def test_is_user_in_from_to_ruri(p: AuthDiameter, ksr: FakeKSR, script: Script, server: FakeLegacyServer) -> None:
    script.members = {(b"alice", b"voicemail"), (b"carl", b"voicemail")}
    ksr.request(ruri="sip:carl@ruri.net;transport=tcp", fu="sip:alice@example.com", tu="sip:bob@example.com", mi=7)
    assert p.diameter_is_user_in(None, "From,voicemail") == 1
    msg = sent(server)
    assert msg.avps == (
        (283, 0, b"ruri.net"),
        (404, 0, b"8"),
        (406, 0, b"\x07\0\0\0"),
        (405, 0, b"voicemail"),
        (1, 0, b"alice"),
    )
    assert p.diameter_is_user_in(None, "To,voicemail") == -1
    assert sent(server).first(1) == b"bob"
    assert p.diameter_is_user_in(None, "Request-URI,voicemail") == 1
    assert sent(server).first(1) == b"carl"
    assert ksr.replies == []  # never a SIP reply


def test_is_user_in_credentials_after_authorize(
    c_module: AuthDiameter, ksr: FakeKSR, script: Script, server: FakeLegacyServer
) -> None:
    p = c_module
    script.auth = (2001, None)
    script.members = {(b"alice", b"voicemail")}
    ksr.request(mi=11, fu="sip:somebody@example.com", authorization=[cred(user="sip:alice@dom.org")])
    assert p.diameter_www_authorize(None, "") == 1
    assert p.diameter_is_user_in(None, "Credentials,voicemail") == 1
    assert sent(server).first(1) == b"alice"
    assert p.diameter_is_user_in(None, "credentials,other") == -1
    ksr.request(mi=12, fu="sip:somebody@example.com")  # the next message has no authorized credentials
    count = len(server.requests)
    assert p.diameter_is_user_in(None, "Credentials,voicemail") == -4
    assert len(server.requests) == count


@pytest.mark.parametrize(
    ("method", "header", "user"),
    [("INVITE", "fu", "mallory"), ("REGISTER", "tu", "mallory"), ("INVITE", "fu", "Alice"), ("MESSAGE", "fu", "")],
)
def test_credentials_of_another_user_are_403_without_traffic(
    p: AuthDiameter, ksr: FakeKSR, server: FakeLegacyServer, method: str, header: str, user: str
) -> None:
    """identity_check (the default): mallory's own credentials on a request from (or a
    REGISTER of) alice get 403 before the server is asked; the C module let them through."""
    identity = {header: "sip:alice@example.com"}
    ksr.request(method=method, **identity, authorization=[cred(user=user)], proxy_authorization=[cred(user=user)])
    authorize = p.diameter_www_authorize if method == "REGISTER" else p.diameter_proxy_authorize
    assert authorize(None, "") == -5
    assert ksr.replies == [(403, "Forbidden")]
    assert server.requests == []
    assert any(f"digest username '{user}' is not the" in e and "'alice'@example.com" in e for e in ksr.errors)


@pytest.mark.parametrize("user", ["alice", "alice@example.com", "alice@EXAMPLE.com"])
def test_credentials_of_the_claimed_user_go_to_the_server(
    p: AuthDiameter, ksr: FakeKSR, script: Script, server: FakeLegacyServer, user: str
) -> None:
    script.auth = (2001, None)
    ksr.request(fu="sip:alice@Example.COM", proxy_authorization=[cred(user=user)])
    assert p.diameter_proxy_authorize(None, "") == 1
    assert len(server.requests) == 1


def test_identity_check_can_be_turned_off(c_module: AuthDiameter, ksr: FakeKSR, script: Script) -> None:
    script.auth = (2001, None)
    ksr.request(fu="sip:alice@example.com", proxy_authorization=[cred(user="mallory")])
    assert c_module.diameter_proxy_authorize(None, "") == 1


def test_a_hostile_username_stays_on_one_log_line(p: AuthDiameter, ksr: FakeKSR) -> None:
    ksr.request(fu="sip:alice@example.com", proxy_authorization=[cred(user="mal\nlory\x1b[2J")])
    assert p.diameter_proxy_authorize(None, "") == -5
    line = next(e for e in ksr.errors if "mal" in e)
    assert "\x1b" not in line and line.count("\n") == 1 and line.endswith("\n")


def test_is_user_in_credentials_after_proxy_authorize(p: AuthDiameter, ksr: FakeKSR, script: Script) -> None:
    script.auth = (2001, None)
    script.members = {(b"alice", b"g")}
    ksr.request(mi=3, proxy_authorization=[cred()])
    assert p.diameter_proxy_authorize(None, "") == 1
    assert p.diameter_is_user_in(None, "Credentials,g") == 1


def test_is_user_in_without_authorize_is_minus_4(p: AuthDiameter, server: FakeLegacyServer) -> None:
    assert p.diameter_is_user_in(None, "Credentials,voicemail") == -4
    assert server.requests == []


def test_is_user_in_missing_headers(p: AuthDiameter, ksr: FakeKSR) -> None:
    ksr.request(fu=None, tu=None)
    assert p.diameter_is_user_in(None, "To,g") == -2
    assert p.diameter_is_user_in(None, "From,g") == -3
    ksr.request(fu="garbage")
    assert p.diameter_is_user_in(None, "From,g") == -5


def test_is_user_in_tel_from_and_to(p: AuthDiameter, ksr: FakeKSR, script: Script, server: FakeLegacyServer) -> None:
    script.members = {(b"+123", b"g")}
    ksr.request(ruri="sip:carl@ruri.net", fu="tel:+123;phone-context=x", tu="tel:+456")
    assert p.diameter_is_user_in(None, "From,g") == 1
    assert sent(server).first(1) == b"+123"
    assert sent(server).first(283) == b"ruri.net"
    assert p.diameter_is_user_in(None, "To,g") == -1
    assert sent(server).first(1) == b"+456"
    ksr.request(fu="tel:")
    count = len(server.requests)
    assert p.diameter_is_user_in(None, "From,g") == -5
    assert len(server.requests) == count


@pytest.mark.parametrize("who", ["Request-URI", "From", "To", "Credentials"])
def test_is_user_in_tel_ruri_is_minus_1(
    p: AuthDiameter, ksr: FakeKSR, script: Script, server: FakeLegacyServer, who: str
) -> None:
    # Destination-Realm is the R-URI host, empty for tel:, so no request can be built
    script.auth = (2001, None)
    script.members = {(b"+123", b"g"), (b"alice", b"g"), (b"bob", b"g")}
    ksr.request(ruri="sip:bob@example.com", authorization=[cred()])
    assert p.diameter_www_authorize(None, "") == 1
    ksr.pvs["$ru"] = "tel:+123"  # the script rewrote the R-URI
    count = len(server.requests)
    assert p.diameter_is_user_in(None, f"{who},g") == -1
    assert len(server.requests) == count
    assert any("diameter_is_user_in: cannot build the request" in e for e in ksr.errors)


@pytest.mark.parametrize("param", ["", "Contact,voicemail", "From", "From,", None])
def test_bad_param_is_minus_1_with_error(
    p: AuthDiameter, ksr: FakeKSR, server: FakeLegacyServer, param: str | None
) -> None:
    assert p.diameter_is_user_in(None, param) == -1  # type: ignore[arg-type]
    assert any("diameter_is_user_in" in e for e in ksr.errors)
    assert server.requests == []


def test_use_domain(make: Make, ksr: FakeKSR, script: Script, server: FakeLegacyServer) -> None:
    p = make(ksr, settings_for(server.port, use_domain=1))
    script.members = {(b"alice@example.com", b"g")}
    assert p.diameter_is_user_in(None, "From,g") == 1
    ksr.request(fu="sip:example.com")
    assert p.diameter_is_user_in(None, "From,g") == -1
    assert sent(server).first(1) == b"example.com\0"


# --- settings at run time ----------------------------------------------------------


@pytest.mark.usefixtures("every_request_rereads")
def test_run_time_change_is_picked_up(p: AuthDiameter, ksr: FakeKSR, script: Script, server: FakeLegacyServer) -> None:
    assert p.diameter_www_authorize(None, "") == -5
    with FakeLegacyServer(script) as other:
        ksr.cfg["diameter_client_port"] = other.port
        ksr.request(mi=2)
        assert p.diameter_www_authorize(None, "") == -5
        assert len(other.requests) == 1
        assert len(server.requests) == 1
    assert any("changed" in line for line in ksr.infos)


def test_use_domain_change_at_run_time(p: AuthDiameter, ksr: FakeKSR, server: FakeLegacyServer) -> None:
    p.diameter_is_user_in(None, "From,g")
    assert sent(server).first(1) == b"alice"
    ksr.cfg["use_domain"] = 1  # not declared in the cfg file: Kamailio would not have it either
    p.diameter_is_user_in(None, "From,g")
    assert sent(server).first(1) == b"alice"
    assert ("pv.get", "$sel(cfg_get.auth_diameter.use_domain)") not in ksr.calls


@pytest.mark.usefixtures("every_request_rereads")
def test_declared_use_domain_change_at_run_time(make: Make, ksr: FakeKSR, server: FakeLegacyServer) -> None:
    p = make(ksr, settings_for(server.port, use_domain=0))
    p.diameter_is_user_in(None, "From,g")
    assert sent(server).first(1) == b"alice"
    ksr.cfg["use_domain"] = 1
    p.diameter_is_user_in(None, "From,g")
    assert sent(server).first(1) == b"alice@example.com"


@pytest.mark.usefixtures("every_request_rereads")
def test_invalid_run_time_change_logged_once_and_previous_kept(
    p: AuthDiameter, ksr: FakeKSR, server: FakeLegacyServer
) -> None:
    assert p.diameter_www_authorize(None, "") == -5
    ksr.cfg["diameter_client_port"] = 0
    for mi in range(2, 5):
        ksr.request(mi=mi)
        assert p.diameter_www_authorize(None, "") == -5
        assert ksr.replies == [(401, "Unauthorized")]
    assert len(server.requests) == 4
    refused = [e for e in ksr.errors if "diameter_client_port" in e]
    assert len(refused) == 1
    ksr.cfg["diameter_client_port"] = server.port  # back to the good value
    ksr.request(mi=9)
    assert p.diameter_www_authorize(None, "") == -5
    assert len(server.requests) == 5


def test_unresolved_define_is_checked_at_run_time(make_text: Make, ksr: FakeKSR, server: FakeLegacyServer) -> None:
    p = make_text(
        ksr,
        '#!define HOST "127.0.0.1"\n'
        'auth_diameter.diameter_client_host = HOST desc "h"\n'
        'auth_diameter.diameter_client_port = DIAMETER_PORT desc "p"\n',
    )
    ksr.cfg = {"diameter_client_host": "127.0.0.1", "diameter_client_port": server.port}
    assert p.diameter_www_authorize(None, "") == -5
    assert ksr.replies == [(401, "Unauthorized")]
    assert len(server.requests) == 1


def test_never_valid_settings_fail_every_request_with_500(
    make_text: Make, ksr: FakeKSR, server: FakeLegacyServer
) -> None:
    p = make_text(ksr, 'auth_diameter.diameter_client_port = DIAMETER_PORT desc "p"\n')
    ksr.cfg = {"diameter_client_port": 0}
    for mi in (1, 2):
        ksr.request(mi=mi)
        assert p.diameter_www_authorize(None, "") == -5
        assert ksr.replies == [(500, "Server Internal Error")]
    assert p.diameter_is_user_in(None, "From,g") == -1
    assert len([e for e in ksr.errors if "diameter_client_port" in e]) == 1
    assert server.requests == []


def test_bad_literal_in_included_file_raises(make_text: Make, ksr: FakeKSR, tmp_path: Path) -> None:
    (tmp_path / "extra.cfg").write_text('auth_diameter.answer_timeout = 0 desc "t"\n')
    with pytest.raises(SettingsError, match=r"auth_diameter\.answer_timeout\b"):
        make_text(ksr, 'include_file "extra.cfg"\n')


def test_failing_log_alone_does_not_escape(p: AuthDiameter, ksr: FakeKSR) -> None:
    ksr.raise_in = {"log"}  # KSR.err fails (e.g. app_python3 refusing the string), everything else works
    assert p.diameter_is_user_in(None, "bogus") == -1


def test_setting_with_trailing_comment_is_used(make_text: Make, ksr: FakeKSR, server: FakeLegacyServer) -> None:
    # A valid Kamailio cfg line; Kamailio declares and holds the value, so the plugin must use it.
    p = make_text(
        ksr,
        'auth_diameter.diameter_client_host = "127.0.0.1" desc "h"\n'
        'auth_diameter.answer_timeout = 300 desc "t"\n'
        f'auth_diameter.diameter_client_port = {server.port} desc "p"  # the DISC client\n',
    )
    ksr.cfg = {"diameter_client_host": "127.0.0.1", "diameter_client_port": server.port, "answer_timeout": 300}
    assert p.diameter_www_authorize(None, "") == -5
    assert len(server.requests) == 1
    assert ksr.replies == [(401, "Unauthorized")]
