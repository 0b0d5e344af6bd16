"""A real Kamailio started with another Python's python3 first on PATH.

Embedded CPython takes its prefix from the python3 it finds on PATH when
``lib/python3.X/os.py`` lies next to it, so Kamailio's Debian libpython then runs
on that build's standard library. The fake build here is Debian's own modules
behind symlinks, with a broken ``_ssl`` extension standing in for a pyenv 3.11.7's
(``undefined symbol: _PyModule_Add``): without the check the load fails with a
traceback from ``import ssl``. ``3.X`` is the version of Debian's /usr/bin/python3,
which the venv running the tests is made from and Kamailio embeds (3.11 on
Debian 12, 3.13 on Debian 13).
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.harness import PYTHON, Kamailio, example_kamailio

pytestmark = pytest.mark.kamailio

STDLIB = Path(sysconfig.get_paths()["stdlib"])  # /usr/lib/python3.X, the venv's base
STDLIB_NAME = f"python{sys.version_info.major}.{sys.version_info.minor}"
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # what systemd gives a service


def other_python(base: Path) -> Path:
    """A prefix that looks like another Python 3.X install to getpath; returns its bin dir."""
    bin_dir = base / "bin"
    bin_dir.mkdir(parents=True)
    stub = bin_dir / "python3"
    stub.write_text("#!/bin/sh\nexit 1\n")
    stub.chmod(0o755)
    stdlib = base / "lib" / STDLIB_NAME
    dynload = stdlib / "lib-dynload"
    dynload.mkdir(parents=True)
    for entry in STDLIB.iterdir():
        if entry.name != "lib-dynload":
            (stdlib / entry.name).symlink_to(entry)
    for extension in (STDLIB / "lib-dynload").iterdir():
        if not extension.name.startswith("_ssl."):
            (dynload / extension.name).symlink_to(extension)
    (dynload / f"_ssl{sysconfig.get_config_var('EXT_SUFFIX')}").write_bytes(b"built for another libpython")
    return bin_dir


def start(tmp_path: Path, path: str) -> Kamailio:
    return example_kamailio(tmp_path / "kamailio", diameter_port=1, children=1).with_env({"PATH": path})


def test_another_pythons_stdlib_stops_kamailio_with_one_clear_line(tmp_path):
    bin_dir = other_python(tmp_path / "otherpython")
    k = start(tmp_path, f"{bin_dir}:{SYSTEM_PATH}")
    k.start(wait=False)
    assert k.proc is not None
    assert k.proc.wait(20) != 0
    log = k.log()
    lines = [line for line in log.splitlines() if "auth_diameter: Kamailio's Python" in line]
    assert len(lines) == 1, log[-4000:]
    assert f"standard library from {tmp_path}/otherpython/lib/{STDLIB_NAME}" in lines[0]
    assert f"the python3 first on PATH is {bin_dir}/python3" in lines[0]
    assert "start Kamailio with /usr/bin first on PATH" in lines[0]
    assert "Traceback" not in log and "_ssl" not in log, log[-4000:]


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(SYSTEM_PATH, id="systemd"),
        pytest.param(f"/bin:{SYSTEM_PATH}", id="merged-usr-bin-first"),
        pytest.param(f"{Path(PYTHON).parent}:{SYSTEM_PATH}", id="venv-first"),
        pytest.param(os.environ["PATH"], id="this-shell"),
    ],
)
def test_kamailio_starts_on_debian_python(tmp_path, path):
    k = start(tmp_path, path).start()
    try:
        assert "Kamailio's Python" not in k.log()
    finally:
        k.stop()
    k.assert_no_crash()
