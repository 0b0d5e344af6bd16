"""The plugin sends the same Diameter bytes as Kamailio's C module auth_diameter.so.

One cfg (capture.cfg) runs twice: once with the C module (-A WITH_C_MODULE=1), once
with app_python3 and the plugin. Both talk to a capture listener written here, which
records every request and answers it in the shape DISC's client used: 2001 to group
checks and to authorize requests with credentials (so authorize returns 1 and
is_user_in "Credentials" finds them authorized), and 4001 with a challenge to
authorize requests without credentials, as a DISC server does. (A 2001 to a request
without credentials makes the C module mark an uninitialised header pointer, bug B3 of
the protocol notes; in this setup that crashed the worker with SIGSEGV.)
Each case sends the same raw SIP request to both Kamailios and compares the captured
requests byte for byte, with only the 4-byte SIP-MSGID value (AVP 406, Kamailio's
per-process msg->id) zeroed. The return codes of the cfg functions, carried in the
reply's reason phrase, must be the same too.

Left out on purpose (the only differences allowed are the fixes of bugs B1 and B2):
- B1: credentials whose username has no "@domain" (e.g. username="alice", "sip:alice",
  "a@"). 5.6.3 overflows a heap buffer building User-Name and Kamailio aborts, so such
  requests are never sent to the C module; the plugin follows Kamailio HEAD instead.
- B2: answers without a Result-Code crash the C module; this listener always sends one.
"""

from __future__ import annotations

import hashlib
import socket
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kamailio_auth_diameter.wire import legacy
from tests.harness import Kamailio, SipClient, SipReply, free_port

pytestmark = pytest.mark.kamailio

CFG = Path(__file__).resolve().parent / "capture.cfg"
AVP_SIP_MSGID = 406
MAX_MESSAGE = 65536
NONCE = "5f1c3a2b" + "0123456789abcdef0123456789abcdef"
RESPONSE = "6629fae49393a05397450978507c4ef1"


# --- the capture listener ---------------------------------------------------------


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


@dataclass
class CaptureListener:
    """A DISC "client" on 127.0.0.1 that records each request and answers it (answer_for)."""

    port: int = field(default_factory=free_port)
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        listener = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                listener._serve(self.request)

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def take(self) -> list[bytes]:
        with self._lock:
            taken, self.requests = self.requests, []
        return taken

    def _serve(self, sock: socket.socket) -> None:
        with self._lock:
            self.connections += 1
        while True:
            head = _read_exact(sock, 4)
            if head is None:
                return
            length = int.from_bytes(head[1:4], "big")
            if not 20 <= length <= MAX_MESSAGE:
                with self._lock:
                    self.requests.append(head)
                return
            rest = _read_exact(sock, length - 4)
            if rest is None:
                return
            raw = head + rest
            with self._lock:
                self.requests.append(raw)
            try:
                msg = legacy.decode_message(raw)
            except legacy.LegacyError:
                continue  # recorded; the side that sent it times out and the comparison shows why
            sock.sendall(answer_for(msg))


def answer_for(msg: legacy.Message) -> bytes:
    service = (msg.first(legacy.AVP_SERVICE_TYPE) or b"6")[:1]
    challenge = None
    if service == legacy.SERVICE_AUTH and msg.first(legacy.AVP_RESPONSE) is None:
        realm = msg.first(legacy.AVP_DESTINATION_REALM) or b""
        challenge = b'Digest realm="' + realm + b'", nonce="' + NONCE.encode() + b'", qop="auth"\r\n'
    return legacy.encode_answer(
        service=service,
        msgid=msg.first(legacy.AVP_SIP_MSGID) or b"\0\0\0\0",
        result_code=legacy.RESULT_AUTHENTICATION_REJECTED if challenge else legacy.RESULT_SUCCESS,
        session_id=b"capture.localdomain;1;1",
        origin_host=b"capture.localdomain",
        origin_realm=b"localdomain",
        challenge=challenge,
    )


def _read_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return buf


# --- looking at captured bytes -----------------------------------------------------


