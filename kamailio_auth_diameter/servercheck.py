"""``check --server``: one authentication or one group check against a Diameter server, step by step.

What an operator wants to know before pointing Kamailio at a server, as ``radtest``
tells it for RADIUS: does alice's password work, is she in group voicemail, in the
protocol the proxy will speak. The steps go through the plugin's own code: the SIP
request a UA would send, planned by :func:`authorize.plan` (or :func:`group.plan`),
handed to the backend that ``backend.choose`` gives for the ``protocol``. So what is
printed is what Kamailio would do: each step's reply and return value, what happened on
the Diameter side (the backend's events and log lines), and how long it took. The
verdict is an exit status (:data:`EXIT_CODES`). Building the backend and reading the
password are the command line's (``__main__.py``); this module only needs a Backend, a
clock and somewhere to print, so the unit tests give it a scripted one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from . import authorize, digest, group, metrics
from .authorize import SipRequest
from .backend.contract import Backend
from .logtext import printable
from .outcome import Outcome

AUTHENTICATED = 0  # the password is right; or a member of the group
REFUSED = 1  # a wrong password (challenged again); or not a member of the group
USAGE = 2  # a wrong option (argparse's own status), an unreadable password file
FORBIDDEN = 3  # 403, no new challenge: an unknown user (in rfc4740 mode a wrong password too)
NO_ANSWER = 4  # the server could not be reached, or did not answer in time
UNEXPECTED = 5  # an answer the check cannot go on from: an error Result-Code, no challenge, stale...
EXIT_CODES = {
    AUTHENTICATED: "authenticated (the password is right), or a member of the group",
    REFUSED: "a wrong password, or not a member of the group",
    USAGE: "a wrong option or an unusable password file",
    FORBIDDEN: "refused with 403: the server does not know the user (rfc4740: or the password is wrong)",
    NO_ANSWER: "no answer: the server is down, unreachable or too slow",
    UNEXPECTED: "an answer the check cannot go on from (an error Result-Code, no challenge, stale nonce, ...)",
}

# metrics events as a step's Diameter line says them; PEER_UP comes with every first connect
_EVENT_WORDS = {
    metrics.CONNECT: "connected",
    metrics.RECONNECT: "reconnected",
    metrics.CONNECT_FAILED: "connect failed",
    metrics.PEER_DOWN: "server down",
    metrics.TIMEOUT: "no answer in time",
    metrics.FAILOVER: "sent again",
    metrics.EXCHANGE_FAILED: "exchange failed",
}
# what a verifying mode decides without a message, on a line of its own
_PROXY_WORDS = {
    metrics.HA1_CACHE_HIT: "HA1 from the cache",
    metrics.HA1_FETCH: "HA1 asked of the server",
    metrics.HA1_REFETCH: "HA1 asked again (the cached one did not fit)",
    metrics.REPLAY: "nonce-count used already (a replay)",
}
_PARAM = re.compile(r'([A-Za-z-]+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


@dataclass(frozen=True, slots=True)
class Probe:
    """Who asks, and in which request: ``uri`` is the Request-URI (empty: ``sip:<realm>``),
    ``algorithm`` the one to answer with (empty: the first the challenge offers)."""

    user: str
    realm: str
    method: str = "REGISTER"
    uri: str = ""
    algorithm: str = ""

    @property
    def identity(self) -> str:
        """From and To: the user's own address (a digest username ``alice@realm`` is alice's)."""
        return f"sip:{self.user.partition('@')[0]}@{self.realm}"

    @property
    def ruri(self) -> str:
        return self.uri or f"sip:{self.realm}"

    @property
    def proxy(self) -> bool:
        """REGISTER is answered by the registrar (www, 401); anything else by the proxy (407)."""
        return self.method != "REGISTER"


@dataclass
class Watch:
    """What the backend reports during a step: its ``events`` and its ``log``, the two
    callables of backend.Environment."""

    events: list[tuple[str, float]] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def event(self, name: str, seconds: float = 0.0) -> None:
        self.events.append((name, seconds))

    def log(self, text: str) -> None:
        self.logs.append(text)

    def take(self) -> tuple[list[tuple[str, float]], list[str]]:
        """The step's events and log lines, forgotten here."""
        taken = self.events, self.logs
        self.events, self.logs = [], []
        return taken


