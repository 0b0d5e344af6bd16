"""rfc4740 over TLS, real Kamailio: tls_ca_file is the only trust, and our private key stays private.

The machine's CA store is played by a CA of the test's own, handed to Kamailio's
OpenSSL with SSL_CERT_FILE (what ``load_default_certs`` reads), so no public CA is
needed to show which store a connection trusts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ReferenceServer, SipClient, example_kamailio, free_port
from tests.real.conftest import make_server
from tests.real.test_rfc4740 import rfc4740_defines
from tests.tlsca import Pki, make_pki

pytestmark = pytest.mark.kamailio


@pytest.fixture(scope="module")
def system_ca(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The CA that stands for the system's store, and the server's certificate from it."""
    return make_pki(tmp_path_factory.mktemp("system-ca"), ca_cn="stand-in for a public CA")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, system_ca: Pki) -> Iterator[tuple[ReferenceServer, int]]:
    s = make_server(tmp_path_factory.mktemp("server"))
    port = free_port()
    s.extra = (
        "--origin-realm", "example.com",
        "--diameter-tls-listen", f"127.0.0.1:{port}",
        "--tls-cert", str(system_ca.server_cert), "--tls-key", str(system_ca.server_key),
    )  # fmt: skip
    s.start()
    yield s, port
    s.stop()


def register_through(run_dir: Path, server: ReferenceServer, port: int, system_ca: Pki, **defines: str) -> int:
    k = example_kamailio(run_dir, server.port, children=1, **rfc4740_defines(port, DIAMETER_TLS="1", **defines))
    k.with_env({"SSL_CERT_FILE": str(system_ca.ca_cert)})
    k.start()
    try:
        return SipClient(k.sip_port).request("REGISTER", "sip:example.com").code
    finally:
        k.stop()
        k.assert_no_crash()


def test_without_tls_ca_file_the_system_store_is_trusted(server, system_ca, tmp_path):
    """The control: the stand-in store does reach Kamailio's OpenSSL."""
    s, port = server
    assert register_through(tmp_path / "k", s, port, system_ca) == 401


def test_with_tls_ca_file_the_system_store_is_not_trusted(server, system_ca, tmp_path):
    """It was: tls_ca_file joined the system's CAs, and a server any of them vouched for got the MAR."""
    s, port = server
    private = make_pki(tmp_path / "private-ca", ca_cn="our private CA")
    k_dir = tmp_path / "k"
    assert register_through(k_dir, s, port, system_ca, TLS_CA_FILE=f'"{private.ca_cert}"') == 500
    assert "certificate verify failed" in (k_dir / "kamailio.log").read_text(errors="replace")


@pytest.mark.parametrize(("mode", "starts"), [(0o644, False), (0o640, True)])
def test_a_private_key_others_may_read(server, system_ca, tmp_path, mode, starts):
    """Anyone may read it: Kamailio does not start, and says which setting and what to do.
    Only its group may: Kamailio starts and warns."""
    s, port = server
    key = tmp_path / "client.key"
    key.write_bytes(system_ca.client_key.read_bytes())
    key.chmod(mode)
    defines = {"TLS_CERT_FILE": f'"{system_ca.client_cert}"', "TLS_KEY_FILE": f'"{key}"'}
    k = example_kamailio(tmp_path / "k", s.port, children=1, **rfc4740_defines(port, DIAMETER_TLS="1", **defines))
    k.with_env({"SSL_CERT_FILE": str(system_ca.ca_cert)})
    if starts:
        k.start()
        k.stop()
        assert f"auth_diameter.tls_key_file {key} is accessible to its group" in k.log()
    else:
        with pytest.raises(RuntimeError, match="exited"):
            k.start()
        assert f"auth_diameter.tls_key_file {key} is accessible to every user" in k.log()
        assert f"chmod 600 {key}" in k.log()
