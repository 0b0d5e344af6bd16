"""RFC 4740 mode over TLS (RFC 6733: port 5658 style, TLS before CER), real Kamailio + sipp, a CA the test makes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import Kamailio, ReferenceServer, example_kamailio, free_port, sipp
from tests.real.conftest import make_server
from tests.real.test_rfc4740 import rfc4740_defines
from tests.tlsca import Pki, make_pki

pytestmark = pytest.mark.kamailio


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[tuple[ReferenceServer, int]]:
    s = make_server(tmp_path_factory.mktemp("server"))
    port = free_port()
    s.extra = (
        "--origin-realm", "example.com", "-v",
        "--diameter-tls-listen", f"127.0.0.1:{port}",
        "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key), "--tls-ca", str(pki.ca_cert),
    )  # fmt: skip
    s.start()
    yield s, port
    s.stop()


def tls_defines(pki: Pki, port: int, cert: bool = True) -> dict[str, str]:
    more = {"DIAMETER_TLS": "1", "TLS_CA_FILE": f'"{pki.ca_cert}"'}
    if cert:
        more |= {"TLS_CERT_FILE": f'"{pki.client_cert}"', "TLS_KEY_FILE": f'"{pki.client_key}"'}
    return rfc4740_defines(port, **more)


@pytest.fixture(scope="module")
def kamailio(tmp_path_factory: pytest.TempPathFactory, tls_server, pki: Pki) -> Iterator[Kamailio]:
    server, port = tls_server
    k = example_kamailio(tmp_path_factory.mktemp("kamailio"), server.port, **tls_defines(pki, port))
    k.start()
    yield k
    k.stop()
    k.assert_no_crash()


def test_register_and_invite_over_tls(kamailio, tls_server, tmp_path):
    r = sipp("register_auth", kamailio.sip_port, run_dir=tmp_path / "r", auth_user="alice", password="secret", calls=5)
    assert r.returncode == 0, r.output
    r = sipp("invite_auth_200", kamailio.sip_port, run_dir=tmp_path / "i", auth_user="alice", password="secret",
             service="voicemail")  # fmt: skip
    assert r.returncode == 0, r.output
    server, _ = tls_server
    assert (
        "CER from w1.kamailio.example.com" in server.log_path.read_text()
        or "CER from w2." in server.log_path.read_text()
    )


def test_without_client_certificate_the_server_refuses_and_we_answer_500(tls_server, pki, tmp_path):
    server, port = tls_server
    k = example_kamailio(tmp_path / "k", server.port, **tls_defines(pki, port, cert=False))
    k.start()
    try:
        r = sipp("register_500", k.sip_port, run_dir=tmp_path / "s")
        assert r.returncode == 0, r.output
        assert "TLS handshake failed" in k.log() or "closed" in k.log()
    finally:
        k.stop()
        k.assert_no_crash()


def test_unreadable_ca_file_stops_kamailio_at_start_up(tls_server, pki, tmp_path):
    server, port = tls_server
    defines = tls_defines(pki, port) | {"TLS_CA_FILE": f'"{tmp_path / "missing.pem"}"'}
    k = example_kamailio(tmp_path / "k", server.port, **defines)
    with pytest.raises(RuntimeError, match="exited"):
        k.start()
    assert "auth_diameter.tls_ca_file: cannot load" in k.log()


def test_a_peer_whose_certificate_does_not_match_is_refused(tls_server, tmp_path):
    server, port = tls_server
    other = make_pki(tmp_path / "other")
    k = example_kamailio(tmp_path / "k", server.port, **tls_defines(other, port))
    k.start()
    try:
        r = sipp("register_500", k.sip_port, run_dir=tmp_path / "s")
        assert r.returncode == 0, r.output
        assert "certificate verify failed" in k.log()
    finally:
        k.stop()
        k.assert_no_crash()
