"""migrate.py: a C-module kamailio.cfg rewritten for the plugin, everything else byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from kamailio_auth_diameter import migrate
from kamailio_auth_diameter.kamailio import cfgfile
from kamailio_auth_diameter.migrate import MigrationError

ROOT = Path(__file__).resolve().parents[2]
C_MODULE_CFG = ROOT / "tests" / "interop" / "c_module.cfg"
HANDLER = "/opt/kad/handler.py"
COMMENT = (
    "# auth_diameter settings, made from the C module's modparams by\n"
    "# python3 -m kamailio_auth_diameter migrate-cfg: they must come before the first listen=.\n"
)
HEAD = COMMENT + f'#!ifndef AUTH_DIAMETER_HANDLER\n#!define AUTH_DIAMETER_HANDLER "{HANDLER}"\n#!endif\n'
IDENTITY = (
    "# 1: the credentials must be the To user's (REGISTER) or the From user's, else 403.\n"
    "# 0 is the C module's behaviour: any user with a valid password may act as anyone.\n"
    'auth_diameter.identity_check = 1 desc "credentials must be From/To user\'s"\n'
)
LOAD = 'loadmodule "app_python3.so"\nmodparam("app_python3", "load", AUTH_DIAMETER_HANDLER)'
HOST = 'auth_diameter.diameter_client_host = {} desc "Diameter server host"\n'
PORT = 'auth_diameter.diameter_client_port = {} desc "Diameter server port"\n'
DOMAIN = 'auth_diameter.use_domain = {} desc "send user@domain in group checks"\n'


def run(text: str) -> migrate.Migration:
    return migrate.migrate(text, HANDLER)


def refused(text: str) -> MigrationError:
    with pytest.raises(MigrationError) as info:
        run(text)
    return info.value


def test_the_interop_c_module_cfg_changes_where_it_must_and_nowhere_else() -> None:
    old = C_MODULE_CFG.read_text()
    expected = (
        old.replace(
            "listen=udp:",
            HEAD
            + HOST.format("DIAMETER_HOST")
            + PORT.format("DIAMETER_PORT")
            + DOMAIN.format(0)
            + IDENTITY
            + "\nlisten=udp:",
            1,
        )
        .replace('loadmodule "auth_diameter.so"', LOAD)
        .replace('modparam("auth_diameter", "diameter_client_host", DIAMETER_HOST)\n', "")
        .replace('modparam("auth_diameter", "diameter_client_port", DIAMETER_PORT)\n', "")
        .replace('modparam("auth_diameter", "use_domain", 0)\n', "")
        .replace('diameter_www_authorize("$td")', 'python_exec("diameter_www_authorize", "$td")')
        .replace('diameter_proxy_authorize("$fd")', 'python_exec("diameter_proxy_authorize", "$fd")')
        .replace('diameter_is_user_in("From", "voicemail")', 'python_exec("diameter_is_user_in", "From,voicemail")')
    )
    result = run(old)
    assert result.text == expected
    assert [(c.line, c.old) for c in result.changes] == [
        (33, ""),
        (41, 'loadmodule "auth_diameter.so"'),
        (44, 'modparam("auth_diameter", "diameter_client_host", DIAMETER_HOST)'),
        (45, 'modparam("auth_diameter", "diameter_client_port", DIAMETER_PORT)'),
        (46, 'modparam("auth_diameter", "use_domain", 0)'),
        (59, 'diameter_www_authorize("$td")'),
        (66, 'diameter_proxy_authorize("$fd")'),
        (71, 'diameter_is_user_in("From", "voicemail")'),
    ]


def test_the_plugin_start_up_scan_reads_the_migrated_settings() -> None:
    text = run(C_MODULE_CFG.read_text()).text
    declared = cfgfile.scan("k.cfg", {"DIAMETER_PORT": "3868"}, lambda _: text)
    assert declared.values == {
        "diameter_client_host": "127.0.0.1",
        "diameter_client_port": 3868,
        "use_domain": 0,
        "identity_check": 1,
    }


def test_report_lists_each_change_with_its_line() -> None:
    result = run('listen=udp:1.2.3.4:5060\nloadmodule "auth_diameter.so"\nmodparam("auth_diameter", "use_domain", 1)\n')
    lines = migrate.report(result, "old.cfg")
    assert lines[0] == "old.cfg:1: inserted, placed before the first listen= line:"
    assert lines[1] == "  -> # auth_diameter settings, made from the C module's modparams by"
    assert 'old.cfg:2: loadmodule "auth_diameter.so"' in lines
    assert 'old.cfg:3: modparam("auth_diameter", "use_domain", 1)' in lines
    assert "  -> auth_diameter.use_domain = 1   (moved to line 1)" in lines
    assert lines[-1].startswith("note: identity_check = 1:")


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('"10.0.0.1"', '"10.0.0.1"'),
        ("'10.0.0.1'", '"10.0.0.1"'),
        ('"aaa" "1.example.com"', '"aaa1.example.com"'),  # adjacent strings join, as in cfg.lex
        ("DIAMETER_HOST", "DIAMETER_HOST"),
    ],
)
def test_host_values(value: str, written: str) -> None:
    text = (
        '#!define DIAMETER_HOST "h"\nlisten=udp:1.2.3.4:5060\n'
        f'modparam("auth_diameter", "diameter_client_host", {value})\n'
    )
    assert HOST.format(written) in run(text).text


@pytest.mark.parametrize(
    ("value", "written"),
    [("3868", "3868"), ('"3868"', "3868"), ("'3868'", "3868"), ("0xF1C", "3868"), ("07434", "3868")],
)
def test_int_values_are_written_as_integers(value: str, written: str) -> None:
    result = run(f'listen=udp:1.2.3.4:5060\nmodparam("auth_diameter", "diameter_client_port", {value})\n')
    assert PORT.format(written) in result.text
    assert any("written as the integer" in n for n in result.notes) == value.startswith(("'", '"'))


@pytest.mark.parametrize(("value", "written"), [("yes", "1"), ("on", "1"), ("no", "0"), ("false", "0"), ("1", "1")])
def test_use_domain_takes_kamailio_booleans(value: str, written: str) -> None:
    assert DOMAIN.format(written) in run(f'modparam("auth_diameter", "use_domain", {value})\n').text


def test_calls_keep_their_argument_and_quote_style() -> None:
    text = (
        "request_route {\n"
        "\tif (!diameter_www_authorize('$td')) { exit; }\n"
        '\tif(!diameter_proxy_authorize ( "$fd" )){exit;}\n'
        '\tdiameter_proxy_authorize("");\n'
        '\tif ($rU == "vm" && diameter_is_user_in(\'credentials\', "voice mail")) { exit; }\n'
        "\t$var(r) = diameter_is_user_in(\"Request-URI\", 'vm');\n"
        "}\n"
    )
    assert run(text).text == (
        "request_route {\n"
        "\tif (!python_exec(\"diameter_www_authorize\", '$td')) { exit; }\n"
        '\tif(!python_exec("diameter_proxy_authorize", "$fd")){exit;}\n'
        '\tpython_exec("diameter_proxy_authorize", "");\n'
        '\tif ($rU == "vm" && python_exec("diameter_is_user_in", "credentials,voice mail")) { exit; }\n'
        '\t$var(r) = python_exec("diameter_is_user_in", "Request-URI,vm");\n'
        "}\n"
    )


def test_a_define_as_realm_stays_a_define() -> None:
    text = '#!define REALM "example.com"\nrequest_route { diameter_www_authorize(REALM); }\n'
    assert 'python_exec("diameter_www_authorize", REALM)' in run(text).text


def test_comments_strings_and_other_modules_are_untouched() -> None:
    text = (
        '# modparam("auth_diameter", "use_domain", 1) and diameter_www_authorize("x")\n'
        '// diameter_proxy_authorize("x")\n'
        '/* loadmodule "auth_diameter.so" /* nested */ diameter_is_user_in("From", "g") */\n'
        'loadmodule "auth_db.so"\n'
        'modparam("auth_db", "use_domain", 1)\n'
        "request_route {\n"
        '\txlog("L_INFO", "diameter_www_authorize(\\"$td\\") # not a comment\\n");\n'
        '\t$var(x) = $(hdr(X){s.select,0,"diameter_is_user_in"});\n'
        "}\n"
    )
    result = run(text)
    assert result.text == text
    assert result.changes == []
    assert result.notes == ["no use of the C module auth_diameter found: nothing changed"]


def test_kamailio_cfg_example_has_nothing_to_migrate() -> None:
    text = (ROOT / "kamailio.cfg.example").read_text()
    assert run(text).text == text


def test_settings_keep_their_ifdef_blocks_and_else_branches() -> None:
    text = (
        "#!define WITH_DIAMETER\n"
        "listen=udp:1.2.3.4:5060\n"
        'loadmodule "sl.so"\n'
        'loadmodule "pv.so"\n'
        "#!ifdef WITH_DIAMETER\n"
        'loadmodule "auth_diameter.so"\n'
        "#!ifdef TESTING\n"
        'modparam("auth_diameter", "diameter_client_host", "127.0.0.1")\n'
        "#!else\n"
        'modparam("auth_diameter", "diameter_client_host", "aaa.example.com")  # the real one\n'
        "#!endif\n"
        'modparam("auth_diameter", "use_domain", 1)\n'
        "#!endif\n"
        'modparam("auth_diameter", "diameter_client_port", 3868)\n'
    )
    assert run(text).text == (
        "#!define WITH_DIAMETER\n"
        + HEAD
        + "#!ifdef WITH_DIAMETER\n#!ifdef TESTING\n"
        + HOST.format('"127.0.0.1"')
        + "#!else\n"
        + HOST.format('"aaa.example.com"')
        + "#!endif\n"
        + DOMAIN.format(1)
        + "#!endif\n"
        + PORT.format(3868)
        + IDENTITY
        + "\nlisten=udp:1.2.3.4:5060\n"
        'loadmodule "sl.so"\n'
        'loadmodule "pv.so"\n'
        "#!ifdef WITH_DIAMETER\n"
        f"{LOAD}\n"
        "#!ifdef TESTING\n"
        "#!else\n"
        "# the real one\n"
        "#!endif\n"
        "#!endif\n"
    )


def test_a_listen_inside_an_ifdef_gets_the_settings_before_the_whole_block() -> None:
    text = (
        "#!ifdef WITH_TLS\n"
        "#!ifdef PUBLIC\n"
        "listen=tls:1.2.3.4:5061\n"
        "#!endif\n"
        "#!endif\n"
        'modparam("auth_diameter", "use_domain", 1)\n'
    )
    assert run(text).text.startswith(COMMENT + DOMAIN.format(1) + "\n#!ifdef WITH_TLS\n")


def test_without_listen_the_settings_go_before_the_first_loadmodule() -> None:
    text = (
        "debug=2\n"
        'loadmodule "sl.so"\n'
        'loadmodule "pv.so"\n'
        'loadmodule "auth_diameter.so"\n'
        'modparam("auth_diameter", "use_domain", 1)\n'
        'loadmodule "tm.so"\n'
        "request_route { exit; }\n"
    )
    assert run(text).text == (
        "debug=2\n"
        + HEAD
        + DOMAIN.format(1)
        + IDENTITY
        + '\nloadmodule "sl.so"\nloadmodule "pv.so"\n'
        + LOAD
        + '\nloadmodule "tm.so"\nrequest_route { exit; }\n'
    )


def test_a_loadmodule_before_listen_still_sees_the_handler_define_first() -> None:
    text = 'loadmodule "auth_diameter.so"\nlisten=udp:1.2.3.4:5060\n'
    assert run(text).text == (
        HEAD + IDENTITY + '\nloadmodule "sl.so"\nloadmodule "pv.so"\n' + LOAD + "\nlisten=udp:1.2.3.4:5060\n"
    )


def test_only_modparams_and_routes_go_before_the_first_route() -> None:
    text = 'modparam("auth_diameter", "use_domain", 1)\nrequest_route {\n\tdiameter_www_authorize("");\n}\n'
    result = run(text)
    assert result.text == (
        COMMENT + DOMAIN.format(1) + '\nrequest_route {\n\tpython_exec("diameter_www_authorize", "");\n}\n'
    )
    assert any('does not load "auth_diameter.so"' in n for n in result.notes)


def test_missing_sl_and_pv_are_loaded_in_the_same_path_style() -> None:
    text = "listen=udp:1.2.3.4:5060\nloadmodule '/usr/lib/kamailio/modules/auth_diameter.so'\n"
    assert run(text).text.endswith(
        "listen=udp:1.2.3.4:5060\n"
        "loadmodule '/usr/lib/kamailio/modules/sl.so'\n"
        "loadmodule '/usr/lib/kamailio/modules/pv.so'\n"
        "loadmodule '/usr/lib/kamailio/modules/app_python3.so'\n"
        'modparam("app_python3", "load", AUTH_DIAMETER_HANDLER)\n'
    )


def test_statements_sharing_a_line() -> None:
    text = (
        "listen=udp:1.2.3.4:5060\n"
        'loadmodule "sl.so"; loadmodule "pv.so"; loadmodule "auth_diameter"\n'
        'modparam("auth_diameter", "use_domain", 1); modparam("auth_diameter", "diameter_client_port", 3001);\n'
        'modparam("auth_diameter", "diameter_client_host", "h") modparam("sl", "bind_tm", 1)\n'
    )
    assert run(text).text.endswith(
        "listen=udp:1.2.3.4:5060\n"
        'loadmodule "sl.so"; loadmodule "pv.so"; loadmodule "app_python3"\n'
        'modparam("app_python3", "load", AUTH_DIAMETER_HANDLER)\n'
        'modparam("sl", "bind_tm", 1)\n'
    )


def test_a_module_name_written_in_capitals_is_still_the_c_module() -> None:
    assert DOMAIN.format(1) in run('modparam("AUTH_DIAMETER", "use_domain", 1)\n').text


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('x=1\nmodparam("auth_diameter|auth_db", "use_domain", 1)\n', 2, "is a pattern"),
        ('modparam("auth_diam.*", "use_domain", 1)\n', 1, "is a pattern"),
        ('modparam("auth_diameter", "use_domian", 1)\n', 1, "no parameter"),
        ('modparam("auth_diameter", "diameter_client_port", 70000)\n', 1, "70000 is outside 1..65535"),
        ('modparam("auth_diameter", "diameter_client_port", "abc")\n', 1, "takes an integer"),
        ('modparam("auth_diameter", "diameter_client_host", 10)\n', 1, "not a string"),
        ('modparam("auth_diameter", "diameter_client_host", "a\\"b")\n', 1, "quotes"),
        ('modparam("auth_diameter", "use_domain", 2)\n', 1, "2 is outside 0..1"),
        (
            'modparam("auth_diameter", "use_domain", 1)\n\nmodparam("auth_diameter", "use_domain", 0)\n',
            3,
            "set at line 1 too",
        ),
        (
            '#!ifdef A\nmodparam("auth_diameter", "use_domain", 1)\n#!endif\n'
            'modparam("auth_diameter", "use_domain", 0)\n',
            4,
            "set at line 2 too",
        ),
        ('r { diameter_is_user_in("From", "$fU"); }\n', 1, "has a $"),
        ('r { diameter_is_user_in("Contact", "g"); }\n', 1, "is not Request-URI, From, To or Credentials"),
        ('r { diameter_is_user_in("From", ""); }\n', 1, "the group is empty"),
        ('#!define G "g"\nr { diameter_is_user_in("From", G); }\n', 2, "must be strings"),
        ('r {\n diameter_www_authorize("a", "b"); }\n', 2, "takes one argument"),
        ("r { diameter_www_authorize(1); }\n", 1, "must be a string"),
        ("r { diameter_www_authorize($td); }\n", 1, "is not a string, number or define"),
        ('r { $var(f) = "x"; diameter_www_authorize; }\n', 1, "is not called here"),
        ('#!define AUTH diameter_www_authorize("x")\n', 1, "inside #!define"),
        ('loadmodule "app_python3.so"\nloadmodule "auth_diameter.so"\n', 1, "app_python3 is loaded already"),
        ('cfgengine "python"\nr { diameter_www_authorize(""); }\n', 1, "native cfg"),
        ('auth_diameter.use_domain = 1\nloadmodule "auth_diameter.so"\n', 1, "migrated before"),
        ('#!define M "auth_diameter.so"\nloadmodule M\n', 2, "is a define"),
        ('#!ifdef A\nloadmodule "auth_diameter.so"\n', 1, "#!ifdef A has no #!endif"),
        ('#!endif\nloadmodule "auth_diameter.so"\n', 1, "without an #!ifdef"),
        (
            'listen=udp:1.2.3.4:5060\n#!define HOST "h"\nmodparam("auth_diameter", "diameter_client_host", HOST)\n',
            3,
            "HOST is defined at line 2, after the first listen= line (line 1)",
        ),
        (
            'listen=udp:1.2.3.4:5060\n#!define D\n#!ifdef D\nmodparam("auth_diameter", "use_domain", 1)\n#!endif\n',
            3,
            "#!ifdef D would read differently there",
        ),
        ('loadmodule "auth_diameter.so"\n#!define AUTH_DIAMETER_HANDLER "x"\n', 2, "is already used"),
        ('r { xlog("unclosed); }\n', 1, "never closed"),
    ],
)
def test_refused_with_the_line(text: str, line: int, message: str) -> None:
    error = refused(text)
    assert error.line == line
    assert message in error.message


def test_a_modparam_of_another_module_matching_no_pattern_is_left_alone() -> None:
    text = 'modparam("auth_db|usrloc", "use_domain", 1)\n'
    assert run(text).text == text


def test_a_migrated_cfg_has_nothing_left_to_migrate() -> None:
    once = run(C_MODULE_CFG.read_text()).text
    assert run(once).text == once
