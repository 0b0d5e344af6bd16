"""check --cfg says what a real Kamailio says about the same cfg and command line.

Each case starts Kamailio with kamailio.cfg.example (or a variant) and runs
``python3 -m kamailio_auth_diameter check --cfg`` with the same -f and -A arguments:
a bad setting is the same message Kamailio stopped with, and a good cfg gives the
start-up line (settings declared) and any warning Kamailio logged.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import EXAMPLE_CFG, ROOT, Kamailio, example_kamailio, free_port
from tests.real.test_rfc4740 import rfc4740_defines
from tests.tlsca import make_pki

pytestmark = pytest.mark.kamailio


def started(k: Kamailio, wait: bool) -> list[str]:
    """Start Kamailio; its command line."""
    k.start(wait=wait)
    assert k.proc is not None
    return list(k.proc.args)


def check_like(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """check --cfg with the -f and -A arguments of a Kamailio command line."""
    cmd = [sys.executable, "-m", "kamailio_auth_diameter", "check", "--cfg", argv[argv.index("-f") + 1]]
    cmd += [arg for i, arg in enumerate(argv) if i > 0 and argv[i - 1] == "-A" for arg in ("-A", arg)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=30)


def kamailio_error(k: Kamailio) -> str:
    """The message of the SettingsError that stopped Kamailio, from its log."""
    assert k.proc is not None
    assert k.proc.wait(20) != 0
    m = re.search(r"SettingsError: (.*)", k.log())
    assert m is not None, k.log()[-3000:]
    return m.group(1)


def typo_cfg(tmp_path: Path) -> Path:
    cfg = tmp_path / "typo.cfg"
    cfg.write_text(EXAMPLE_CFG.read_text().replace("auth_diameter.use_domain = 0", "auth_diameter.use_domian = 0"))
    return cfg


@pytest.mark.parametrize(
    "defines",
    [
        {"DIAMETER_PORT": "0"},
        {"DIAMETER_HOST": '"bad host"'},
        {"DIAMETER_PROTOCOL": '"diameter"'},
        {"IDENTITY_CHECK": "2"},
        {"WATCHDOG_INTERVAL": "10"},
        rfc4740_defines(3868, DIAMETER_TLS="1", TLS_CA_FILE='"/nonexistent/ca.pem"'),
        rfc4740_defines(3868, DIAMETER_PEERS='"a:1,a:1"'),
    ],
    ids=["port", "host", "protocol", "identity_check", "watchdog", "tls_ca_file", "peers"],
)
def test_a_bad_setting_gives_the_message_kamailio_stops_with(tmp_path: Path, defines: dict[str, str]) -> None:
    k = example_kamailio(tmp_path, free_port(), children=1, **defines)
    argv = started(k, wait=False)
    try:
        message = kamailio_error(k)
    finally:
        k.stop()
    r = check_like(argv)
    assert r.returncode == 1
    assert r.stderr.splitlines()[0] == message
    assert r.stdout == ""


def test_an_unknown_setting_name(tmp_path: Path) -> None:
    k = Kamailio(cfg=typo_cfg(tmp_path), run_dir=tmp_path / "k", defines={"CHILDREN": "1"})
    argv = started(k, wait=False)
    try:
        message = kamailio_error(k)
    finally:
        k.stop()
    assert message.startswith("auth_diameter.use_domian: unknown setting")
    r = check_like(argv)
    assert (r.returncode, r.stderr.splitlines()[0]) == (1, message)


def test_a_good_cfg_gives_kamailio_s_start_up_line_and_the_settings(tmp_path: Path) -> None:
    port = free_port()
    k = example_kamailio(tmp_path, port, children=1)
    argv = started(k, wait=True)
    try:
        r = check_like(argv)
    finally:
        k.stop()
    assert r.returncode == 0, r.stderr
    declared = r.stdout.splitlines()[0]
    assert declared.startswith(f"auth_diameter: settings declared in {EXAMPLE_CFG}: diameter_client_host, ")
    # Kamailio's line: "auth_diameter: plugin 0.1.0 from DIR ready; settings declared in ...: NAMES"
    assert re.search(rf"auth_diameter: plugin \S+ from \S+ ready; {re.escape(declared.split(': ', 1)[1])}\n", k.log())
    assert f"auth_diameter.diameter_client_port  {port} " in r.stdout
    assert 'auth_diameter.diameter_client_host  "127.0.0.1" ' in r.stdout


def test_a_warning_kamailio_logs_is_printed_too(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    key = tmp_path / "client.key"
    key.write_bytes(pki.client_key.read_bytes())
    key.chmod(0o640)
    tls = {"TLS_CERT_FILE": f'"{pki.client_cert}"', "TLS_KEY_FILE": f'"{key}"', "TLS_CA_FILE": f'"{pki.ca_cert}"'}
    k = example_kamailio(
        tmp_path / "k", free_port(), children=1, **rfc4740_defines(free_port(), DIAMETER_TLS="1", **tls)
    )
    argv = started(k, wait=True)
    try:
        r = check_like(argv)
    finally:
        k.stop()
    assert r.returncode == 0, r.stderr
    warning = r.stdout.splitlines()[1]
    assert warning.startswith(f"auth_diameter: auth_diameter.tls_key_file {key} is accessible to its group")
    assert warning in k.log()