@dataclass(frozen=True, slots=True)
class Step:
    """One request through the backend: what it ended in, and whether the server was out of reach."""

    outcome: Outcome
    no_answer: bool


class Checker:
    """Runs the steps through ``backend`` and prints them with ``out``, one line per call."""

    def __init__(
        self,
        backend: Backend,
        watch: Watch,
        clock: Callable[[], float],
        out: Callable[[str], None],
        check_identity: bool = True,
    ) -> None:
        self._backend = backend
        self._watch = watch
        self._clock = clock
        self._out = out
        self._check_identity = check_identity

    def authenticate(self, probe: Probe, password: str, cnonce: str) -> int:
        """The first request, the challenge, the response from ``password``, the verdict."""
        first = self._authorize(1, probe, None)
        if first.outcome.label != "challenged":
            return self._verdict(*judge(first, answered=False))
        chosen = pick_challenge(first.outcome.header, probe.algorithm)
        if isinstance(chosen, str):
            return self._verdict(UNEXPECTED, chosen)
        header = credentials(chosen, probe, password, cnonce)
        return self._verdict(*judge(self._authorize(2, probe, header), answered=True))

    def is_user_in(self, probe: Probe, group_name: str, use_domain: bool) -> int:
        """diameter_is_user_in("From,<group>") for the probe's user."""
        planned = group.plan("from", probe.identity, probe.ruri, None, use_domain)
        if isinstance(planned, int):
            return self._verdict(UNEXPECTED, f"diameter_is_user_in would return {planned} without asking the server")
        user_name = planned.user_name.decode("utf-8", "replace")
        self._out(f'[1] diameter_is_user_in("From,{group_name}")  From: <{probe.identity}>  User-Name: {user_name}')
        start = self._clock()
        result = self._backend.is_user_in(planned, group_name, 1, start)
        took = self._clock() - start
        events, logs = self._watch.take()
        self._side(events, logs)
        member = result == group.USER_IN
        said = "member" if member else "not a member, or the check failed"
        self._out(f"    {said} (return {result}), {_ms(took)}")
        if member:
            return self._verdict(AUTHENTICATED, f"{user_name} is in group {group_name}")
        if _failed(events):
            return self._verdict(NO_ANSWER, "no answer from the server")
        if logs:
            return self._verdict(UNEXPECTED, "the group could not be checked (see the log lines)")
        return self._verdict(REFUSED, f"{user_name} is not in group {group_name} (or the server does not know it)")

    def _authorize(self, n: int, probe: Probe, header: str | None) -> Step:
        req = SipRequest(
            method=probe.method,
            ruri=probe.ruri,
            from_uri=probe.identity,
            to_uri=probe.identity,
            credentials=() if header is None else (header,),
        )
        name = "Proxy-Authorization" if probe.proxy else "Authorization"
        said = "no credentials" if header is None else f"{name}: {header}"
        self._out(f"[{n}] {probe.method} {probe.ruri}  From/To: <{probe.identity}>  {said}")
        start = self._clock()
        planned = authorize.plan(req, probe.realm, probe.proxy, self._check_identity)
        decided = planned if isinstance(planned, Outcome) else self._backend.authorize(planned, probe.proxy, n, start)
        took = self._clock() - start
        events, logs = self._watch.take()
        self._side(events, logs)
        self._out(f"    reply: {f'{decided.code} {decided.reason}' if decided.code else 'none'}")
        for line in decided.header.splitlines():
            self._out(f"      {printable(line)}")
        if decided.note:
            self._out(f"    note: {printable(decided.note)}")
        self._out(f"    {decided.label} (return {decided.ret}), {_ms(took)}")
        return Step(decided, _failed(events))

    def _side(self, events: list[tuple[str, float]], logs: list[str]) -> None:
        """The Diameter side of a step: its events in order, then the log lines."""
        shown = [
            f"answer in {_ms(seconds)}" if e == metrics.ANSWER else _EVENT_WORDS.get(e, e)
            for e, seconds in events
            if e != metrics.PEER_UP and e not in _PROXY_WORDS
        ]
        self._out(f"    Diameter: {', '.join(shown) if shown else 'no message'}")
        proxy = [_PROXY_WORDS[e] for e, _ in events if e in _PROXY_WORDS]
        if proxy:
            self._out(f"    proxy: {', '.join(proxy)}")
        for line in logs:
            self._out(f"    log: {printable(line)}")

    def _verdict(self, code: int, text: str) -> int:
        self._out(f"verdict: {text} (exit {code})")
        return code


