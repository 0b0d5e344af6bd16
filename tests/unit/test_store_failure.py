"""A store that cannot answer (the database is down) fails that request alone with 5012,
in both dialects, and the server goes on; choosing and opening the store from ``--db``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kamailio_auth_diameter.nonce import NonceFactory
from kamailio_auth_diameter.server.app import Identity, LegacyServer
from kamailio_auth_diameter.server.auth import LegacyAuthority, SipAuthority
from kamailio_auth_diameter.server.store import SqliteStore, StoreError, StoreUnavailable, UserHashes, open_store
from kamailio_auth_diameter.sip.credentials import parse_credentials
from kamailio_auth_diameter.sip.uri import parse_uri
from kamailio_auth_diameter.wire import legacy
from kamailio_auth_diameter.wire.sip_app import DigestResponse, MultimediaAuthRequest, ServerAssignmentRequest

SECRET = b"k" * 32


class DownStore:
    """Every lookup fails the way a store fails when its database is gone."""

    def user_hashes(self, username: str, realm: str) -> UserHashes | None:
        raise StoreUnavailable("connection refused")

    def in_group(self, name: str, group: str) -> bool:
        raise StoreUnavailable("connection refused")

    def user_groups(self, name: str) -> list[str] | None:
        raise StoreUnavailable("connection refused")


def auth_request(nonce: str | None) -> bytes:
    cred = None
    if nonce is not None:
        cred = parse_credentials(
            f'Digest username="alice", realm="example.com", nonce="{nonce}", uri="sip:example.com", response="00",'
            ' qop=auth, nc=00000001, cnonce="c"'
        )
    return legacy.encode_auth_request(
        parse_uri("sip:example.com"), parse_uri("sip:alice@example.com"), 7, cred, "REGISTER"
    )


def test_legacy_store_failure_is_5012_and_the_server_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    nonces = NonceFactory(SECRET)
    server = LegacyServer(LegacyAuthority(DownStore(), nonces), Identity("aaa.test", "test"))
    with caplog.at_level("ERROR"):
        answer = legacy.decode_answer(server.answer(auth_request(nonces.make("example.com"))))
    assert (answer.result_code, answer.challenge) == (5012, None)
    assert "store failed" in caplog.text and "connection refused" in caplog.text
    group = legacy.decode_answer(server.answer(legacy.encode_group_request("example.com", 8, "voicemail", b"alice")))
    assert group.result_code == 5012
    # a challenge needs no lookup: still served while the database is down
    assert legacy.decode_answer(server.answer(auth_request(None))).result_code == 4001
    assert server.stats.by_result == {5012: 2, 4001: 1}


def test_rfc4740_store_failure_is_5012() -> None:
    nonces = NonceFactory(SECRET)
    authority = SipAuthority(DownStore(), nonces)
    nonce = nonces.make("example.com")
    cred = DigestResponse(
        username="alice",
        realm="example.com",
        nonce=nonce,
        uri="sip:example.com",
        response="00",
        algorithm="MD5",
        cnonce="c",
        qop="auth",
        nonce_count="00000001",
    )
    mar = MultimediaAuthRequest(
        session_id="k;1;1",
        origin_host="kamailio.test",
        origin_realm="test",
        destination_realm="test",
        sip_aor="sip:alice@example.com",
        sip_method="REGISTER",
        user_name="alice",
        server_uri="sip:kamailio.test",
        credentials=cred,
    )
    maa = authority.multimedia_auth(mar)
    assert (maa.result_code, maa.challenge) == (5012, None)
    sar = ServerAssignmentRequest(
        session_id="k;1;2",
        origin_host="kamailio.test",
        origin_realm="test",
        destination_realm="test",
        assignment_type=0,
        user_name="alice",
        supported_user_data_types=(),
    )
    assert authority.server_assignment(sar).result_code == 5012


def test_sqlite_failure_after_opening_is_store_unavailable(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "auth.sqlite"))
    store.close()
    with pytest.raises(StoreUnavailable):
        store.user_hashes("alice", "example.com")


def test_open_store_takes_a_path_as_sqlite(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "auth.sqlite"))
    assert isinstance(store, SqliteStore)
    store.close()


@pytest.mark.parametrize("url", ["postgresql://u@127.0.0.1:1/db", "postgres://127.0.0.1/db"])
def test_postgresql_url_without_psycopg_says_what_to_install(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "kamailio_auth_diameter.server.store_pg", raising=False)
    with pytest.raises(StoreError, match=r"needs psycopg 3: pip install 'kamailio-auth-diameter\[postgresql\]'"):
        open_store(url)
