"""``pip install .`` gives a package whose handler Kamailio loads with no PYTHONPATH."""

from __future__ import annotations

import subprocess

import pytest

from tests.harness import PYTHON, ROOT, example_kamailio, running, sipp
from tests.real.conftest import make_server

pytestmark = pytest.mark.kamailio


def test_installed_handler_serves_a_register(tmp_path):
    target = tmp_path / "site-packages"
    build = subprocess.run(
        [PYTHON, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    printed = subprocess.run(
        [PYTHON, "-m", "kamailio_auth_diameter", "handler-path"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert printed == str(target / "kamailio_auth_diameter" / "kamailio" / "handler.py")

    server = make_server(tmp_path)
    k = example_kamailio(tmp_path / "k", server.port, children=1, AUTH_DIAMETER_HANDLER=f'"{printed}"')
    with running(server, k):
        r = sipp("register_auth", k.sip_port, run_dir=tmp_path, auth_user="alice", password="secret")
        assert r.returncode == 0, r.output
    assert f"from {target}/kamailio_auth_diameter ready" in k.log()
    k.assert_no_crash()
