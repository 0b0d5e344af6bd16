"""The C module's mode: the DISC dialect over one blocking stream per worker.

The server makes the nonces and checks the responses; this backend builds the
request (wire/legacy.py), exchanges it within the deadline (transport/stream.py,
skipping stale answers by SIP-MSGID) and turns the answer into an outcome.
"""

from __future__ import annotations

from .. import authorize, group, metrics, outcome
from ..authorize import AuthContext, Result
from ..group import GroupContext
from ..outcome import Outcome
from ..settings import Settings
from ..transport.stream import RequestTooLarge, StreamTransport, TransportError
from ..wire import legacy
from .contract import Environment


def verdict(answer: legacy.Answer) -> Result:
    """§5.2, except that a missing Result-Code is a server error instead of a crash (B2)."""
    rc = answer.result_code
    if rc == legacy.RESULT_SUCCESS:
        return Result.AUTHORIZED
    if rc == legacy.RESULT_AUTHENTICATION_REJECTED:
        if answer.service != legacy.SERVICE_AUTH:
            return Result.NOT_AUTHORIZED
        return Result.CHALLENGE if answer.challenge is not None else Result.SERVER_ERROR
    if rc == legacy.RESULT_AUTHORIZATION_REJECTED:
        return Result.NOT_AUTHORIZED
    return Result.SERVER_ERROR


class LegacyBackend:
    def __init__(self, env: Environment) -> None:
        self._env = env
        self._transport = StreamTransport(clock=env.clock, events=env.events)
        self._timeout = 0.0

    def configure(self, settings: Settings, deadline: float) -> None:
        self._transport.configure(
            settings.diameter_client_host,
            settings.diameter_client_port,
            settings.connect_timeout,
            settings.reconnect_interval,
        )
        self._timeout = settings.answer_timeout / 1000.0

    def close(self, deadline: float | None) -> None:
        self._transport.close()

    def challenge(self, realm: str, proxy: bool) -> None:
        return None  # the server makes the challenges

    def authorize(self, ctx: AuthContext, proxy: bool, msgid: int, start: float) -> Outcome:
        log = self._env.log
        try:
            request = legacy.encode_auth_request(ctx.ruri, ctx.identity, msgid, ctx.credentials, ctx.method)
        except legacy.LegacyError as exc:
            log(f"authorize: cannot build the request: {exc}")
            return outcome.SERVER_ERROR
        answer = self._exchange(request, msgid, start)
        if answer is None:
            return outcome.SERVER_ERROR
        result = verdict(answer)
        if result is Result.SERVER_ERROR:
            code = answer.result_code
            log(f"authorize: server answered Result-Code {code}" if code else "authorize: answer without Result-Code")
        decided = authorize.result_outcome(result, answer.challenge, proxy, ctx.credentials is not None)
        if decided is outcome.SERVER_ERROR and result is Result.CHALLENGE:
            log("authorize: refused a challenge that is empty, not UTF-8 or has CR/LF/NUL inside")
        return decided

    def is_user_in(self, ctx: GroupContext, group_name: str, msgid: int, start: float) -> int:
        try:
            request = legacy.encode_group_request(ctx.destination_realm, msgid, group_name, ctx.user_name)
        except legacy.LegacyError as exc:
            self._env.log(f"diameter_is_user_in: cannot build the request: {exc}")
            return group.ERROR
        answer = self._exchange(request, msgid, start)
        if answer is None:
            return group.ERROR
        return group.USER_IN if answer.result_code == legacy.RESULT_SUCCESS else group.ERROR

    def _exchange(self, request: bytes, msgid: int, start: float) -> legacy.Answer | None:
        want = msgid & 0xFFFFFFFF

        def accept(frame: bytes) -> legacy.Answer | None:
            answer = legacy.decode_answer(frame)
            return answer if answer.msgid == want else None

        try:
            return self._transport.exchange(request, start, self._timeout, accept)
        except RequestTooLarge:
            raise
        except TransportError as exc:
            self._env.events(metrics.EXCHANGE_FAILED)
            self._env.log(f"Diameter exchange failed: {exc}")
            return None
