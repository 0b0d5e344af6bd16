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
from typing import Any

from .. import __version__, authorize, backend, group, metrics, outcome
from ..logtext import printable
from ..outcome import Outcome
from ..settings import Settings, SettingsError
from ..sip.credentials import Credentials
from ..transport.resolve import local_fqdn
from ..transport.stream import RequestTooLarge
from . import cfgfile
from .config import CfgSettings
from .request import credentials_count, read_auth_request
from .stats import KsrStatistics

_LOG_REPEAT_S = 5.0
FQDN_WAIT = 2.0  # s: how long start-up may wait for DNS to name this host (the default Origin-Host)
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class AuthDiameter:
    def __init__(self, ksr: Any, cfg: CfgSettings, clock=time.monotonic, host_name: str | None = None) -> None:
        self._ksr = ksr
        self._cfg = cfg
        self._clock = clock
        # every outcome and Diameter event counted in Kamailio's statistics (kamailio/stats.py)
        self.metrics = metrics.Recorder(KsrStatistics(ksr, self._error))
        # host_name: this machine's FQDN, found at start-up: no DNS in a request; instance and
        # started: set here, before Kamailio forks, so that every worker has the same
        self._env = backend.Environment(
            clock=clock,
            log=self._error,
            host_name=host_name,
            ksr=ksr,
            events=self.metrics.event,
            instance=os.urandom(2).hex(),
            started=time.time(),
        )
        self._backend: backend.Backend | None = None
        self._protocol = ""  # the mode of self._backend
        self._configured: Settings | None = None  # the settings self._backend was last given
        self._group_params: dict[str, group.GroupQuery] = {}
        # credentials authorized for the message being processed, for who=Credentials
        self._authorized_msgid: int | None = None
        self._authorized: dict[bool, Credentials] = {}
        self._last_log: tuple[str, float] = ("", 0.0)

    # --- app_python3 callbacks ------------------------------------------------------

    def child_init(self, rank: int) -> int:
        """Remember the rank (it names this worker's Diameter identity); connections
        are opened by the first request that needs them."""
        self._env.rank = rank if isinstance(rank, int) else None
        return 0

    def diameter_www_authorize(self, msg: Any, realm: str = "") -> int:
        return self._authorize(realm, proxy=False)

    def diameter_proxy_authorize(self, msg: Any, realm: str = "") -> int:
        return self._authorize(realm, proxy=True)

    def diameter_is_user_in(self, msg: Any, param: str = "") -> int:
        result = self._checked_is_user_in(param)
        self.metrics.group(result)
        return result

    def _checked_is_user_in(self, param: str) -> int:
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
        self.metrics.outcome(result.label)
        try:
            return self._send(result)
        except Exception as exc:  # noqa: BLE001
            self._error(f"authorize: sending the {result.code} reply failed: {exc!r}")
            return outcome.AUTH_ERROR

    def _decide(self, realm: str, proxy: bool) -> Outcome:
        ksr = self._ksr
        method = ksr.pv.get("$rm") or ""
        if method in authorize.EXEMPT:
            return outcome.EXEMPT
        start = self._clock()
        settings = self._cfg.refresh()
        if settings is None:
            return outcome.SERVER_ERROR
        count = credentials_count(ksr, proxy)
        if not count and realm:
            chosen = self._backend_for(settings, start)
            if chosen is None:
                return outcome.SERVER_ERROR
            challenged = chosen.challenge(realm, proxy)
            if challenged is not None:
                return challenged
        req, msgid = read_auth_request(ksr, method, proxy, realm, count)
        plan = authorize.plan(req, realm, proxy, bool(settings.identity_check))
        if isinstance(plan, Outcome):
            return plan
        chosen = self._backend_for(settings, start)
        if chosen is None:
            return outcome.SERVER_ERROR
        decided = chosen.authorize(plan, proxy, msgid, start)
        self._remember(decided, plan.credentials, proxy, msgid)
        return decided

    def _remember(self, decided: Outcome, credentials: Credentials | None, proxy: bool, msgid: int) -> None:
        """Credentials that passed, for diameter_is_user_in("Credentials,...") on the same message."""
        if decided is outcome.PASS and credentials is not None:
            if self._authorized_msgid != msgid:
                self._authorized_msgid = msgid
                self._authorized = {}
            self._authorized[proxy] = credentials

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
        start = self._clock()
        chosen = self._backend_for(settings, start)
        if chosen is None:
            return group.ERROR
        return chosen.is_user_in(plan, query.group, msgid, start)

    # --- the mode ---------------------------------------------------------------------

    def _backend_for(self, settings: Settings, start: float) -> backend.Backend | None:
        """This worker's backend for the settings, replaced when ``protocol`` changes and
        reconfigured when another setting does; parting from old connections waits no
        longer than this request may. None (logged) if the settings cannot be used."""
        if settings is self._configured and self._backend is not None:
            return self._backend
        deadline = start + settings.answer_timeout / 1000.0
        if self._backend is None or settings.protocol != self._protocol:
            if self._backend is not None:
                self._backend.close(deadline)
            self._backend = backend.choose(settings.protocol, self._env)
            self._protocol = settings.protocol
        try:
            self._backend.configure(settings, deadline)
        except SettingsError as exc:
            self._error(f"{settings.protocol} settings unusable: {exc}")
            self._configured = None
            return None
        self._configured = settings
        return self._backend

    # --- shared ---------------------------------------------------------------------

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
    needs_name = s is not None and backend.needs_host_name(s.protocol) and not s.origin_host
    return AuthDiameter(ksr, cfg, host_name=local_fqdn(FQDN_WAIT) if needs_name else None)


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()