def avps(raw: bytes) -> list[tuple[int, int, int, int, bytes]]:
    """(offset, code, flags, length, data) of each AVP, walked without any validation."""
    out = []
    off = 20
    while off + 8 <= len(raw):
        code = int.from_bytes(raw[off : off + 4], "big")
        flags = raw[off + 4]
        length = int.from_bytes(raw[off + 5 : off + 8], "big")
        if length < 8:
            break
        head = 12 if flags & 0x80 else 8
        out.append((off, code, flags, length, raw[off + head : off + length]))
        off += length + (-length % 4)
    return out


def zero_msgid(raw: bytes) -> bytes:
    buf = bytearray(raw)
    for off, code, flags, length, _data in avps(raw):
        if code == AVP_SIP_MSGID:
            head = 12 if flags & 0x80 else 8
            buf[off + head : off + length] = bytes(length - head)
    return bytes(buf)


def describe(raw: bytes) -> str:
    lines = [f"  {len(raw)} bytes, header {raw[:20].hex(' ')}"]
    for off, code, flags, length, data in avps(raw):
        lines.append(f"  @{off:<4} AVP {code:<4} flags 0x{flags:02x} len {length:<4} {data!r}")
    lines.append(f"  hex: {raw.hex()}")
    return "\n".join(lines)


def difference(c_reqs: list[bytes], py_reqs: list[bytes]) -> str:
    text = [f"C module sent {len(c_reqs)} request(s), the plugin {len(py_reqs)}"]
    for i in range(max(len(c_reqs), len(py_reqs))):
        c = zero_msgid(c_reqs[i]) if i < len(c_reqs) else None
        p = zero_msgid(py_reqs[i]) if i < len(py_reqs) else None
        if c == p:
            continue
        text.append(f"request #{i} C module:\n{describe(c) if c is not None else '  (none)'}")
        text.append(f"request #{i} plugin:\n{describe(p) if p is not None else '  (none)'}")
    return "\n".join(text)


# --- the two Kamailios ---------------------------------------------------------------


@dataclass
class Side:
    name: str
    listener: CaptureListener
    kamailio: Kamailio

    def exchange(self, text: str) -> tuple[list[bytes], SipReply | None]:
        """Send one request; return what reached Diameter and the SIP reply (None for ACK)."""
        k = self.kamailio
        if not k.alive():
            pytest.fail(f"{self.name} Kamailio is down:\n{k.log()[-3000:]}")
        self.listener.take()
        try:
            if text.startswith("ACK "):
                _send_only(k.sip_port, text)
                reply = None
                # children=1: one UDP worker, so once this is answered the ACK was processed
                SipClient(k.sip_port).options(timeout=3.0)
            else:
                reply = SipClient(k.sip_port).send(text, timeout=3.0)
        except TimeoutError:
            pytest.fail(f"{self.name} Kamailio did not answer:\n{k.log()[-3000:]}")
        return self.listener.take(), reply


