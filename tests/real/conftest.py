"""Fixtures with real processes (the reference server, Kamailio running the example cfg,
PostgreSQL) and the helpers the real tests share."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from kamailio_auth_diameter import digest
from kamailio_auth_diameter.wire import sip_app
from tests.harness import Kamailio, Postgres, ReferenceServer, example_kamailio, sipp

USERS = (("alice", "example.com", "secret"), ("bob", "example.com", "bobpw"))
GROUPS = (("alice", "voicemail"),)


def make_server(tmp: Path) -> ReferenceServer:
    server = ReferenceServer(db=tmp / "users.db", log_path=tmp / "server.log")
    for user in USERS:
        server.add_user(*user)
    for member in GROUPS:
        server.add_group(*member)
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceServer]:
    s = make_server(tmp_path_factory.mktemp("server")).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def kamailio(tmp_path_factory: pytest.TempPathFactory, server: ReferenceServer) -> Iterator[Kamailio]:
    k = example_kamailio(tmp_path_factory.mktemp("kamailio"), server.port).start()
    yield k
    k.stop()
    k.assert_no_crash()


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    p = Postgres(log_path=tmp_path_factory.mktemp("postgres") / "postgres.log")
    try:
        yield p.start()
    finally:
        p.remove()


def run(kamailio: Kamailio, tmp_path: Path, scenario: str, **kw) -> None:
    """One sipp scenario against Kamailio, in a directory of its own; every call must pass."""
    r = sipp(scenario, kamailio.sip_port, run_dir=tmp_path / scenario, **kw)
    assert r.returncode == 0, r.output


def mar_count(server: ReferenceServer) -> int:
    """MARs the server answered so far (it logs each with -v)."""
    return len(re.findall(r"command 286 from", server.log_path.read_text(errors="replace")))


def credentials(challenge: sip_app.DigestChallenge, password: str, count: int = 1) -> sip_app.DigestResponse:
    """alice's answer to a challenge, for a REGISTER to sip:example.com; ``count`` is its
    nonce-count, which must grow each time the nonce is used again (the server's replay guard)."""
    uri, nc, cnonce = "sip:example.com", f"{count:08x}", "0a4f113b"
    d = digest.DigestInput(method="REGISTER", uri=uri, nonce=challenge.nonce, qop="auth", nc=nc, cnonce=cnonce)
    return sip_app.DigestResponse(
        username="alice",
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=digest.response(digest.ha1("alice", challenge.realm, password), d),
        algorithm="MD5",
        cnonce=cnonce,
        qop="auth",
        nonce_count=nc,
        method="REGISTER",
    )
