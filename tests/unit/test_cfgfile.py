"""kamailio/cfgfile: which auth_diameter.* settings a kamailio.cfg declares, and their literal values."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kamailio_auth_diameter.kamailio import cfgfile
from kamailio_auth_diameter.kamailio.cfgfile import DEFAULT_CFG, UNRESOLVED


def reader(texts: dict[str, str]) -> Callable[[str], str]:
    def read(path: str) -> str:
        try:
            return texts[path]
        except KeyError:
            raise FileNotFoundError(path) from None

    return read


def scan(text: str, defines: dict[str, str] | None = None, **others: str) -> cfgfile.Declared:
    texts = {"/etc/k/kamailio.cfg": text}
    texts.update({f"/etc/k/{name}": t for name, t in others.items()})
    return cfgfile.scan("/etc/k/kamailio.cfg", defines or {}, reader(texts))


def test_string_and_int_literals() -> None:
    d = scan(
        'auth_diameter.diameter_client_host = "10.0.0.1" desc "host"\n'
        'auth_diameter.diameter_client_port = 3868 desc "port"\n'
        "auth_diameter.use_domain=1\n"
        "\tauth_diameter.answer_timeout  =  -5 ;\n"
    )
    assert d.values == {
        "diameter_client_host": "10.0.0.1",
        "diameter_client_port": 3868,
        "use_domain": 1,
        "answer_timeout": -5,
    }
    assert d.files == ["/etc/k/kamailio.cfg"]


def test_nothing_declared() -> None:
    d = scan("#!KAMAILIO\nlisten=udp:127.0.0.1:5060\nrequest_route {\n}\n")
    assert d.values == {}


def test_other_groups_and_commented_lines_are_ignored() -> None:
    d = scan(
        "# auth_diameter.use_domain = 1\n"
        'other.use_domain = 1 desc "x"\n'
        "xauth_diameter.use_domain = 1\n"
        "auth_diameterx.use_domain = 1\n"
    )
    assert d.values == {}


def test_file_defines() -> None:
    d = scan(
        "#!define DPORT 3868\n"
        '#!define DHOST "disc.local"\n'
        "#!trydef DOM 1\n"
        'auth_diameter.diameter_client_port = DPORT desc "p"\n'
        'auth_diameter.diameter_client_host = DHOST desc "h"\n'
        "auth_diameter.use_domain = DOM\n"
    )
    assert d.values == {"diameter_client_port": 3868, "diameter_client_host": "disc.local", "use_domain": 1}


def test_define_without_value_is_1() -> None:
    assert scan("#!define FLAG\nauth_diameter.use_domain = FLAG\n").values == {"use_domain": 1}


def test_command_line_defines_take_precedence() -> None:
    d = scan("#!define DPORT 3868\nauth_diameter.diameter_client_port = DPORT\n", {"DPORT": "4000"})
    assert d.values == {"diameter_client_port": 4000}


def test_nested_defines() -> None:
    d = scan("#!define A B\n#!define B 42\nauth_diameter.answer_timeout = A\n")
    assert d.values == {"answer_timeout": 42}


def test_unknown_define_is_unresolved() -> None:
    d = scan('auth_diameter.diameter_client_port = DIAMETER_PORT desc "p"\n')
    assert d.values == {"diameter_client_port": UNRESOLVED}


def test_self_define_is_unresolved() -> None:
    assert scan("#!define P P\nauth_diameter.answer_timeout = P\n").values == {"answer_timeout": UNRESOLVED}


def test_define_cycle_does_not_blow_up() -> None:
    d = scan("#!define A B\n#!define B A\nauth_diameter.answer_timeout = A\n")
    assert d.values == {"answer_timeout": UNRESOLVED}


def test_include_and_import_relative_to_the_file() -> None:
    d = scan(
        'include_file "a.cfg"\n#!import_file "b.cfg"\n!!include_file "missing.cfg"\n',
        **{"a.cfg": "auth_diameter.use_domain = 1\n", "b.cfg": "auth_diameter.diameter_client_port = 5000\n"},
    )
    assert d.values == {"use_domain": 1, "diameter_client_port": 5000}
    assert d.files == ["/etc/k/kamailio.cfg", "/etc/k/a.cfg", "/etc/k/b.cfg"]


def test_include_cycle_is_read_once() -> None:
    d = scan('include_file "a.cfg"\n', **{"a.cfg": 'include_file "kamailio.cfg"\nauth_diameter.use_domain = 1\n'})
    assert d.files == ["/etc/k/kamailio.cfg", "/etc/k/a.cfg"]
    assert d.values == {"use_domain": 1}


def test_unreadable_main_file_declares_nothing() -> None:
    d = cfgfile.scan("/nonexistent/kamailio.cfg", {}, reader({}))
    assert d.values == {}
    assert d.files == []


def test_later_assignment_wins() -> None:
    d = scan("auth_diameter.use_domain = 0\nauth_diameter.use_domain = 1\n")
    assert d.values == {"use_domain": 1}


@pytest.mark.parametrize(
    "line",
    [
        'auth_diameter.diameter_client_port = 3868 desc "port" # the DISC client',
        'auth_diameter.diameter_client_port = 3868 desc "port" // the DISC client',
        "auth_diameter.diameter_client_port = 3868 # no desc",
        'auth_diameter.diameter_client_port = 3868 desc "port"; # with a semicolon',
    ],
)
def test_trailing_comment_still_declares(line: str) -> None:
    # Kamailio's lexer treats '#' (not '#!') and '//' as line comments, so Kamailio declares
    # this parameter; if the scan misses it, the plugin never reads it and silently uses the default.
    assert scan(line + "\n").values == {"diameter_client_port": 3868}


@pytest.mark.parametrize("directive", ["#!def", "!!define", "#!trydefine", "#!redef", "!!redefine"])
def test_define_directive_spellings(directive: str) -> None:
    # cfg.lex: PREP_START "#!"|"!!", DEFINE "define"|"def", TRYDEF "trydefine"|"trydef", REDEF "redefine"|"redef"
    d = scan(f"{directive} DPORT 3868\nauth_diameter.diameter_client_port = DPORT\n")
    assert d.values == {"diameter_client_port": 3868}


# --- command line -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "path", "defines"),
    [
        (["kamailio"], DEFAULT_CFG, {}),
        (["kamailio", "-f", "/x/k.cfg", "-DD"], "/x/k.cfg", {}),
        (["kamailio", "-f/x/k.cfg"], "/x/k.cfg", {}),
        (["kamailio", "-A", "PORT=3868", "-AWITH_X", "-f", "k.cfg"], "k.cfg", {"PORT": "3868", "WITH_X": "1"}),
        (["kamailio", "-A", 'HOST="h"'], DEFAULT_CFG, {"HOST": '"h"'}),
        (["kamailio", "-M", "8", "-m", "64", "-f", "a.cfg"], "a.cfg", {}),
    ],
)
def test_from_command_line(argv: list[str], path: str, defines: dict[str, str]) -> None:
    assert cfgfile.from_command_line(argv) == (path, defines)


def test_from_command_line_trailing_option_does_not_raise() -> None:
    path, _ = cfgfile.from_command_line(["kamailio", "-A"])
    assert path == DEFAULT_CFG
    path, _ = cfgfile.from_command_line(["kamailio", "-f"])
    assert isinstance(path, str)


def test_read_own_command_line() -> None:
    argv = cfgfile.read_own_command_line()
    assert argv
    assert all(isinstance(a, str) and a for a in argv)
