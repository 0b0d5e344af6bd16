"""check --server's core (servercheck.py): the steps it prints, the response it computes,
the exit status of each ending; and its command line (__main__.py) up to the server."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kamailio_auth_diameter import digest, group, metrics, outcome, servercheck
from kamailio_auth_diameter.__main__ import main
from kamailio_auth_diameter.authorize import AuthContext
from kamailio_auth_diameter.group import GroupContext
from kamailio_auth_diameter.outcome import Outcome
from kamailio_auth_diameter.servercheck import Checker, Probe, Step, Watch
from tests.harness import free_port

ALICE = Probe("alice", "example.com")
NONCE = "6b0ffb416b3b33cd976d18124e16f20608856be3289ea215"
MD5_CHALLENGE = f'WWW-Authenticate: Digest realm="example.com", nonce="{NONCE}", qop="auth"\r\n'
SHA_AND_MD5 = (
    f'WWW-Authenticate: Digest realm="example.com", nonce="{NONCE}", qop="auth", algorithm=SHA-256\r\n'
    f'WWW-Authenticate: Digest realm="example.com", nonce="{NONCE}", qop="auth", algorithm=MD5\r\n'
)
CONNECTED = [(metrics.CONNECT, 0.0), (metrics.PEER_UP, 0.0), (metrics.ANSWER, 0.0004)]
ANSWERED = [(metrics.ANSWER, 0.0009)]
DOWN = [(metrics.CONNECT_FAILED, 0.0), (metrics.PEER_DOWN, 0.0), (metrics.EXCHANGE_FAILED, 0.0)]


def challenge(header: str = MD5_CHALLENGE, label: str = "challenged") -> Outcome:
    return Outcome(401, "Unauthorized", outcome.AUTH_ERROR, header, label=label)


@dataclass
class Scripted:
    """A Backend that answers from a script: each call pops (result, events, log lines),
    reporting the events and lines to the Watch as a real backend would."""

    watch: Watch
    script: list[tuple[object, list[tuple[str, float]], list[str]]]
    asked: list[AuthContext | GroupContext] = field(default_factory=list)

    def _next(self) -> object:
        result, events, logs = self.script.pop(0)
        for event in events:
            self.watch.event(*event)
        for line in logs:
            self.watch.log(line)
        return result

    def authorize(self, ctx: AuthContext, proxy: bool, msgid: int, start: float) -> Outcome:
        self.asked.append(ctx)
        result = self._next()
        assert isinstance(result, Outcome)
        return result

    def is_user_in(self, ctx: GroupContext, group_name: str, msgid: int, start: float) -> int:
        self.asked.append(ctx)
        result = self._next()
        assert isinstance(result, int)
        return result


def clock() -> Iterator[float]:
    t = 100.0
    while True:
        yield t
        t += 0.0015


def run(script: list, probe: Probe = ALICE, password: str = "secret") -> tuple[int, list[str], Scripted]:
    watch, lines = Watch(), []
    backend = Scripted(watch, script)
    ticks = clock()
    checker = Checker(backend, watch, lambda: next(ticks), lines.append)
    return checker.authenticate(probe, password, "0a4f113b"), lines, backend


def test_a_right_password_step_by_step() -> None:
    code, lines, backend = run([(challenge(), CONNECTED, []), (outcome.PASS, ANSWERED, [])])
    response = digest.response(
        digest.ha1("alice", "example.com", "secret"),
        digest.DigestInput("REGISTER", "sip:example.com", NONCE, "MD5", "auth", "00000001", "0a4f113b"),
    )
    assert code == servercheck.AUTHENTICATED == 0
    assert lines == [
        "[1] REGISTER sip:example.com  From/To: <sip:alice@example.com>  no credentials",
        "    Diameter: connected, answer in 0.4 ms",
        "    reply: 401 Unauthorized",
        f'      WWW-Authenticate: Digest realm="example.com", nonce="{NONCE}", qop="auth"',
        "    challenged (return -5), 1.5 ms",
        "[2] REGISTER sip:example.com  From/To: <sip:alice@example.com>  Authorization: Digest "
        f'username="alice", realm="example.com", nonce="{NONCE}", uri="sip:example.com", response="{response}", '
        'algorithm=MD5, cnonce="0a4f113b", qop=auth, nc=00000001',
        "    Diameter: answer in 0.9 ms",
        "    reply: none",
        "    authorized (return 1), 1.5 ms",
        "verdict: authenticated: the password is right (exit 0)",
    ]
    first, second = backend.asked
    assert isinstance(first, AuthContext) and isinstance(second, AuthContext)
    assert first.credentials is None and first.identity.user == "alice" and first.realm == "example.com"
    assert second.credentials is not None and second.credentials.params["response"] == response


def test_the_response_is_checked_as_a_server_checks_it() -> None:
    _, _, backend = run([(challenge(), [], []), (outcome.PASS, [], [])], password="pässwörd")
    cred = backend.asked[1].credentials
    assert cred is not None
    p = cred.params
    d = digest.DigestInput("REGISTER", p["uri"], p["nonce"], p["algorithm"], p["qop"], p["nc"], p["cnonce"])
    assert digest.check(digest.ha1("alice", "example.com", "pässwörd"), d, p["response"])
    assert not digest.check(digest.ha1("alice", "example.com", "passwort"), d, p["response"])


@pytest.mark.parametrize(
    ("wanted", "answered"),
    [("", "SHA-256"), ("SHA-256", "SHA-256"), ("MD5", "MD5"), ("md5", "MD5")],
)
def test_the_algorithm_answered(wanted: str, answered: str) -> None:
    probe = Probe("alice", "example.com", algorithm=wanted)
    code, _, backend = run([(challenge(SHA_AND_MD5), [], []), (outcome.PASS, [], [])], probe)
    cred = backend.asked[1].credentials
    assert code == 0 and cred is not None
    assert cred.params["algorithm"] == answered
    assert len(cred.params["response"]) == (64 if answered == "SHA-256" else 32)


def test_an_algorithm_not_offered_ends_the_check() -> None:
    code, lines, backend = run([(challenge(), [], [])], Probe("alice", "example.com", algorithm="SHA-256"))
    assert code == servercheck.UNEXPECTED
    assert lines[-1] == "verdict: no challenge offers SHA-256 (offered: MD5) (exit 5)"
    assert len(backend.asked) == 1


def test_a_challenge_without_qop_is_answered_as_rfc_2069() -> None:
    bare = f'WWW-Authenticate: Digest realm="example.com", nonce="{NONCE}", opaque="x y"\r\n'
    _, _, backend = run([(challenge(bare), [], []), (outcome.PASS, [], [])])
    cred = backend.asked[1].credentials
    assert cred is not None
    assert "qop" not in cred.params and "nc" not in cred.params and cred.params["opaque"] == "x y"
    d = digest.DigestInput("REGISTER", "sip:example.com", NONCE)
    assert digest.check(digest.ha1("alice", "example.com", "secret"), d, cred.params["response"])


def test_invite_answers_a_407_with_proxy_authorization() -> None:
    probe = Probe("alice", "example.com", method="INVITE", uri="sip:bob@example.com")
    header = MD5_CHALLENGE.replace("WWW", "Proxy")
    proxy_challenge = Outcome(407, "Proxy Authentication Required", outcome.AUTH_ERROR, header, label="challenged")
    code, lines, backend = run([(proxy_challenge, [], []), (outcome.PASS, [], [])], probe)
    assert code == 0
    assert lines[0] == "[1] INVITE sip:bob@example.com  From/To: <sip:alice@example.com>  no credentials"
    assert lines[5].startswith("[2] INVITE sip:bob@example.com  From/To: <sip:alice@example.com>  Proxy-Authorization")
    cred = backend.asked[1].credentials
    assert cred is not None and cred.params["uri"] == "sip:bob@example.com"


WRONG = challenge(label="refused")
STALE = challenge(MD5_CHALLENGE.replace('"auth"', '"auth", stale=true'), label="stale")
UNKNOWN = outcome.forbidden("the server does not know 'carol' in 'example.com'")


@pytest.mark.parametrize(
    ("second", "events", "code", "verdict"),
    [
        (WRONG, ANSWERED, servercheck.REFUSED, "refused: a wrong password (challenged again)"),
        (outcome.FORBIDDEN, ANSWERED, servercheck.FORBIDDEN, "refused with 403: the server does not know the user"),
        (UNKNOWN, ANSWERED, servercheck.FORBIDDEN, "refused with 403: the server does not know the user"),
        (outcome.SERVER_ERROR, DOWN, servercheck.NO_ANSWER, "no answer from the server"),
        (outcome.SERVER_ERROR, ANSWERED, servercheck.UNEXPECTED, "error: 500 Server Internal Error (see the log"),
        (STALE, ANSWERED, servercheck.UNEXPECTED, "the new nonce was called stale"),
        (outcome.BAD_REQUEST, [], servercheck.UNEXPECTED, "bad-request: 400 Bad Request"),
    ],
    ids=["wrong-password", "403", "403-with-note", "down", "server-error", "stale", "bad-request"],
)
def test_how_the_response_step_ends(second: Outcome, events: list, code: int, verdict: str) -> None:
    got, lines, _ = run([(challenge(), CONNECTED, []), (second, events, [])])
    assert got == code
    assert lines[-1].startswith(f"verdict: {verdict}") and lines[-1].endswith(f"(exit {code})")


@pytest.mark.parametrize(
    ("first", "events", "code"),
    [
        (outcome.SERVER_ERROR, DOWN, servercheck.NO_ANSWER),
        (outcome.SERVER_ERROR, ANSWERED, servercheck.UNEXPECTED),
        (outcome.FORBIDDEN, ANSWERED, servercheck.FORBIDDEN),
        (outcome.PASS, ANSWERED, servercheck.UNEXPECTED),
        (challenge("WWW-Authenticate: Basic realm=x\r\n"), ANSWERED, servercheck.UNEXPECTED),
    ],
    ids=["down", "server-error", "403", "authorized-without-password", "no-digest-challenge"],
)
def test_a_first_request_that_gets_no_usable_challenge_ends_the_check(first: Outcome, events: list, code: int) -> None:
    got, lines, backend = run([(first, events, [])])
    assert got == code
    assert len(backend.asked) == 1
    assert lines[-1].endswith(f"(exit {code})")


def test_a_server_down_step_shows_the_events_and_the_log() -> None:
    log = "Diameter exchange failed: connect to 127.0.0.1:3000 failed: [Errno 111] Connection refused"
    _, lines, _ = run([(outcome.SERVER_ERROR, DOWN, [log])])
    assert lines[1:] == [
        "    Diameter: connect failed, server down, exchange failed",
        f"    log: {log}",
        "    reply: 500 Server Internal Error",
        "    error (return -5), 1.5 ms",
        "verdict: no answer from the server (exit 4)",
    ]


def test_a_step_without_diameter_says_so_and_notes_are_shown() -> None:
    _, lines, _ = run([(challenge(), [], []), (UNKNOWN, CONNECTED, [])])
    assert lines[1] == "    Diameter: no message"
    assert "    note: the server does not know 'carol' in 'example.com'" in lines


def test_text_from_the_server_is_printed_on_one_line() -> None:
    _, lines, _ = run([(outcome.SERVER_ERROR, ANSWERED, ["authorize: the HSS answered 5012: evil\r\n\x1b[2Jline"])])
    assert "    log: authorize: the HSS answered 5012: evil\\x0d\\x0a\\x1b[2Jline" in lines


def test_challenge_params() -> None:
    assert servercheck.challenge_params(SHA_AND_MD5 + "WWW-Authenticate: Basic realm=x\r\n") == [
        {"realm": "example.com", "nonce": NONCE, "qop": "auth", "algorithm": "SHA-256"},
        {"realm": "example.com", "nonce": NONCE, "qop": "auth", "algorithm": "MD5"},
    ]


def test_a_probe_the_plan_refuses_does_not_reach_the_backend() -> None:
    code, lines, backend = run([], Probe("alice", "example.com", uri="not a uri"))
    assert code == servercheck.UNEXPECTED
    assert backend.asked == []
    assert lines[1] == "    Diameter: no message"


# --- group checks ----------------------------------------------------------------------


def run_group(result: int, events: list, logs: list[str], use_domain: bool = False) -> tuple[int, list[str], Scripted]:
    watch, lines = Watch(), []
    backend = Scripted(watch, [(result, events, logs)])
    ticks = clock()
    code = Checker(backend, watch, lambda: next(ticks), lines.append).is_user_in(ALICE, "voicemail", use_domain)
    return code, lines, backend


def test_a_member() -> None:
    code, lines, backend = run_group(group.USER_IN, CONNECTED, [])
    assert code == 0
    assert lines == [
        '[1] diameter_is_user_in("From,voicemail")  From: <sip:alice@example.com>  User-Name: alice',
        "    Diameter: connected, answer in 0.4 ms",
        "    member (return 1), 1.5 ms",
        "verdict: alice is in group voicemail (exit 0)",
    ]
    (ctx,) = backend.asked
    assert ctx == GroupContext(destination_realm="example.com", user_name=b"alice")


def test_use_domain_names_the_user_with_its_domain() -> None:
    _, lines, backend = run_group(group.USER_IN, [], [], use_domain=True)
    assert lines[0].endswith("User-Name: alice@example.com")
    assert backend.asked[0] == GroupContext(destination_realm="example.com", user_name=b"alice@example.com")


@pytest.mark.parametrize(
    ("events", "logs", "code", "verdict"),
    [
        (ANSWERED, [], servercheck.REFUSED, "alice is not in group voicemail (or the server does not know it)"),
        (DOWN, ["Diameter exchange failed: ..."], servercheck.NO_ANSWER, "no answer from the server"),
        (
            [],
            ["diameter_is_user_in: the cx mode has no group membership (Cx has no message for it)"],
            servercheck.UNEXPECTED,
            "the group could not be checked (see the log lines)",
        ),
    ],
    ids=["not-a-member", "down", "logged"],
)
def test_group_failures(events: list, logs: list[str], code: int, verdict: str) -> None:
    got, lines, _ = run_group(group.ERROR, events, logs)
    assert got == code
    assert "    not a member, or the check failed (return -1), 1.5 ms" in lines
    assert lines[-1] == f"verdict: {verdict} (exit {code})"


def test_judge_of_an_authorized_first_request() -> None:
    assert servercheck.judge(Step(outcome.PASS, False), answered=False)[0] == servercheck.UNEXPECTED


def test_every_exit_code_is_documented_and_distinct() -> None:
    codes = [servercheck.AUTHENTICATED, servercheck.REFUSED, servercheck.USAGE]
    codes += [servercheck.FORBIDDEN, servercheck.NO_ANSWER, servercheck.UNEXPECTED]
    assert sorted(servercheck.EXIT_CODES) == sorted(set(codes)) == list(range(6))


# --- the command line ------------------------------------------------------------------


def password_file(tmp_path: Path, text: str = "secret\n", mode: int = 0o600) -> str:
    path = tmp_path / "pw"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def server_check(*args: str) -> int:
    return main(["check", "--server", f"127.0.0.1:{free_port()}", "--user", "alice", "--realm", "example.com", *args])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "protocol=cx"], "--set protocol: give it with --protocol"),
        (["--set", "peers=a"], "--set peers: give it with --server"),
        (["--set", "use_tls"], "--set 'use_tls': NAME=VALUE"),
        (["--set", "use_domian=1"], "auth_diameter.use_domian: unknown setting"),
        (["--set", "auth_diameter.answer_timeout=0"], "auth_diameter.answer_timeout: 0 is outside 1..60000"),
        (["--origin-host", "bad host"], "auth_diameter.origin_host: 'bad host' is not a DiameterIdentity"),
        (["--group", ""], "--group '': one group name"),
        (["--group", "a,b"], "--group 'a,b': one group name"),
        (["--group", "voicemail", "--algorithm", "MD5"], "--group checks membership, with no password"),
        (["--group", "voicemail", "--password-file", "pw"], "--group checks membership, with no password"),
        (["--uri", "sip:bob@example.com\r\nX: y"], "--uri"),
        (["--protocol", "cx", "--nonce-secret-file", "/nonexistent/key"], "cannot read /nonexistent/key"),
    ],
)
def test_options_the_check_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    password = [] if "--group" in args else ["--password-file", password_file(tmp_path)]
    assert server_check(*password, *args) == servercheck.USAGE
    err = capsys.readouterr().err
    assert err.startswith("check --server: ") and message in err


def test_a_server_that_is_not_one_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--server", "a:1,b:2", "--user", "u", "--realm", "r", "--group", "g"]) == 2
    assert "--server 'a:1,b:2': one server" in capsys.readouterr().err
    assert main(["check", "--server", "a:99999", "--user", "u", "--realm", "r", "--group", "g"]) == 2
    assert "--server: port 99999 of 'a:99999' is outside 1..65535" in capsys.readouterr().err


def test_cfg_and_server_together(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--cfg", "k.cfg", "--server", "127.0.0.1"]) == 2
    assert "--cfg and --server are two checks" in capsys.readouterr().err
    assert main(["check"]) == 2
    assert "say what to check: --cfg FILE or --server HOST[:PORT]" in capsys.readouterr().err


def test_a_password_file_every_user_can_read_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert server_check("--password-file", password_file(tmp_path, mode=0o644)) == 2
    assert "chmod 600" in capsys.readouterr().err


def test_an_empty_password_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert server_check("--password-file", password_file(tmp_path, text="\n")) == 2
    assert "no password given" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert server_check() == 2


def test_the_password_is_read_from_standard_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing listening, legacy's first request fails: the password was taken."""
    monkeypatch.setattr("sys.stdin", io.StringIO("secret\n"))
    assert server_check() == servercheck.NO_ANSWER
    out = capsys.readouterr().out
    assert out.startswith("check --server 127.0.0.1:") and ": protocol legacy\n" in out
    assert out.endswith("verdict: no answer from the server (exit 4)\n")


def test_a_verifying_mode_gets_a_secret_of_its_own_that_is_gone_afterwards(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    code = server_check("--password-file", password_file(tmp_path), "--protocol", "cx", "--origin-host", "c.example")
    out = capsys.readouterr().out
    assert code == servercheck.NO_ANSWER
    assert "Origin-Host p" in out and ".c.example, Origin-Realm example, Destination-Realm example" in out
    assert "    challenged (return -5)" in out  # our own challenge: no server needed for it
    assert sorted(os.listdir(tmp_path)) == ["pw"]


def test_a_username_with_a_domain_is_the_user_of_that_address() -> None:
    probe = Probe("alice@example.com", "example.com")
    assert probe.identity == "sip:alice@example.com"
    _, _, backend = run([(challenge(), [], []), (outcome.PASS, [], [])], probe)
    cred = backend.asked[1].credentials
    assert cred is not None and cred.username == "alice@example.com"
