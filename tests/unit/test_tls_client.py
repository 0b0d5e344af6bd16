"""transport/tls: what the client trusts, and who may read its private key."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from kamailio_auth_diameter import settings
from kamailio_auth_diameter.settings import SettingsError
from kamailio_auth_diameter.transport.tls import client_context, key_file_warning
from tests.tlsca import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))  # openssl writes the keys 0600


def tls(**values: object) -> settings.Settings:
    return settings.parse({"protocol": "rfc4740", "use_tls": 1, **values})


def test_a_ca_file_is_all_the_client_trusts(pki: Pki) -> None:
    """It was added to the system's CAs: a client meant to trust one private CA trusted 145."""
    cas = client_context(tls(tls_ca_file=str(pki.ca_cert))).get_ca_certs()
    assert [dict(rdn[0] for rdn in ca["subject"])["commonName"] for ca in cas] == ["kamailio-auth-diameter test CA"]


def test_without_a_ca_file_the_system_store_is_trusted() -> None:
    ctx = client_context(tls())
    assert ctx.cert_store_stats()["x509_ca"] == ssl.create_default_context().cert_store_stats()["x509_ca"]
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname


def test_a_ca_file_context_still_verifies_names_and_needs_tls_1_2(pki: Pki) -> None:
    ctx = client_context(tls(tls_ca_file=str(pki.ca_cert)))
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2


def test_a_peer_closing_without_close_notify_reads_as_an_end_of_stream(pki: Pki) -> None:
    """As on Python 3.11. On 3.12+ the read raised SSLEOFError, or BrokenPipeError once
    OpenSSL's alert found the socket closed: a TLS 1.3 server refusing our certificate
    after the handshake was logged as "receive failed: [Errno 32] Broken pipe"."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki.server_cert, pki.server_key)
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    theirs.settimeout(5)

    def handshake_then_close() -> None:
        server = server_ctx.wrap_socket(theirs, server_side=True)
        server.close()  # no unwrap(): the TCP connection ends without a close_notify

    peer = threading.Thread(target=handshake_then_close)
    peer.start()
    with client_context(tls(tls_ca_file=str(pki.ca_cert))).wrap_socket(ours, server_hostname="localhost") as s:
        peer.join(5)
        assert s.recv(65536) == b""


def test_a_key_anyone_may_read_is_refused(pki: Pki, tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    key.write_bytes(pki.client_key.read_bytes())
    key.chmod(0o644)
    s = tls(tls_cert_file=str(pki.client_cert), tls_key_file=str(key))
    with pytest.raises(SettingsError, match=r"^auth_diameter\.tls_key_file .* every user .* chmod 600"):
        client_context(s)
    with pytest.raises(SettingsError, match=r"auth_diameter\.tls_key_file"):
        key_file_warning(s)


def test_a_certificate_file_that_holds_the_key_is_checked_as_the_key(pki: Pki, tmp_path: Path) -> None:
    both = tmp_path / "client.pem"
    both.write_bytes(pki.client_cert.read_bytes() + pki.client_key.read_bytes())
    both.chmod(0o604)
    with pytest.raises(SettingsError, match=r"^auth_diameter\.tls_cert_file "):
        client_context(tls(tls_cert_file=str(both)))
    both.chmod(0o600)
    client_context(tls(tls_cert_file=str(both)))


def test_a_key_its_group_may_read_is_used_with_a_warning(pki: Pki, tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    key.write_bytes(pki.client_key.read_bytes())
    key.chmod(0o640)
    s = tls(tls_cert_file=str(pki.client_cert), tls_key_file=str(key))
    client_context(s)
    warning = key_file_warning(s)
    assert warning is not None and warning.startswith("auth_diameter.tls_key_file ") and "group" in warning
    key.chmod(0o600)
    assert key_file_warning(s) is None


def test_no_key_no_warning(pki: Pki) -> None:
    assert key_file_warning(tls()) is None
    assert key_file_warning(tls(tls_ca_file=str(pki.ca_cert))) is None
