"""The reference server's RFC 6733 listener over TLS (--diameter-tls-listen), with Python's ssl as the peer.

A throwaway CA (tests/tlsca.py) signs the server's and the client's certificates;
a second CA stands for everyone else. The client does what a Diameter peer on port
5658 does: handshake, then CER, then requests; our encoders build them and our
decoders read the answers, since what is under test here is the transport.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kamailio_auth_diameter.server.diameter import server_tls_context
from kamailio_auth_diameter.wire import base, sip_app
from kamailio_auth_diameter.wire.base import Capabilities, Identity
from kamailio_auth_diameter.wire.framing import HEADER_LEN
from tests.harness import PYTHON, ROOT, ReferenceServer, free_port, wait_tcp
from tests.real.conftest import credentials, make_server
from tests.tlsca import CLIENT_EXTENSIONS, Pki, _issue, make_pki

CLIENT = Identity("kamailio.example.com", "example.com")
SERVER = "aaa.example.com"


@dataclass(frozen=True)
class TlsServer:
    server: ReferenceServer
    tls_port: int
    pki: Pki  # the CA the server trusts, and the certificates it signed
    stranger: Pki  # another CA, its own server and client certificates


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    tmp = tmp_path_factory.mktemp("tls")
    pki, stranger = make_pki(tmp / "pki"), make_pki(tmp / "stranger", ca_cn="someone else's CA")
    s = make_server(tmp)
    s.diameter_port = free_port()
    tls_port = free_port()
    s.extra = (
        "--diameter-tls-listen", f"127.0.0.1:{tls_port}",
        "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key), "--tls-ca", str(pki.ca_cert),
        "--origin-host", SERVER, "--origin-realm", "example.com", "-v",
    )  # fmt: skip
    s.start()
    try:
        wait_tcp(tls_port)
        yield TlsServer(s, tls_port, pki, stranger)
    finally:
        s.stop()


def _context(trust: Pki, identity: Pki | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(trust.ca_cert))
    if identity is not None:
        ctx.load_cert_chain(identity.client_cert, identity.client_key)
    return ctx


@contextlib.contextmanager
def _connect(port: int, ctx: ssl.SSLContext) -> Iterator[ssl.SSLSocket]:
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="localhost") as s:
        yield s


def _read(sock: socket.socket) -> bytes | None:
    """One whole message, or None at end of stream."""
    data = b""
    want = HEADER_LEN
    while len(data) < want:
        chunk = sock.recv(want - len(data))
        if not chunk:
            assert not data, f"connection closed inside a message after {len(data)} bytes"
            return None
        data += chunk
        if len(data) == HEADER_LEN:
            want = int.from_bytes(data[1:4], "big")
    return data


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    sock.sendall(request)
    answer = _read(sock)
    assert answer is not None, "the server closed the connection instead of answering"
    return answer


def _cer(sock: socket.socket) -> int | None:
    caps = Capabilities(CLIENT, ("127.0.0.1",), (sip_app.APP_SIP,))
    cea = base.decode(_exchange(sock, base.encode_cer(caps, 1, 1)))
    assert base.decode_capabilities(cea).identity.origin_host == SERVER
    return base.unsigned(cea.avps, base.AVP_RESULT_CODE)


def _mar(credentials: sip_app.DigestResponse | None = None) -> sip_app.MultimediaAuthRequest:
    return sip_app.MultimediaAuthRequest(
        session_id=f"{CLIENT.origin_host};1;2",
        origin_host=CLIENT.origin_host,
        origin_realm=CLIENT.origin_realm,
        destination_realm="example.com",
        sip_aor="sip:alice@example.com",
        sip_method="REGISTER",
        user_name="alice",
        server_uri=f"sip:{CLIENT.origin_host}",
        credentials=credentials,
    )


def test_cer_mar_and_dpr_over_tls(tls_server: TlsServer) -> None:
    with _connect(tls_server.tls_port, _context(tls_server.pki, tls_server.pki)) as sock:
        assert sock.version() == "TLSv1.3"
        assert _cer(sock) == base.RESULT_SUCCESS
        _, maa = sip_app.decode_maa(_exchange(sock, sip_app.encode_mar(_mar(), 2, 2)))
        assert maa.result_code == base.RESULT_MULTI_ROUND_AUTH
        assert maa.challenge is not None and maa.challenge.realm == "example.com"
        info, maa = sip_app.decode_maa(
            _exchange(sock, sip_app.encode_mar(_mar(credentials(maa.challenge, "secret")), 3, 3))
        )
        assert (maa.result_code, info.hop_by_hop, info.origin_host) == (base.RESULT_SUCCESS, 3, SERVER)
        dpa = base.decode(_exchange(sock, base.encode_dpr(CLIENT, base.DISCONNECT_REBOOTING, 4, 4)))
        assert (dpa.header.command_code, base.unsigned(dpa.avps, base.AVP_RESULT_CODE)) == (282, base.RESULT_SUCCESS)
        assert _read(sock) is None


def test_tls_1_2_is_served(tls_server: TlsServer) -> None:
    ctx = _context(tls_server.pki, tls_server.pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with _connect(tls_server.tls_port, ctx) as sock:
        assert sock.version() == "TLSv1.2"
        assert _cer(sock) == base.RESULT_SUCCESS


def test_plain_listener_serves_beside_tls(tls_server: TlsServer) -> None:
    assert tls_server.server.diameter_port is not None
    with socket.create_connection(("127.0.0.1", tls_server.server.diameter_port), timeout=5) as sock:
        assert _cer(sock) == base.RESULT_SUCCESS


def test_shutdown_sends_dpr_over_tls(tls_server: TlsServer, tmp_path: Path) -> None:
    pki, port = tls_server.pki, free_port()
    s = make_server(tmp_path)
    s.extra = ("--diameter-tls-listen", f"127.0.0.1:{port}", "--tls-cert", str(pki.server_cert),
               "--tls-key", str(pki.server_key), "--origin-host", SERVER)  # fmt: skip
    s.start()
    try:
        wait_tcp(port)
        with _connect(port, _context(pki, pki)) as sock:
            assert _cer(sock) == base.RESULT_SUCCESS
            assert s.proc is not None
            s.proc.send_signal(signal.SIGTERM)
            raw = _read(sock)
            assert raw is not None, "closed without a DPR"
            dpr = base.decode(raw)
            assert (dpr.header.command_code, dpr.header.is_request) == (base.CMD_DISCONNECT_PEER, True)
            assert base.unsigned(dpr.avps, base.AVP_DISCONNECT_CAUSE) == base.DISCONNECT_REBOOTING
            sock.sendall(base.encode_dpa(dpr, CLIENT))
            assert _read(sock) is None
        assert s.proc.wait(5) == 0
    finally:
        s.stop()


def _answered(tls_server: TlsServer, identity: Pki | None) -> bool:
    """Whether a client presenting this certificate gets its CER answered.

    With TLS 1.3 the client finishes its handshake before the server has checked its
    certificate, and asyncio closes a connection whose handshake failed without sending
    the TLS alert, so a refusal shows as an end of stream or a reset; on Python 3.12+,
    which no longer ignores an end of stream without close_notify, as SSLEOFError, or
    BrokenPipeError when the alert OpenSSL then sends finds the socket closed."""
    caps = Capabilities(CLIENT, ("127.0.0.1",), (sip_app.APP_SIP,))
    try:
        with _connect(tls_server.tls_port, _context(tls_server.pki, identity)) as sock:
            sock.sendall(base.encode_cer(caps, 1, 1))
            return _read(sock) is not None
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return False


def test_client_without_a_certificate_is_refused(tls_server: TlsServer) -> None:
    assert _answered(tls_server, tls_server.pki)
    assert not _answered(tls_server, None)


def test_client_with_a_certificate_of_another_ca_is_refused(tls_server: TlsServer) -> None:
    assert not _answered(tls_server, tls_server.stranger)


def test_client_that_does_not_trust_the_server_gives_up(tls_server: TlsServer) -> None:
    ctx = _context(tls_server.stranger, tls_server.pki)
    with (
        pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"),
        _connect(tls_server.tls_port, ctx),
    ):
        pass


def test_log_is_clean(tls_server: TlsServer) -> None:
    """Refused handshakes leave no traceback (asyncio logs them only in its debug mode)."""
    assert not _answered(tls_server, None)
    log = Path(tls_server.server.log_path).read_text()
    assert "Diameter over TLS listener on 127.0.0.1" in log
    for bad in ("Traceback", "Fatal error", "Exception in callback"):
        assert bad not in log


def test_context_is_tls_1_2_or_later_and_asks_for_client_certificates(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    ctx = server_tls_context(str(pki.server_cert), str(pki.server_key), str(pki.ca_cert))
    assert (ctx.minimum_version, ctx.verify_mode) == (ssl.TLSVersion.TLSv1_2, ssl.CERT_REQUIRED)
    assert server_tls_context(str(pki.server_cert), str(pki.server_key)).verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (("--tls-cert", "{missing}", "--tls-key", "{server_key}"), "--tls-cert {missing}: No such file or directory"),
        (("--tls-cert", "{server_key}", "--tls-key", "{server_key}"), "--tls-cert {server_key}: no PEM certificate"),
        (("--tls-cert", "{server_cert}", "--tls-key", "{client_key}"), "--tls-key {client_key}: not the private key"),
        (
            ("--tls-cert", "{server_cert}", "--tls-key", "{encrypted_key}"),
            "--tls-key {encrypted_key}: the key is encrypted",
        ),
        (
            ("--tls-cert", "{server_cert}", "--tls-key", "{server_key}", "--tls-ca", "{server_key}"),
            "--tls-ca {server_key}: no PEM certificate",
        ),
        (("--tls-cert", "{server_cert}"), "--diameter-tls-listen needs --tls-cert and --tls-key"),
    ],
)
def test_bad_tls_options_stop_the_start(tmp_path: Path, options: tuple[str, ...], error: str) -> None:
    pki = make_pki(tmp_path / "pki")
    names = {
        "missing": str(tmp_path / "missing.pem"),
        "server_cert": str(pki.server_cert),
        "server_key": str(pki.server_key),
        "client_key": str(pki.client_key),
        "encrypted_key": str(tmp_path / "encrypted.key"),
    }
    subprocess.run(
        ["openssl", "pkey", "-in", pki.server_key, "-aes256", "-passout", "pass:x", "-out", names["encrypted_key"]],
        check=True,
        timeout=30,
    )
    r = subprocess.run(
        [PYTHON, "-m", "kamailio_auth_diameter.server", "serve", "--db", str(tmp_path / "users.db"),
         "--legacy-listen", f"127.0.0.1:{free_port()}", "--diameter-tls-listen", f"127.0.0.1:{free_port()}",
         *(o.format(**names) for o in options)],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.startswith(f"error: {error.format(**names)}"), r.stderr


def test_tls_options_without_the_tls_listener_are_refused(tmp_path: Path) -> None:
    r = subprocess.run(
        [PYTHON, "-m", "kamailio_auth_diameter.server", "serve", "--db", str(tmp_path / "users.db"),
         "--legacy-listen", f"127.0.0.1:{free_port()}", "--tls-ca", "ca.pem"],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert (r.returncode, r.stderr) == (1, "error: --tls-ca without --diameter-tls-listen\n")


def test_cer_origin_host_must_be_a_name_of_the_client_certificate(tls_server: TlsServer) -> None:
    """The client certificate names kamailio.example.com and *.kamailio.example.com: a CER
    claiming another Origin-Host gets 3010 with the reason, then the connection closes."""
    caps = Capabilities(Identity("impostor.example.com", "example.com"), ("127.0.0.1",), (sip_app.APP_SIP,))
    with _connect(tls_server.tls_port, _context(tls_server.pki, tls_server.pki)) as sock:
        cea = base.decode(_exchange(sock, base.encode_cer(caps, 1, 1)))
        assert base.unsigned(cea.avps, base.AVP_RESULT_CODE) == base.RESULT_UNKNOWN_PEER
        assert base.text(cea.avps, base.AVP_ERROR_MESSAGE) == (
            "Origin-Host 'impostor.example.com' is not a name of its TLS certificate "
            "(kamailio.example.com, *.kamailio.example.com)"
        )
        assert _read(sock) is None
    assert "refused CER from 127.0.0.1:" in tls_server.server.log_path.read_text()


def _wildcard_client(tls_server: TlsServer, tmp_path: Path) -> ssl.SSLContext:
    """A client certificate for every Kamailio worker of origin_host sip1.example.com."""
    pki = tls_server.pki
    extensions = CLIENT_EXTENSIONS + "subjectAltName=DNS:*.sip1.example.com\n"
    cn = "not-used-when-there-are-sans.example.com"
    cert, key = _issue(tmp_path, "workers", cn, extensions, pki.ca_cert, pki.ca_key)
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(cert, key)
    return ctx


@pytest.mark.parametrize(
    ("origin_host", "code"),
    [
        ("w1.sip1.example.com", base.RESULT_SUCCESS),
        ("W17.Sip1.Example.Com", base.RESULT_SUCCESS),
        ("sip1.example.com", base.RESULT_UNKNOWN_PEER),
        ("a.w1.sip1.example.com", base.RESULT_UNKNOWN_PEER),
        ("not-used-when-there-are-sans.example.com", base.RESULT_UNKNOWN_PEER),
    ],
)
def test_a_wildcard_certificate_names_each_worker(
    tls_server: TlsServer, tmp_path: Path, origin_host: str, code: int
) -> None:
    caps = Capabilities(Identity(origin_host, "example.com"), ("127.0.0.1",), (sip_app.APP_SIP,))
    with _connect(tls_server.tls_port, _wildcard_client(tls_server, tmp_path)) as sock:
        cea = base.decode(_exchange(sock, base.encode_cer(caps, 1, 1)))
        assert base.unsigned(cea.avps, base.AVP_RESULT_CODE) == code


def test_a_tls_key_others_can_read_stops_the_start_and_its_group_gets_a_warning(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    key = tmp_path / "server.key"
    key.write_bytes(pki.server_key.read_bytes())
    common = ("serve", "--db", str(tmp_path / "users.db"), "--legacy-listen", f"127.0.0.1:{free_port()}",
              "--diameter-tls-listen", f"127.0.0.1:{free_port()}", "--tls-cert", str(pki.server_cert),
              "--tls-key", str(key))  # fmt: skip
    key.chmod(0o644)
    r = subprocess.run([PYTHON, "-m", "kamailio_auth_diameter.server", *common],
                       cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.startswith(f"error: --tls-key {key} is accessible to every user of this machine (mode 0644)")
    key.chmod(0o640)
    s = make_server(tmp_path)
    tls_port = free_port()
    s.extra = ("--diameter-tls-listen", f"127.0.0.1:{tls_port}", "--tls-cert", str(pki.server_cert),
               "--tls-key", str(key))  # fmt: skip
    s.start()
    try:
        wait_tcp(tls_port)
        assert f"WARNING --tls-key {key} is accessible to its group (mode 0640)" in s.log_path.read_text()
    finally:
        s.stop()
