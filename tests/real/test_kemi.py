"""The same functions called from a KEMI Python routing script (examples/kemi_routing.py)."""

from __future__ import annotations

import pytest

from tests.harness import ROOT, Kamailio, running, sipp
from tests.real.conftest import make_server

pytestmark = pytest.mark.kamailio


def test_kemi_script_flows(tmp_path):
    server = make_server(tmp_path)
    k = Kamailio(
        cfg=ROOT / "examples" / "kemi.cfg",
        run_dir=tmp_path / "k",
        defines={
            "DIAMETER_PORT": str(server.port),
            "KEMI_SCRIPT": f'"{ROOT / "examples" / "kemi_routing.py"}"',
            "CHILDREN": "1",
        },
    )
    k_env = {"AUTH_DIAMETER_SITE": str(ROOT)}
    with running(server, k.with_env(k_env)):
        for scenario, kw in (
            ("register_auth", {"auth_user": "alice", "password": "secret"}),
            ("invite_auth_200", {"auth_user": "alice", "password": "secret", "service": "voicemail"}),
            ("invite_auth_403", {"user": "bob", "auth_user": "bob", "password": "bobpw", "service": "voicemail"}),
            ("register_forbidden", {"user": "mallory", "auth_user": "mallory", "password": "x"}),
            ("register_malformed", {}),
        ):
            r = sipp(scenario, k.sip_port, run_dir=tmp_path, **kw)
            assert r.returncode == 0, (scenario, r.output)
    k.assert_no_crash()
