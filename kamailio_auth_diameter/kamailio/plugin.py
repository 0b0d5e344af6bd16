"""The object app_python3 calls: the C module's three functions, as methods.

Native cfg: ``python_exec("diameter_www_authorize", "$td")`` calls
``diameter_www_authorize(msg, realm)``. A KEMI script calls the same methods itself.
Every method returns an int whatever happens (on Kamailio 5.6 anything else poisons
the next Python call of the process), and nothing a request or an answer contains can
raise out of it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .. import __version__, authorize, group, outcome
from ..logtext import printable
from ..outcome import Outcome
from ..settings import Settings, SettingsError
from ..sip.credentials import Credentials
from ..transport.client import DiameterClient, LocalPeer, resolve_identity
from ..transport.resolve import local_fqdn
from ..transport.stream import RequestTooLarge, StreamTransport, TransportError
from ..wire import base, legacy, sip_app
from . import cfgfile
from .config import CfgSettings
from .request import read_auth_request

_LOG_REPEAT_S = 5.0
FQDN_WAIT = 2.0  # s: how long start-up may wait for DNS to name this host (the default Origin-Host)
A = TypeVar("A")
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class AuthDiameter:
    def __init__(self, ksr: Any, cfg: CfgSettings, clock=time.monotonic, host_name: str | None = None) -> None:
        self._ksr = ksr
        self._cfg = cfg
        self._host_name = host_name  # this machine's FQDN, found at start-up: no DNS in a request
        self._clock = clock
        self._transport = StreamTransport(clock=clock)
        self._configured: Settings | None = None  # the settings the transport was last given
        self._rank: int | None = None  # Kamailio's process rank, from child_init
        self._client: DiameterClient | None = None  # rfc4740 mode
        self._client_settings: Settings | None = None
        self._client_identity: tuple[str, str, str] = ("", "", "")  # origin host, origin realm, destination realm
        self._origin = base.Identity("", "")  # Origin-Host/Realm of this worker's requests
        self._sessions = base.SessionIds("")
        self._group_params: dict[str, group.GroupQuery] = {}
        # credentials authorized for the message being processed, for who=Credentials
        self._authorized_msgid: int | None = None
        self._authorized: dict[bool, Credentials] = {}
        self._last_log: tuple[str, float] = ("", 0.0)

    # --- app_python3 callbacks ------------------------------------------------------

    def child_init(self, rank: int) -> int:
        """Remember the rank (it names this worker's Diameter identity); connections
        are opened by the first request that needs them."""
        self._rank = rank if isinstance(rank, int) else None
        return 0

    def diameter_www_authorize(self, msg: Any, realm: str = "") -> int:
        return self._authorize(realm, proxy=False)

    def diameter_proxy_authorize(self, msg: Any, realm: str = "") -> int:
        return self._authorize(realm, proxy=True)

    def diameter_is_user_in(self, msg: Any, param: str = "") -> int:
        try:
            return self._is_user_in(param)
        except RequestTooLarge as exc:
            self._error(f"diameter_is_user_in: {exc}")
            return group.ERROR
        except Exception as exc:  # noqa: BLE001 - a worker must never see an exception
            self._error(f"diameter_is_user_in: internal error: {exc!r}")
            return group.ERROR

    # --- authorize ------------------------------------------------------------------

    def _authorize(self, realm: str, proxy: bool) -> int:
        try:
            result = self._decide(realm or "", proxy)
        except RequestTooLarge as exc:
            # the SIP request's own headers made it too long: the client's fault, and no peer's
            self._error(f"authorize: {exc}")
            result = outcome.BAD_REQUEST
        except Exception as exc:  # noqa: BLE001
            self._error(f"authorize: internal error: {exc!r}")
            result = outcome.SERVER_ERROR
        if result.note:
            self._error(f"authorize: {result.note}")
        try:
            return self._send(result)
        except Exception as exc:  # noqa: BLE001
            self._error(f"authorize: sending the {result.code} reply failed: {exc!r}")
            return outcome.AUTH_ERROR

    def _decide(self, realm: str, proxy: bool) -> Outcome:
        ksr = self._ksr
        method = ksr.pv.get("$rm") or ""
        if authorize.is_exempt(method):
            return outcome.EXEMPT
        start = self._clock()
        settings = self._cfg.refresh()
        if settings is None:
            return outcome.SERVER_ERROR
        req, msgid = read_auth_request(ksr, method, proxy, realm)
        plan = authorize.plan(req, realm, proxy, bool(settings.identity_check))
        if isinstance(plan, Outcome):
            return plan
        if settings.protocol == "rfc4740":
            return self._decide_rfc4740(settings, plan, proxy, msgid, start)
        try:
            request = legacy.encode_auth_request(plan.ruri, plan.identity, msgid, plan.credentials, plan.method)
        except legacy.LegacyError as exc:
            self._error(f"authorize: cannot build the request: {exc}")
            return outcome.SERVER_ERROR
        answer = self._exchange(settings, request, msgid, start)
        if answer is None:
            return outcome.SERVER_ERROR
        result = legacy.auth_result(answer)
        if result is authorize.Result.SERVER_ERROR:
            code = answer.result_code
            self._error(
                f"authorize: server answered Result-Code {code}" if code else "authorize: answer without Result-Code"
            )
        decided = authorize.result_outcome(result, answer.challenge, proxy, plan.credentials is not None)
        if decided is outcome.SERVER_ERROR and result is authorize.Result.CHALLENGE:
            self._error("authorize: refused a challenge that is empty, not UTF-8 or has CR/LF/NUL inside")
        self._remember(decided, plan.credentials, proxy, msgid)
        return decided

    def _remember(self, decided: Outcome, credentials: Credentials | None, proxy: bool, msgid: int) -> None:
        """Credentials that passed, for diameter_is_user_in("Credentials,...") on the same message."""
        if decided is outcome.PASS and credentials is not None:
            if self._authorized_msgid != msgid:
                self._authorized_msgid = msgid
                self._authorized = {}
            self._authorized[proxy] = credentials

    def _decide_rfc4740(
        self, settings: Settings, plan: authorize.AuthContext, proxy: bool, msgid: int, start: float
    ) -> Outcome:
        client = self._rfc4740_client(settings, start)
        if client is None:
            return outcome.SERVER_ERROR
        try:
            mar = sip_app.mar_for(plan, plan.realm, self._sessions(), self._origin, self._client_identity[2])
        except sip_app.IncompleteCredentials as exc:
            self._error(f"authorize: {exc}")
            return outcome.BAD_REQUEST
        if mar is None:
            self._error("authorize: cannot build the MAR: the URI has no host or there is no realm")
            return outcome.SERVER_ERROR

        def build(hop: int, e2e: int, retransmit: bool) -> bytes:
            return sip_app.encode_mar(mar, hop, e2e, retransmit)

        answer = self._ask(client, settings, build, start, sip_app.decode_maa, "authorize: unusable MAA")
        if answer is None:
            return outcome.SERVER_ERROR
        result = sip_app.auth_result(answer)
        if result is authorize.Result.SERVER_ERROR:
            self._error(f"authorize: server answered Result-Code {answer.result_code}")
        value = None
        if result is authorize.Result.CHALLENGE and answer.challenge is not None:
            value = sip_app.challenge_value(answer.challenge)
            if value is None:
                self._error("authorize: refused a challenge whose values would break the header")
        decided = authorize.result_outcome(result, value, proxy, plan.credentials is not None)
        self._remember(decided, plan.credentials, proxy, msgid)
        return decided

    def _send(self, result: Outcome) -> int:
        if result.code:
            if result.header:
                self._ksr.hdr.append_to_reply(result.header)
            self._ksr.sl.send_reply(result.code, result.reason)
        try:
            self._ksr.pv.sets(outcome.RESULT_AVP, result.label)
        except Exception as exc:  # noqa: BLE001 - the reply went out; the label is a courtesy
            self._error(f"authorize: cannot set {outcome.RESULT_AVP}: {exc!r}")
        return result.ret

    # --- is_user_in -----------------------------------------------------------------

    def _is_user_in(self, param: str) -> int:
        query = self._group_params.get(param)
        if query is None:
            try:
                query = group.parse_param(param or "")
            except group.GroupParamError as exc:
                self._error(str(exc))
                return group.ERROR
            if len(self._group_params) < 1024:  # params are literals in practice; stay bounded
                self._group_params[param] = query
        ksr = self._ksr
        msgid = int(ksr.pv.get("$mi"))
        ruri = ksr.pv.get("$ru")
        if query.who == "to":
            uri = ksr.pv.get("$tu")
        elif query.who == "from":
            uri = ksr.pv.get("$fu")
        else:
            uri = ruri
        authorized = None
        if query.who == "credentials" and self._authorized_msgid == msgid:
            authorized = self._authorized.get(False) or self._authorized.get(True)
        settings = self._cfg.refresh()
        if settings is None:
            return group.ERROR
        plan = group.plan(query.who, uri, ruri, authorized, bool(settings.use_domain))
        if isinstance(plan, int):
            return plan
        if settings.protocol == "rfc4740":
            return self._is_user_in_rfc4740(settings, plan, query.group)
        try:
            request = legacy.encode_group_request(plan.destination_realm, msgid, query.group, plan.user_name)
        except legacy.LegacyError as exc:
            self._error(f"diameter_is_user_in: cannot build the request: {exc}")
            return group.ERROR
        answer = self._exchange(settings, request, msgid, self._clock())
        if answer is None:
            return group.ERROR
        return group.USER_IN if answer.result_code == legacy.RESULT_SUCCESS else group.ERROR

    def _is_user_in_rfc4740(self, settings: Settings, plan: group.GroupContext, wanted: str) -> int:
        """SAR NO_ASSIGNMENT for the user's "groups" SIP-User-Data (see wire/sip_app.py)."""
        start = self._clock()
        client = self._rfc4740_client(settings, start)
        if client is None:
            return group.ERROR
        sar = sip_app.ServerAssignmentRequest(
            session_id=self._sessions(),
            origin_host=self._origin.origin_host,
            origin_realm=self._origin.origin_realm,
            destination_realm=self._client_identity[2],
            assignment_type=sip_app.ASSIGNMENT_NO_ASSIGNMENT,
            user_name=plan.user_name.decode("utf-8", "replace"),
            supported_user_data_types=(sip_app.GROUPS_USER_DATA_TYPE,),
        )

        def build(hop: int, e2e: int, retransmit: bool) -> bytes:
            return sip_app.encode_sar(sar, hop, e2e, retransmit)

        answer = self._ask(client, settings, build, start, sip_app.decode_saa, "diameter_is_user_in: unusable SAA")
        if answer is None:
            return group.ERROR
        if answer.result_code not in (base.RESULT_SUCCESS, sip_app.RESULT_SUCCESS_SERVER_NAME_NOT_STORED):
            if answer.result_code != sip_app.RESULT_ERROR_USER_UNKNOWN:
                self._error(f"diameter_is_user_in: server answered Result-Code {answer.result_code}")
            return group.ERROR
        groups = sip_app.groups_of(answer.user_data)
        if groups is None:
            self._error("diameter_is_user_in: SAA without a 'groups' SIP-User-Data")
            return group.ERROR
        return group.USER_IN if wanted in groups else group.ERROR

    # --- rfc4740 peer ---------------------------------------------------------------

    def _rfc4740_client(self, settings: Settings, start: float) -> DiameterClient | None:
        """This worker's client, rebuilt when its identity settings change; parting from
        the old connections (DPR, DPA, FIN) waits no longer than this request may."""
        if settings is self._client_settings and self._client is not None:
            return self._client
        deadline = start + settings.answer_timeout / 1000.0
        identity = resolve_identity(settings, self._rank, self._host_name)
        try:
            if self._client is None or identity != self._client_identity:
                if self._client is not None:
                    self._client.close(deadline)
                origin = base.Identity(identity[0], identity[1])
                self._client = DiameterClient(
                    LocalPeer(origin, (sip_app.APP_SIP,), int(time.time())), clock=self._clock
                )
                self._client.offset = self._rank if self._rank is not None and self._rank > 0 else os.getpid()
                self._client_identity, self._origin = identity, origin
                self._sessions = base.SessionIds(origin.origin_host)
            self._client.configure(settings, deadline)
        except SettingsError as exc:
            self._error(f"rfc4740 settings unusable: {exc}")
            self._client_settings = None
            return None
        self._client_settings = settings
        return self._client

    def _ask(
        self,
        client: DiameterClient,
        settings: Settings,
        build: Callable[[int, int, bool], bytes],
        start: float,
        decode: Callable[[bytes], tuple[base.AnswerInfo, A]],
        unusable: str,
    ) -> A | None:
        """The decoded answer to ``build``'s request, or None after logging why not."""
        try:
            frame = client.request(build, start, settings.answer_timeout / 1000.0)
        except RequestTooLarge:
            raise
        except TransportError as exc:
            self._error(f"Diameter exchange failed: {exc}")
            return None
        try:
            return decode(frame)[1]
        except (base.DecodeError, base.RequestError) as exc:
            self._error(f"{unusable}: {exc}")
            return None

    # --- shared ---------------------------------------------------------------------

    def _exchange(self, settings: Settings, request: bytes, msgid: int, start: float) -> legacy.Answer | None:
        transport = self._transport
        if settings is not self._configured:
            transport.configure(
                settings.diameter_client_host,
                settings.diameter_client_port,
                settings.connect_timeout,
                settings.reconnect_interval,
            )
            self._configured = settings
        want = msgid & 0xFFFFFFFF

        def accept(frame: bytes) -> legacy.Answer | None:
            answer = legacy.decode_answer(frame)
            return answer if answer.msgid == want else None

        try:
            return transport.exchange(request, start, settings.answer_timeout / 1000.0, accept)
        except RequestTooLarge:
            raise
        except TransportError as exc:
            self._error(f"Diameter exchange failed: {exc}")
            return None

    def _error(self, text: str) -> None:
        """Log an error, but the same text at most once per few seconds per process.

        The text may carry what a peer or a SIP client sent (an Error-Message, a
        username), so it is escaped into one printable line first.
        """
        text = printable(text)
        now = self._clock()
        last_text, last_at = self._last_log
        if text == last_text and now - last_at < _LOG_REPEAT_S:
            return
        self._last_log = (text, now)
        try:
            self._ksr.err(f"auth_diameter: {text}\n")
        except Exception:  # noqa: BLE001 - a failing log call must not fail the request
            pass


def create(ksr: Any) -> AuthDiameter:
    """Build the plugin in Kamailio's main process, before it forks.

    The cfg file Kamailio runs is scanned for ``auth_diameter.*`` settings; a bad
    literal value or an unknown name raises SettingsError, which app_python3 reports,
    and Kamailio refuses to start.
    """
    path, defines = cfgfile.from_command_line(cfgfile.read_own_command_line())
    declared = cfgfile.scan(path, defines, _read_text)
    cfg = CfgSettings.at_startup(ksr, declared)
    names = ", ".join(declared.values) or "none, all defaults"
    ksr.info(
        f"auth_diameter: plugin {__version__} from {_PACKAGE_DIR} ready; "
        f"settings declared in {', '.join(declared.files)}: {names}\n"
    )
    s = cfg.startup
    # the FQDN takes DNS: ask once now, not in a request, and only if it names us
    needs_name = s is not None and s.protocol == "rfc4740" and not s.origin_host
    return AuthDiameter(ksr, cfg, host_name=local_fqdn(FQDN_WAIT) if needs_name else None)


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()