def _send_only(port: int, text: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        data = text.replace("LPORT", str(s.getsockname()[1])).replace("\r\n", "\n").replace("\n", "\r\n")
        s.sendto(data.encode(), ("127.0.0.1", port))


@dataclass
class Pair:
    use_domain: int
    c: Side
    py: Side


@pytest.fixture(scope="module")
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    use_domain = request.param
    run_dir = tmp_path_factory.mktemp(f"wire_use_domain_{use_domain}")
    started: list[CaptureListener | Kamailio] = []
    sides = {}
    try:
        for name, extra in (("c", {"WITH_C_MODULE": "1"}), ("py", {})):
            listener = CaptureListener()  # first: the C module refuses to start without it
            started.append(listener)
            kamailio = Kamailio(
                cfg=CFG,
                run_dir=run_dir / name,
                defines={"DIAMETER_PORT": str(listener.port), "USE_DOMAIN": str(use_domain), "CHILDREN": "1", **extra},
            )
            kamailio.start()
            started.append(kamailio)
            sides[name] = Side(name, listener, kamailio)
        yield Pair(use_domain, sides["c"], sides["py"])
        for side in sides.values():
            assert side.kamailio.alive(), f"{side.name}: {side.kamailio.log()[-4000:]}"
            side.kamailio.assert_no_crash()
    finally:
        for thing in reversed(started):
            thing.stop()


BOTH = pytest.mark.parametrize("pair", [0, 1], indirect=True, ids=["use_domain=0", "use_domain=1"])


# --- the requests --------------------------------------------------------------------


def digest(
    username: str = "alice@example.com", realm: str = "example.com", uri: str = "sip:example.com", tail: str = ""
) -> str:
    return (
        f'Digest username="{username}", realm="{realm}", nonce="{NONCE}", uri="{uri}", '
        f'response="{RESPONSE}", algorithm=MD5, cnonce="0a4f113b", qop=auth, nc=00000001{tail}'
    )


def sip(
    case_id: str,
    method: str,
    ruri: str,
    op: str | None,
    *,
    from_: str = "<sip:alice@example.com>;tag=f1",
    to: str = "<sip:bob@example.com>",
    headers: tuple[str, ...] = (),
) -> str:
    branch = "z9hG4bK" + hashlib.sha1(case_id.encode()).hexdigest()[:16]
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:LPORT;branch={branch}",
        f"From: {from_}",
        f"To: {to}",
        f"Call-ID: {case_id}@capture.test",
        f"CSeq: 1 {method}",
        "Max-Forwards: 70",
        *((f"X-Op: {op}",) if op else ()),
        *headers,
        "Content-Length: 0",
        "",
        "",
    ]
    return "\n".join(lines)


def reg(case_id: str, op: str, *, user: str = "alice", domain: str = "example.com", **kw) -> str:
    kw.setdefault("from_", f"<sip:{user}@{domain}>;tag=f1")
    kw.setdefault("to", f"<sip:{user}@{domain}>")
    return sip(case_id, "REGISTER", f"sip:{domain}", op, **kw)


def inv(case_id: str, op: str, ruri: str = "sip:bob@example.com", **kw) -> str:
    return sip(case_id, "INVITE", ruri, op, **kw)


AUTH = "Authorization: " + digest()
PAUTH = "Proxy-Authorization: " + digest(uri="sip:bob@example.com")

