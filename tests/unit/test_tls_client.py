"""transport/tls: what the client trusts, and who may read its private key."""

from __future__ import annotations

import ssl
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