def judge(step: Step, answered: bool) -> tuple[int, str]:
    """The exit status and verdict of an outcome that ends the check: ``answered``, the
    request carried the response (step 2), else it was the first request."""
    o = step.outcome
    if o.label == "authorized":
        if answered:
            return AUTHENTICATED, "authenticated: the password is right"
        return UNEXPECTED, "authorized without credentials: this request needs no password"
    if o.code == 403:
        return FORBIDDEN, "refused with 403: the server does not know the user (rfc4740: or the password is wrong)"
    if o.label == "refused":
        return REFUSED, "refused: a wrong password (challenged again)"
    if o.label == "stale":
        return UNEXPECTED, "the new nonce was called stale: the password is right, the nonce was refused"
    if step.no_answer:
        return NO_ANSWER, "no answer from the server"
    if o.label == "challenged":
        return UNEXPECTED, "challenged again for a response"
    return UNEXPECTED, f"{o.label}: {f'{o.code} {o.reason}' if o.code else 'no reply'} (see the log lines)"


def challenge_params(header: str) -> list[dict[str, str]]:
    """The parameters of each challenge in an outcome's header lines
    (``WWW-Authenticate: Digest realm="x", nonce="y", algorithm=MD5``), names lower-cased."""
    out = []
    for line in header.splitlines():
        value = line.partition(":")[2].strip()
        scheme, _, rest = value.partition(" ")
        if scheme.lower() == "digest":
            out.append({name.lower(): quoted or token for name, quoted, token in _PARAM.findall(rest)})
    return out


def pick_challenge(header: str, algorithm: str) -> dict[str, str] | str:
    """The challenge to answer (``algorithm``'s, or the first we can compute), or why there is none."""
    offered = challenge_params(header)
    if not offered:
        return "the challenge has no Digest header to answer"
    names = [c.get("algorithm", "MD5") for c in offered]
    for challenge, name in zip(offered, names, strict=True):
        if (name.upper() == algorithm.upper()) if algorithm else _computable(name):
            return challenge
    wanted = algorithm or "an algorithm this check can compute"
    return f"no challenge offers {wanted} (offered: {', '.join(names)})"


def _computable(algorithm: str) -> bool:
    try:
        digest.ha1("", "", "", algorithm)
    except digest.UnsupportedAlgorithm:
        return False
    return True


def credentials(challenge: dict[str, str], probe: Probe, password: str, cnonce: str) -> str:
    """The Authorization value a UA sends in answer to ``challenge``: qop=auth when offered
    (nc 1, ``cnonce``), RFC 2069's form when the challenge has no qop."""
    algorithm = challenge.get("algorithm", "MD5")
    qops = [q.strip().lower() for q in challenge.get("qop", "").split(",") if q.strip()]
    qop = "auth" if "auth" in qops else ""
    nc = "00000001" if qop else ""
    realm, nonce = challenge.get("realm", ""), challenge.get("nonce", "")
    d = digest.DigestInput(probe.method, probe.ruri, nonce, algorithm, qop, nc, cnonce if qop else "")
    response = digest.response(digest.ha1(probe.user, realm, password, algorithm), d)
    parts = [
        f'username="{probe.user}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{probe.ruri}"',
        f'response="{response}"',
        f"algorithm={algorithm}",
    ]
    if qop:
        parts += [f'cnonce="{cnonce}"', f"qop={qop}", f"nc={nc}"]
    if "opaque" in challenge:
        parts.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(parts)


def _failed(events: list[tuple[str, float]]) -> bool:
    return any(e == metrics.EXCHANGE_FAILED for e, _ in events)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"