AUTHORIZE_CASES = {
    # --- no credentials: Resource, Destination-Realm and User-Name with their NULs
    "register-www": reg("register-www", "www"),
    "invite-proxy": inv("invite-proxy", "proxy"),
    "message-proxy": sip("message-proxy", "MESSAGE", "sip:bob@example.com", "proxy"),
    "options-proxy": sip("options-proxy", "OPTIONS", "sip:bob@example.com", "proxy"),
    "invite-www": inv("invite-www", "www"),
    "register-www-to-differs-from-from": reg(
        "register-www-to-differs-from-from",
        "www",
        from_="<sip:carl@a.example.org>;tag=f1",
        to="<sip:dave@b.example.net>",
    ),
    # REGISTER: proxy takes its lookup realm from From but its identity from To (B15)
    "register-proxy-identity-is-to": reg(
        "register-proxy-identity-is-to",
        "proxy",
        from_="<sip:carl@a.example.org>;tag=f1",
        to="<sip:dave@b.example.net>",
    ),
    "register-www-realm-param": reg("register-www-realm-param", "www-realm", headers=("X-Realm: example.com",)),
    "invite-proxy-realm-param": inv("invite-proxy-realm-param", "proxy-realm", headers=("X-Realm: example.com",)),
    # --- Request-URI forms (§4.3 Resource table)
    "ruri-user-host-port": inv("ruri-user-host-port", "proxy", "sip:bob@example.com:5080"),
    "ruri-user-host-params": inv("ruri-user-host-params", "proxy", "sip:bob@example.com;transport=udp"),
    "ruri-host-port": inv("ruri-host-port", "proxy", "sip:example.com:5080"),
    "ruri-host": inv("ruri-host", "proxy", "sip:example.com"),
    "ruri-ipv6": inv("ruri-ipv6", "proxy", "sip:bob@[2001:db8::1]:5062"),
    "ruri-ipv4-port-params": inv("ruri-ipv4-port-params", "proxy", "sip:bob@192.0.2.7:5061;transport=tcp;lr"),
    "ruri-password-and-headers": inv("ruri-password-and-headers", "proxy", "sip:bob:pw@example.com?subject=x"),
    "ruri-sips": inv("ruri-sips", "proxy", "sips:bob@example.com"),
    "ruri-upper-case-scheme": inv("ruri-upper-case-scheme", "proxy", "SIP:bob@example.com"),
    "ruri-escaped-user": inv("ruri-escaped-user", "proxy", "sip:b%40ob@example.com"),
    "ruri-user-params": inv("ruri-user-params", "proxy", "sip:bob;ext=1@example.com"),
    # Kamailio parses tel: URIs too (user = the number, empty host)
    "ruri-tel": inv("ruri-tel", "proxy", "tel:+15551234;phone-context=example.com"),
    "register-ruri-host-port": sip(
        "register-ruri-host-port",
        "REGISTER",
        "sip:example.com:5080",
        "www",
        from_="<sip:alice@example.com>;tag=f1",
        to="<sip:alice@example.com>",
    ),
    # --- From / To forms
    "from-display-name-and-params": inv(
        "from-display-name-and-params", "proxy", from_='"Alice Smith" <sip:alice@example.com;user=phone>;tag=f1;x=y'
    ),
    "from-without-angle-brackets": inv("from-without-angle-brackets", "proxy", from_="sip:alice@example.com;tag=f1"),
    "from-without-user": inv("from-without-user", "proxy", from_="<sip:example.com>;tag=f1"),
    "from-host-port": inv("from-host-port", "proxy", from_="<sip:alice@example.com:5070>;tag=f1"),
    "from-mixed-case-host": inv("from-mixed-case-host", "proxy", from_="<sip:Alice@Example.COM>;tag=f1"),
    "from-user-with-password": inv("from-user-with-password", "proxy", from_="<sip:alice:pw@example.com>;tag=f1"),
    "from-tel": inv("from-tel", "proxy", from_="<tel:+15551234>;tag=f1"),
    "register-to-without-user": reg(
        "register-to-without-user", "www", from_="<sip:alice@example.com>;tag=f1", to="<sip:example.com>"
    ),
    # --- credentials with a domain in the username: Response and Method follow
    "register-www-credentials": reg("register-www-credentials", "www", headers=(AUTH,)),
    "invite-proxy-credentials": inv("invite-proxy-credentials", "proxy", headers=(PAUTH,)),
    "message-proxy-credentials": sip(
        "message-proxy-credentials", "MESSAGE", "sip:bob@example.com", "proxy", headers=(PAUTH,)
    ),
    "invite-www-credentials": inv("invite-www-credentials", "www", headers=("Authorization: " + digest(),)),
    "register-www-realm-param-credentials": reg(
        "register-www-realm-param-credentials", "www-realm", headers=("X-Realm: example.com", AUTH)
    ),
    "username-sip-uri": reg(
        "username-sip-uri", "www", headers=("Authorization: " + digest(username="sip:alice@dom.org"),)
    ),
    "username-other-domain": reg(
        "username-other-domain", "www", headers=("Authorization: " + digest(username="alice@other.org"),)
    ),
    "credentials-trailing-space-tab": reg("credentials-trailing-space-tab", "www", headers=(AUTH + " \t ",)),
    "credentials-leading-whitespace": reg(
        "credentials-leading-whitespace", "www", headers=("Authorization: \t  " + digest(),)
    ),
    "credentials-folded": reg(
        "credentials-folded",
        "www",
        headers=(
            f'Authorization: Digest username="alice@example.com",\n realm="example.com", nonce="{NONCE}",'
            f'\n\turi="sip:example.com", response="{RESPONSE}"',
        ),
    ),
    "credentials-folded-proxy": inv(
        "credentials-folded-proxy",
        "proxy",
        headers=(
            f'Proxy-Authorization: Digest username="alice@example.com", realm="example.com",\n   nonce="{NONCE}",'
            f' uri="sip:bob@example.com", response="{RESPONSE}"  ',
        ),
    ),
    "two-authorizations-second-matches": reg(
        "two-authorizations-second-matches",
        "www",
        headers=("Authorization: " + digest(realm="other.org"), "Authorization: " + digest(tail=', opaque="2"')),
    ),
    "two-proxy-authorizations-second-matches": inv(
        "two-proxy-authorizations-second-matches",
        "proxy",
        headers=("Proxy-Authorization: " + digest(realm="other.org"), PAUTH),
    ),
    "two-authorizations-first-matches": reg(
        "two-authorizations-first-matches",
        "www",
        headers=(AUTH, "Authorization: " + digest(username="bob@example.com")),
    ),
    "basic-then-digest": reg("basic-then-digest", "www", headers=("Authorization: Basic YWxpY2U6c2VjcmV0", AUTH)),
    "credentials-realm-other-case": reg(
        "credentials-realm-other-case", "www", headers=("Authorization: " + digest(realm="EXAMPLE.COM"),)
    ),
    "credentials-lowercase-header-name": reg(
        "credentials-lowercase-header-name", "www", headers=("authorization: " + digest(),)
    ),
    # --- credentials that are not used
    "credentials-realm-not-matching": reg(
        "credentials-realm-not-matching", "www", headers=("Authorization: " + digest(realm="other.org"),)
    ),
    "proxy-ignores-authorization": inv("proxy-ignores-authorization", "proxy", headers=(AUTH,)),
    "www-ignores-proxy-authorization": reg("www-ignores-proxy-authorization", "www", headers=(PAUTH,)),
    # realm parameter selects credentials whose realm is not the identity host: -5, nothing sent
    "realm-param-mismatch": reg(
        "realm-param-mismatch",
        "www-realm",
        headers=("X-Realm: other.org", "Authorization: " + digest(realm="other.org")),
    ),
    # --- malformed credentials: 400, nothing sent
    "credentials-unterminated-quote": reg(
        "credentials-unterminated-quote",
        "www",
        headers=('Authorization: Digest username="alice@example.com", realm="example.com", nonce="abc',),
    ),
    # --- odd credentials that Kamailio's digest parser accepts (the C module sends them on)
    # the Authorization of tests/sipp/register_malformed.xml, with user@domain (B1 otherwise):
    # after each value the parser skips to the next comma, so this is no 400 for it
    "credentials-garbled-quotes": reg(
        "credentials-garbled-quotes",
        "www",
        headers=(
            'Authorization: Digest username="alice@example.com", realm="example.com", nonce="abc, '
            'uri="sip:example.com", response="0"',
        ),
    ),
    # token values may hold '@' for Kamailio (RFC 7616 wants username quoted)
    "credentials-unquoted-params": reg(
        "credentials-unquoted-params",
        "www",
        headers=(f"Authorization: Digest username=alice@example.com,realm=example.com,nonce={NONCE},response=0",),
    ),
    # a quoted-pair in the username. Kamailio's digest parser ends a quoted value at the
    # first '"' whatever precedes it, so username="al\"ice@example.com" is "al\" there:
    # no domain, hence B1 (left out). Here the cut leaves an '@' in the C module's value.
    "username-quoted-pair": reg(
        "username-quoted-pair", "www", headers=("Authorization: " + digest(username='alice@ex\\"ample.com'),)
    ),
    # a parameter given twice: which occurrence is used?
    "username-twice": reg(
        "username-twice", "www", headers=("Authorization: " + digest(tail=', username="zed@example.com"'),)
    ),
    # B1 (left out): username="alice", "sip:alice", "a@" with a matching realm abort the C module.
}

