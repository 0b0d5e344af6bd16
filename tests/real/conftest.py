"""Fixtures with real processes: the reference server and Kamailio running the example cfg."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Kamailio, ReferenceServer, example_kamailio

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
