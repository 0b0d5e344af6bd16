"""The reference server as an RFC 6733 / RFC 4740 responder, driven by clients we did not write.

python-diameter's own Node (CER/CEA, hop-by-hop and end-to-end ids done by the
library) sends MAR and SAR; its typed peer messages on a plain socket check CER
refusal, DWR and DPR. The digest is computed with our digest module, the only
piece of ours on the client side.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from diameter.message import Message, MessageHeader
from diameter.message.avp import Avp
from diameter.message.commands import (
    CapabilitiesExchangeRequest,
    DeviceWatchdogRequest,
    DisconnectPeerRequest,
)
from diameter.message.constants import (
    AVP_AUTH_APPLICATION_ID,
    AVP_AUTH_SESSION_STATE,
    AVP_DESTINATION_REALM,
    AVP_DIGEST_CNONCE,
    AVP_DIGEST_NONCE,
    AVP_DIGEST_NONCE_COUNT,
    AVP_DIGEST_QOP,
    AVP_DIGEST_REALM,
    AVP_DIGEST_RESPONSE,
    AVP_DIGEST_URI,
    AVP_DIGEST_USERNAME,
    AVP_ORIGIN_HOST,
    AVP_ORIGIN_REALM,
    AVP_RESULT_CODE,
    AVP_SESSION_ID,
    AVP_SIP_AOR,
    AVP_SIP_AUTH_DATA_ITEM,
    AVP_SIP_AUTHENTICATE,
    AVP_SIP_AUTHENTICATION_SCHEME,
    AVP_SIP_AUTHORIZATION,
    AVP_SIP_METHOD,
    AVP_SIP_SERVER_ASSIGNMENT_TYPE,
    AVP_SIP_SERVER_URI,
    AVP_SIP_USER_DATA,
    AVP_SIP_USER_DATA_ALREADY_AVAILABLE,
    AVP_SIP_USER_DATA_CONTENTS,
    AVP_SIP_USER_DATA_TYPE,
    AVP_USER_NAME,
)
from diameter.node import Node
from diameter.node.application import SimpleThreadingApplication

from kamailio_auth_diameter import digest
from tests.harness import ReferenceServer, free_port
from tests.real.conftest import make_server

CLIENT = "kamailio.example.org"
REALM = "example.org"
SERVER = "aaa.example.org"
SIP_APP = 6


@pytest.fixture(scope="module")
def diameter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceServer]:
    s = make_server(tmp_path_factory.mktemp("diameter"))
    s.diameter_port = free_port()
    s.extra = ("--origin-host", SERVER, "--origin-realm", REALM, "--peers", f"{CLIENT},other.example.org", "-v")
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def sip_app(diameter_server: ReferenceServer) -> Iterator[SimpleThreadingApplication]:
    node = Node(CLIENT, REALM)
    node.wakeup_interval = 1  # stop() joins its select thread for this long plus 1 s
    peer = node.add_peer(
        f"aaa://{SERVER}:{diameter_server.diameter_port};transport=tcp",
        REALM,
        ip_addresses=["127.0.0.1"],
        is_persistent=True,
    )
    app = SimpleThreadingApplication(SIP_APP, is_auth_application=True)
    node.add_application(app, [peer])
    node.start()
    try:
        app.wait_for_ready(timeout=10)
        yield app
    finally:
        node.stop(force=True)


def _request(app: SimpleThreadingApplication, command: int, avps: list[Avp]) -> Message:
    header = MessageHeader(command_code=command, application_id=SIP_APP)
    header.is_request = True
    header.is_proxyable = True
    head = [
        Avp.new(AVP_SESSION_ID, value=app.node.session_generator.next_id()),
        Avp.new(AVP_AUTH_APPLICATION_ID, value=SIP_APP),
        Avp.new(AVP_AUTH_SESSION_STATE, value=1),
        Avp.new(AVP_ORIGIN_HOST, value=CLIENT.encode()),
        Avp.new(AVP_ORIGIN_REALM, value=REALM.encode()),
        Avp.new(AVP_DESTINATION_REALM, value=REALM.encode()),
    ]
    answer = app.send_request(Message(header, head + avps), timeout=5)
    assert answer.header.hop_by_hop_identifier == header.hop_by_hop_identifier
    assert answer.header.end_to_end_identifier == header.end_to_end_identifier
    assert answer.find_avps((AVP_SESSION_ID, 0))[0].value == head[0].value
    assert answer.find_avps((AVP_ORIGIN_HOST, 0))[0].value == SERVER.encode()
    assert answer.find_avps((AVP_AUTH_APPLICATION_ID, 0))[0].value == SIP_APP
    assert answer.find_avps((AVP_AUTH_SESSION_STATE, 0))[0].value == 1
    return answer


def _mar(
    app: SimpleThreadingApplication, registrar: bool, authorization: list[Avp] | None = None, user: str = "alice"
) -> Message:
    avps = [
        Avp.new(AVP_SIP_AOR, value=f"sip:{user}@example.com"),  # a REGISTER: the AOR is the user's own
        Avp.new(AVP_SIP_METHOD, value="REGISTER"),
        Avp.new(AVP_USER_NAME, value=user),
    ]
    if registrar:
        avps.append(Avp.new(AVP_SIP_SERVER_URI, value=f"sip:{CLIENT}"))
    item = [Avp.new(AVP_SIP_AUTHENTICATION_SCHEME, value=0)]
    if authorization is not None:
        item.append(Avp.new(AVP_SIP_AUTHORIZATION, value=authorization))
    avps.append(Avp.new(AVP_SIP_AUTH_DATA_ITEM, value=item))
    return _request(app, 286, avps)


def _result(answer: Message) -> int:
    return answer.find_avps((AVP_RESULT_CODE, 0))[0].value


def _challenge(answer: Message) -> tuple[str, str]:
    path = ((AVP_SIP_AUTH_DATA_ITEM, 0), (AVP_SIP_AUTHENTICATE, 0))
    realm = answer.find_avps(*path, (AVP_DIGEST_REALM, 0))[0].value
    nonce = answer.find_avps(*path, (AVP_DIGEST_NONCE, 0))[0].value
    assert answer.find_avps(*path, (AVP_DIGEST_QOP, 0))[0].value == "auth"
    return realm, nonce


def _authorization(realm: str, nonce: str, password: str, user: str = "alice", nc: int = 1) -> list[Avp]:
    """Digest credentials; each use of one nonce needs a higher ``nc`` (the server refuses replays)."""
    uri = "sip:example.com"
    d = digest.DigestInput(method="REGISTER", uri=uri, nonce=nonce, qop="auth", nc=f"{nc:08x}", cnonce="0a4f113b")
    response = digest.response(digest.ha1(user, realm, password), d)
    return [
        Avp.new(AVP_DIGEST_USERNAME, value=user),
        Avp.new(AVP_DIGEST_REALM, value=realm),
        Avp.new(AVP_DIGEST_NONCE, value=nonce),
        Avp.new(AVP_DIGEST_URI, value=uri),
        Avp.new(AVP_DIGEST_RESPONSE, value=response),
        Avp.new(AVP_DIGEST_QOP, value="auth"),
        Avp.new(AVP_DIGEST_NONCE_COUNT, value=f"{nc:08x}"),
        Avp.new(AVP_DIGEST_CNONCE, value="0a4f113b"),
    ]


def test_mar_flows_and_group_check(sip_app: SimpleThreadingApplication) -> None:
    # Registrar MAR without credentials: 1001; proxy MAR (no SIP-Server-URI): 2008.
    answer = _mar(sip_app, registrar=True)
    assert _result(answer) == 1001
    realm, nonce = _challenge(answer)
    assert realm == "example.com"
    assert _result(_mar(sip_app, registrar=False)) == 2008

    assert _result(_mar(sip_app, registrar=True, authorization=_authorization(realm, nonce, "secret"))) == 2001
    good = _authorization(realm, nonce, "secret", nc=2)
    assert _result(_mar(sip_app, registrar=False, authorization=good)) == 2006

    wrong = _mar(sip_app, registrar=True, authorization=_authorization(realm, nonce, "not-the-password", nc=3))
    assert _result(wrong) == 4001
    assert _challenge(wrong)[1] != nonce  # a fresh challenge

    stranger = _authorization(realm, nonce, "x", user="mallory")
    assert _result(_mar(sip_app, registrar=True, authorization=stranger, user="mallory")) == 5032

    saa = _request(
        sip_app,
        284,
        [
            Avp.new(AVP_SIP_SERVER_ASSIGNMENT_TYPE, value=0),
            Avp.new(AVP_SIP_USER_DATA_ALREADY_AVAILABLE, value=0),
            Avp.new(AVP_USER_NAME, value="alice"),
        ],
    )
    assert _result(saa) == 2001
    assert saa.find_avps((AVP_SIP_USER_DATA, 0), (AVP_SIP_USER_DATA_TYPE, 0))[0].value == "groups"
    assert saa.find_avps((AVP_SIP_USER_DATA, 0), (AVP_SIP_USER_DATA_CONTENTS, 0))[0].value == b"voicemail\n"


def _read(sock: socket.socket) -> Message | None:
    head = b""
    while len(head) < 20:
        chunk = sock.recv(20 - len(head))
        if not chunk:
            return None
        head += chunk
    body = b""
    while len(body) < int.from_bytes(head[1:4], "big") - 20:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return Message.from_bytes(head + body)


def _cer(origin_host: str) -> bytes:
    cer = CapabilitiesExchangeRequest()
    cer.header.hop_by_hop_identifier = 0x1000
    cer.header.end_to_end_identifier = 0x2000
    cer.origin_host = origin_host.encode()
    cer.origin_realm = REALM.encode()
    cer.host_ip_address = ["127.0.0.1"]
    cer.vendor_id = 0
    cer.product_name = "test"
    cer.auth_application_id = [SIP_APP]
    return cer.as_bytes()


def test_unknown_peer_gets_3010_and_is_closed(diameter_server: ReferenceServer) -> None:
    with socket.create_connection(("127.0.0.1", diameter_server.diameter_port), timeout=5) as sock:
        sock.sendall(_cer("stranger.example.org"))
        cea = _read(sock)
        assert cea is not None
        assert cea.result_code == 3010
        assert cea.header.is_error
        assert _read(sock) is None


def test_peer_messages(diameter_server: ReferenceServer) -> None:
    with socket.create_connection(("127.0.0.1", diameter_server.diameter_port), timeout=5) as sock:
        sock.sendall(_cer("Other.Example.org"))  # DiameterIdentity compares case-insensitively
        cea = _read(sock)
        assert cea is not None
        assert cea.result_code == 2001
        assert cea.auth_application_id == [SIP_APP]
        assert cea.origin_host == SERVER.encode()
        dwr = DeviceWatchdogRequest()
        dwr.header.hop_by_hop_identifier = 7
        dwr.origin_host = b"other.example.org"
        dwr.origin_realm = REALM.encode()
        sock.sendall(dwr.as_bytes())
        dwa = _read(sock)
        assert dwa is not None
        assert (dwa.header.command_code, dwa.header.hop_by_hop_identifier, dwa.result_code) == (280, 7, 2001)
        dpr = DisconnectPeerRequest()
        dpr.header.hop_by_hop_identifier = 8
        dpr.origin_host = b"other.example.org"
        dpr.origin_realm = REALM.encode()
        dpr.disconnect_cause = 0
        sock.sendall(dpr.as_bytes())
        dpa = _read(sock)
        assert dpa is not None
        assert (dpa.header.command_code, dpa.result_code) == (282, 2001)
        assert _read(sock) is None


def test_log_has_no_tracebacks(diameter_server: ReferenceServer, sip_app: SimpleThreadingApplication) -> None:
    del sip_app
    assert "Traceback" not in Path(diameter_server.log_path).read_text()
