"""check --cfg (kamailio/cfgcheck.py) and the command line of check and migrate-cfg."""

from __future__ import annotations

from pathlib import Path

import pytest

from kamailio_auth_diameter.__main__ import handler_path, main
from kamailio_auth_diameter.kamailio import cfgcheck
from kamailio_auth_diameter.settings import NAMES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "kamailio.cfg.example")
C_MODULE_CFG = ROOT / "tests" / "interop" / "c_module.cfg"


def check(text: str, defines: dict[str, str] | None = None) -> cfgcheck.CfgCheck:
    return cfgcheck.check("/etc/k.cfg", defines or {}, lambda path: text if path == "/etc/k.cfg" else "")


def test_the_example_cfg_passes_and_lists_every_setting() -> None:
    result = cfgcheck.check(EXAMPLE, {"DIAMETER_PORT": "3868"}, cfgcheck.read_text)
    assert result.error is None
    assert result.messages == [f"auth_diameter: settings declared in {EXAMPLE}: {', '.join(result.declared.values)}"]
    table = result.table()
    assert table[0] == "effective settings:"
    assert [line.split()[0] for line in table[1:]] == [f"auth_diameter.{name}" for name in NAMES]
    assert "auth_diameter.diameter_client_port  3868 " in "\n".join(table)
    assert '  auth_diameter.protocol              "legacy" ' in "\n".join(table)


def test_sources_declared_default_and_unresolved() -> None:
    result = check('auth_diameter.use_domain = 1\nauth_diameter.diameter_client_port = PORT desc "p"\n')
    rows = {line.split()[0].split(".")[1]: line for line in result.table()[1:]}
    assert rows["use_domain"].split()[1:] == ["1", "declared"]
    assert rows["diameter_client_port"].split()[1] == "?"
    assert "a define not set here" in rows["diameter_client_port"]
    assert rows["answer_timeout"].split()[1:] == ["2000", "default,", "not", "declared"]
    assert result.messages == ["auth_diameter: settings declared in /etc/k.cfg: use_domain, diameter_client_port"]


def test_nothing_declared() -> None:
    assert check("listen=udp:127.0.0.1:5060\n").messages == [
        "auth_diameter: settings declared in /etc/k.cfg: none, all defaults"
    ]


@pytest.mark.parametrize(
    ("text", "defines", "error"),
    [
        ("auth_diameter.diameter_client_port = PORT\n", {"PORT": "0"}, "diameter_client_port: 0 is outside 1..65535"),
        ("auth_diameter.use_domian = 1\n", {}, "auth_diameter.use_domian: unknown setting (known: "),
        (
            'auth_diameter.protocol = "diameter"\n',
            {},
            "auth_diameter.protocol: 'diameter' is not one of legacy, rfc4740",
        ),
        (
            'auth_diameter.protocol = "rfc4740"\nauth_diameter.use_tls = 1\nauth_diameter.tls_key_file = "/k.pem"\n',
            {},
            "auth_diameter.tls_key_file: set, but tls_cert_file is empty",
        ),
    ],
)
def test_a_bad_setting_is_the_error_kamailio_stops_with(text: str, defines: dict[str, str], error: str) -> None:
    result = check(text, defines)
    assert result.error is not None and error in result.error
    assert result.messages == [result.error]
    assert result.settings is None


def test_an_unreadable_cfg_is_an_error() -> None:
    result = cfgcheck.check("/nonexistent/kamailio.cfg", {}, cfgcheck.read_text)
    assert result.error == "/nonexistent/kamailio.cfg: cannot be read"


# --- the command line -------------------------------------------------------------------


def test_check_cfg_exit_codes_and_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--cfg", EXAMPLE, "-A", "DIAMETER_PORT=3868"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith(f"auth_diameter: settings declared in {EXAMPLE}: ")
    assert "auth_diameter.diameter_client_port  3868" in out.out
    assert out.err == ""
    assert main(["check", "--cfg", EXAMPLE, "-D", "DIAMETER_PORT=0", "--define", "CHILDREN=1"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.splitlines() == [
        "auth_diameter.diameter_client_port: 0 is outside 1..65535",
        f"check --cfg: Kamailio would not start with {EXAMPLE}",
    ]


def test_check_without_a_mode_says_what_it_takes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 2
    assert "--cfg FILE" in capsys.readouterr().err


def test_migrate_cfg_writes_the_new_cfg_and_reports_to_stderr(tmp_path: Path, capsys) -> None:
    new = tmp_path / "new.cfg"
    assert main(["migrate-cfg", str(C_MODULE_CFG), "-o", str(new)]) == 0
    out = capsys.readouterr()
    assert out.out == ""
    assert f'#!define AUTH_DIAMETER_HANDLER "{handler_path()}"' in new.read_text()
    assert f'{C_MODULE_CFG}:41: loadmodule "auth_diameter.so"' in out.err.splitlines()
    assert main(["migrate-cfg", str(C_MODULE_CFG), "--handler", "/h.py"]) == 0
    out = capsys.readouterr()
    assert '#!define AUTH_DIAMETER_HANDLER "/h.py"' in out.out
    assert out.out.replace("/h.py", str(handler_path())) == new.read_text()


def test_migrate_cfg_refusal_writes_nothing(tmp_path: Path, capsys) -> None:
    old, new = tmp_path / "old.cfg", tmp_path / "new.cfg"
    old.write_text('loadmodule "auth_diameter.so"\nmodparam("auth_diameter", "diameter_client_port", 0)\n')
    assert main(["migrate-cfg", str(old), "-o", str(new)]) == 1
    assert capsys.readouterr().err == (
        f"{old}:2: cannot migrate: auth_diameter.diameter_client_port: 0 is outside 1..65535\n"
    )
    assert not new.exists()
    assert main(["migrate-cfg", str(old), "-o", str(old)]) == 1
    assert "is the file being migrated" in capsys.readouterr().err
    assert main(["migrate-cfg", str(tmp_path / "missing.cfg")]) == 1
    assert "cannot read" in capsys.readouterr().err