GROUP_CASES = {
    "user-in-ruri": inv("user-in-ruri", "user-in-ruri", "sip:carl@ruri.example.net"),
    "user-in-ruri-host-port": inv("user-in-ruri-host-port", "user-in-ruri", "sip:bob@example.com:5080"),
    "user-in-ruri-params": inv("user-in-ruri-params", "user-in-ruri", "sip:bob@example.com;transport=udp"),
    "user-in-ruri-without-user": inv("user-in-ruri-without-user", "user-in-ruri", "sip:example.com"),
    "user-in-ruri-ipv6": inv("user-in-ruri-ipv6", "user-in-ruri", "sip:bob@[2001:db8::1]:5062"),
    "user-in-ruri-tel": inv("user-in-ruri-tel", "user-in-ruri", "tel:+15551234"),
    "user-in-from": inv("user-in-from", "user-in-from", from_="<sip:dave@from.example.org>;tag=f1"),
    "user-in-from-display-name-and-params": inv(
        "user-in-from-display-name-and-params",
        "user-in-from",
        from_='"Dave D." <sip:dave@from.example.org;user=phone>;tag=f1',
    ),
    "user-in-from-without-user": inv("user-in-from-without-user", "user-in-from", from_="<sip:example.com>;tag=f1"),
    "user-in-from-ipv6-ruri": inv(
        "user-in-from-ipv6-ruri", "user-in-from", "sip:bob@[2001:db8::1]:5062", from_="<sip:dave@example.org>;tag=f1"
    ),
    "user-in-to": inv("user-in-to", "user-in-to", to='"Erin" <sip:erin@to.example.org:5090;user=phone>'),
    "user-in-to-without-user": inv("user-in-to-without-user", "user-in-to", to="<sip:to.example.org>"),
    "user-in-to-ipv6": inv("user-in-to-ipv6", "user-in-to", to="<sip:erin@[2001:db8::2]:5090>"),
    # who=Credentials after a successful authorize in the same request
    "user-in-credentials-www": reg("user-in-credentials-www", "user-in-credentials", headers=(AUTH,)),
    "user-in-credentials-proxy": inv("user-in-credentials-proxy", "user-in-credentials-proxy", headers=(PAUTH,)),
    "user-in-credentials-sips-username": reg(
        "user-in-credentials-sips-username",
        "user-in-credentials",
        headers=("Authorization: " + digest(username="sips:alice@dom.org"),),
    ),
    "user-in-credentials-empty-user": reg(
        "user-in-credentials-empty-user",
        "user-in-credentials",
        headers=("Authorization: " + digest(username="@example.com"),),
    ),
    "user-in-credentials-sip-username": reg(
        "user-in-credentials-sip-username",
        "user-in-credentials",
        headers=("Authorization: " + digest(username="sip:alice@dom.org"),),
    ),
    "user-in-credentials-second-header": reg(
        "user-in-credentials-second-header",
        "user-in-credentials",
        headers=("Authorization: " + digest(username="bob@other.org", realm="other.org"), AUTH),
    ),
    "user-in-credentials-ruri-elsewhere": inv(
        "user-in-credentials-ruri-elsewhere", "user-in-credentials-proxy", "sip:vm@ruri.example.net", headers=(PAUTH,)
    ),
    # nothing authorized: -4 and nothing sent for who=Credentials
    "user-in-credentials-alone": reg("user-in-credentials-alone", "user-in-credentials-alone", headers=(AUTH,)),
    "user-in-credentials-realm-not-matching": reg(
        "user-in-credentials-realm-not-matching",
        "user-in-credentials",
        headers=("Authorization: " + digest(realm="other.org"),),
    ),
}

