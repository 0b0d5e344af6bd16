"""migrate-cfg with real components.

The C-module cfg of the interop tests (tests/interop/c_module.cfg), migrated by the
command itself, runs in a real Kamailio with the plugin against the reference server,
and the interop test's own flows, with their own assertions, get the same replies the
C module gives there. Trickier C-module cfgs are migrated and both versions are parsed
by Kamailio (``kamailio -c``: modules, parameters and function names all resolved).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import HANDLER, ROOT, Kamailio, ReferenceServer
from tests.interop import test_c_module_flows as c_module

pytestmark = pytest.mark.kamailio
# Debian's module directory (/usr/lib/<multiarch>/kamailio/modules), for a loadmodule with a full path
MODULES = next(iter(sorted(Path("/usr/lib").glob("*/kamailio/modules/app_python3.so"))), Path("/nonexistent/x")).parent


def migrate_cfg(old: Path, new: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kamailio_auth_diameter", "migrate-cfg", str(old), "-o", str(new)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    new = tmp_path_factory.mktemp("migrated") / "migrated.cfg"
    r = migrate_cfg(c_module.CFG, new)
    assert r.returncode == 0, r.stderr
    assert f'{c_module.CFG}:41: loadmodule "auth_diameter.so"' in r.stderr
    return new


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, migrated: Path) -> Iterator[c_module.Stack]:
    """The interop test's stack with the migrated cfg in place of the C module's."""
    run_dir = tmp_path_factory.mktemp("migrated_flows")
    server = ReferenceServer(db=run_dir / "users.sqlite", log_path=run_dir / "server.log")
    server.add_user("alice", c_module.DOMAIN, "secret")
    server.add_user("bob", c_module.DOMAIN, "bobsecret")
    server.add_group("alice", "voicemail")
    kamailio = Kamailio(
        cfg=migrated, run_dir=run_dir / "kamailio", defines={"DIAMETER_PORT": str(server.port), "CHILDREN": "2"}
    )
    server.start()
    try:
        kamailio.start()
        try:
            yield c_module.Stack(server, kamailio, run_dir)
        finally:
            kamailio.stop()
    finally:
        server.stop()


# The C-module test's flows and assertions, unchanged; only ``stack`` above differs.
run = c_module.run
test_register_401_then_200 = c_module.test_register_401_then_200
test_invite_407_then_200 = c_module.test_invite_407_then_200
test_wrong_password_is_challenged_again_with_a_fresh_nonce = (
    c_module.test_wrong_password_is_challenged_again_with_a_fresh_nonce
)
test_unknown_user_gets_403 = c_module.test_unknown_user_gets_403
test_malformed_authorization_gets_400 = c_module.test_malformed_authorization_gets_400
test_group_member_calls_voicemail = c_module.test_group_member_calls_voicemail
test_non_member_calling_voicemail_gets_403 = c_module.test_non_member_calling_voicemail_gets_403
test_bare_invite_gets_the_servers_challenge_in_407 = c_module.test_bare_invite_gets_the_servers_challenge_in_407


def test_the_plugin_runs_with_the_migrated_settings(stack: c_module.Stack, migrated: Path) -> None:
    log = stack.kamailio.log()
    assert f"settings declared in {migrated}: diameter_client_host, diameter_client_port, use_domain, " in log
    assert "identity_check" in log
    stack.kamailio.assert_no_crash()


TRICKY_C_CFG = f"""#!KAMAILIO
#!define WITH_DIAMETER
#!define REALM "example.com"
debug=2
log_stderror=yes
children=1
auto_aliases=no

#!ifdef WITH_TLS
listen=tls:127.0.0.1:5061
#!endif
listen=udp:127.0.0.1:5060

loadmodule "sl.so"; loadmodule "pv.so"
#!ifdef WITH_DIAMETER
loadmodule '{MODULES}/auth_diameter.so'
#!ifdef TESTING
modparam("auth_diameter", "diameter_client_host", '127.0.0.1')
#!else
modparam("auth_diameter", "diameter_client_host", "localhost") # the real one
#!endif
#!endif
modparam("AUTH_DIAMETER", "diameter_client_port", 0xF1C); modparam("auth_diameter", "use_domain", yes)
loadmodule "tm.so"
loadmodule "xlog.so"
modparam("tm", "fr_timer", 5000)

request_route {{
	# diameter_www_authorize("x") in a comment, and /* in */ one
	xlog("L_INFO", "diameter_www_authorize(\\"x\\") in a string\\n");
	if (method == "REGISTER") {{
		if (!diameter_www_authorize('$td')) {{ exit; }}
	}} else if(!diameter_proxy_authorize ( REALM )) {{
		exit;
	}}
	if ($rU == "voicemail" && !diameter_is_user_in('credentials', "voice mail")) {{
		sl_send_reply("403", "Forbidden");
		exit;
	}}
	$var(member) = diameter_is_user_in("Request-URI", 'staff');
	sl_send_reply("200", "OK");
}}
"""
NO_LISTEN_C_CFG = """#!KAMAILIO
loadmodule "sl.so"
loadmodule "auth_diameter.so"
modparam("auth_diameter", "diameter_client_port", 3868)
loadmodule "pv.so"
request_route {
	if (!diameter_proxy_authorize("")) { exit; }
}
"""


def kamailio_check(cfg: Path, *defines: str) -> subprocess.CompletedProcess[str]:
    """``kamailio -c``: the cfg parsed, modules loaded, parameters set, function calls fixed up."""
    cmd = ["kamailio", "-c", "-f", str(cfg)]
    for define in defines:
        cmd += ["-A", define]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cfg.parent)


@pytest.mark.parametrize(
    ("text", "calls"), [(TRICKY_C_CFG, 4), (NO_LISTEN_C_CFG, 1)], ids=["ifdefs-quotes-calls", "no-listen"]
)
def test_kamailio_parses_both_the_c_cfg_and_its_migration(tmp_path: Path, text: str, calls: int) -> None:
    old, new = tmp_path / "old.cfg", tmp_path / "new.cfg"
    old.write_text(text)
    if (MODULES / "auth_diameter.so").exists():  # Debian ships it; proves the input is a valid C-module cfg
        r = kamailio_check(old)
        assert r.returncode == 0, r.stdout + r.stderr
    r = migrate_cfg(old, new)
    assert r.returncode == 0, r.stderr
    assert new.read_text().count("python_exec(") == calls
    r = kamailio_check(new, f'AUTH_DIAMETER_HANDLER="{HANDLER}"')
    assert r.returncode == 0, r.stdout + r.stderr
    for define in ("WITH_TLS", "TESTING"):  # the other branches parse too
        r = kamailio_check(new, define, f'AUTH_DIAMETER_HANDLER="{HANDLER}"')
        assert r.returncode == 0, r.stdout + r.stderr


def test_a_cfg_that_cannot_be_migrated_safely_is_refused_naming_the_line(tmp_path: Path) -> None:
    old, new = tmp_path / "old.cfg", tmp_path / "new.cfg"
    old.write_text(TRICKY_C_CFG.replace('"voice mail"', '"$fU"'))
    r = migrate_cfg(old, new)
    assert r.returncode == 1
    assert r.stderr.startswith(f"{old}:36: cannot migrate: diameter_is_user_in: the group '$fU' has a $")
    assert not new.exists()