EXEMPT_CASES = {
    "ack-www": sip("ack-www", "ACK", "sip:bob@example.com", "www", headers=(AUTH,)),
    "ack-proxy": sip("ack-proxy", "ACK", "sip:bob@example.com", "proxy", headers=(PAUTH,)),
    "ack-proxy-no-credentials": sip("ack-proxy-no-credentials", "ACK", "sip:bob@example.com", "proxy"),
    "cancel-proxy": sip("cancel-proxy", "CANCEL", "sip:bob@example.com", "proxy"),
    "cancel-www-credentials": sip("cancel-www-credentials", "CANCEL", "sip:bob@example.com", "www", headers=(AUTH,)),
}


def mask_uninitialised(raw: bytes) -> bytes:
    """Zero the last User-Name byte of a use_domain=1 group check for a URI without user.

    The C module sends the domain followed by one byte of a pkg_malloc'd buffer that
    nothing writes (§7 of the protocol notes): seen as 00 and as f0 in this setup. The
    plugin sends 00, which test_uninitialised_byte_is_a_nul checks; here it is masked.
    """
    msg = avps(raw)
    if not any(code == legacy.AVP_SERVICE_TYPE and data == legacy.SERVICE_GROUP for _o, code, _f, _l, data in msg):
        return raw
    buf = bytearray(raw)
    for off, code, _flags, length, data in msg:
        if code == legacy.AVP_USER_NAME and b"@" not in data:
            buf[off + length - 1] = 0
    return bytes(buf)


def _compare(pair: Pair, text: str) -> tuple[list[bytes], SipReply | None]:
    c_reqs, c_reply = pair.c.exchange(text)
    py_reqs, py_reply = pair.py.exchange(text)
    c_norm = [zero_msgid(r) for r in c_reqs]
    py_norm = [zero_msgid(r) for r in py_reqs]
    if pair.use_domain:
        c_norm = [mask_uninitialised(r) for r in c_norm]
        py_norm = [mask_uninitialised(r) for r in py_norm]
    assert py_norm == c_norm, difference(c_reqs, py_reqs)
    if c_reply is None or py_reply is None:
        assert c_reply is py_reply
    else:
        assert (py_reply.code, py_reply.reason) == (c_reply.code, c_reply.reason), (
            f"SIP replies differ: C module {c_reply.code} {c_reply.reason!r}, "
            f"plugin {py_reply.code} {py_reply.reason!r}"
        )
        for name in ("WWW-Authenticate", "Proxy-Authenticate"):
            assert py_reply.header(name) == c_reply.header(name), name
    return c_reqs, c_reply


@BOTH
@pytest.mark.parametrize("text", list(AUTHORIZE_CASES.values()), ids=list(AUTHORIZE_CASES))
def test_authorize_request_is_identical(pair: Pair, text: str) -> None:
    _compare(pair, text)


@BOTH
@pytest.mark.parametrize("text", list(GROUP_CASES.values()), ids=list(GROUP_CASES))
def test_is_user_in_request_is_identical(pair: Pair, text: str) -> None:
    _compare(pair, text)


@BOTH
@pytest.mark.parametrize("text", list(EXEMPT_CASES.values()), ids=list(EXEMPT_CASES))
def test_ack_and_cancel_send_nothing(pair: Pair, text: str) -> None:
    c_reqs, c_reply = _compare(pair, text)
    assert c_reqs == []
    if c_reply is not None:
        assert c_reply.reason == "w=1 g=none"


@pytest.mark.parametrize("pair", [0], indirect=True, ids=["use_domain=0"])
def test_capture_sees_the_documented_bytes(pair: Pair) -> None:
    """The C module's side of the setup reproduces §4.5 of the protocol notes."""
    reqs, reply = pair.c.exchange(inv("worked-example", "proxy", "sip:bob@example.com:5080"))
    assert reply is not None and reply.code == 407, reply
    expected = bytes.fromhex(
        "01000078 80000109 00000001 00000000 00000000"
        "00000190 4000001c" + b"bob@example.com:5080".hex() + "0000011b 40000013" + b"example.com".hex() + "00"
        "00000194 40000009 36 000000"
        "00000196 0000000c 00000000"
        "00000001 4000001a" + b"alice@example.com".hex() + "00 0000"
    )
    assert [zero_msgid(r) for r in reqs] == [expected], difference([expected], reqs)


@pytest.mark.parametrize("pair", [1], indirect=True, ids=["use_domain=1"])
def test_uninitialised_byte_is_a_nul(pair: Pair) -> None:
    """Where the C module sends an unwritten byte (masked above), the plugin sends 00."""
    reqs, reply = pair.py.exchange(GROUP_CASES["user-in-from-without-user"])
    assert reply is not None and reply.reason == "w=none g=1"
    assert len(reqs) == 1
    assert legacy.decode_message(reqs[0]).first(legacy.AVP_USER_NAME) == b"example.com\0"
