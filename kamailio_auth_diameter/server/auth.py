"""The server's verdicts, pure: one digest/nonce core, two dialects around it.

No sockets here: a decoded request goes in, an answer's content comes out.
:class:`DigestChecker` judges credentials with the shared core (``digest_check``: the
plugin judges the same way when it verifies digests itself) and the store, and returns
a neutral ``DigestVerdict``; each dialect turns it into its own result codes.

Legacy, as DISC's sipauth module gave them (§9): service '6': no credentials, a
foreign or tampered nonce, or a wrong response -> 4001 with a fresh challenge; an
expired nonce or a replayed response -> 4001 with stale=true; an unknown user ->
5003; a correct response -> 2001. Service '8': 2001 or 4001.

RFC 4740 (Flow A, the server checks the digest; Flow B, it gives a trusted peer the
user's H(A1)): see :class:`SipAuthority`. 3GPP Cx "SIP Digest" (H(A1) to trusted peers
only): see :class:`CxAuthority`. Which peers are trusted is the responder's decision
(``--ha1-peer``); here it arrives as a flag.

A store that cannot answer (:class:`~.store.StoreUnavailable`: the database is down
or slow) fails that one request with 5012 in either dialect, and is logged; the
connection and the server go on, and the next request asks the store again.

What the answers do not show, a store failure and a response left unchecked by the
throttle, is reported to :class:`AuthEvents` (the server's metrics).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from .. import digest_check
from ..digest_check import Check, DigestVerdict, Target
from ..nonce import NonceFactory
from ..sip.credentials import CredentialsError, parse_credentials
from ..sip.uri import SipUri, UriError, parse_uri
from ..wire import base, cx, legacy, sip_app
from ..wire.digest_avps import MD5, SHA_256, DigestHa1
from .store import StoreUnavailable, UserHashes
from .throttle import ThrottlePolicy

log = logging.getLogger("kamailio_auth_diameter.server")

_SAFE_REALM = re.compile(r"[A-Za-z0-9.\-_:\[\]]+")
_NONCE_COUNT = re.compile(r"[0-9A-Fa-f]{8}")  # RFC 7616 §3.4: nc-value = 8LHEX
PURGE_INTERVAL = 30.0  # seconds between sweeps of expired nonce counts and forgotten failures
# A nonce's count is kept this long past the nonce's expiry. Expiry is judged by the
# clock of whichever instance checks the nonce; were the count dropped the moment a
# fast clock sees the nonce expire, a slower instance would take a replay as a first
# use. So the clocks of instances sharing a database must agree within this.
COUNT_GRACE = 300


class Store(Protocol):
    """What the decisions read and write; each may raise StoreUnavailable."""

    def user_hashes(self, username: str, realm: str) -> UserHashes | None: ...

    def use_nonce(self, nonce: str, nc: int, expires: int, request_id: str = "", copy: bool = False) -> bool: ...

    def record_failure(self, username: str, realm: str, now: float, forget_before: float) -> int: ...

    def block(self, username: str, realm: str, until: float) -> None: ...

    def clear_failures(self, username: str, realm: str) -> None: ...

    def purge(self, expired_before: float, forget_before: float) -> None: ...

    def in_group(self, name: str, group: str) -> bool: ...

    def user_groups(self, name: str) -> list[str] | None: ...


class AuthEvents(Protocol):
    """What the decisions report besides their answers (the server's metrics count them)."""

    def store_failed(self) -> None:
        """The store raised StoreUnavailable: a request answered 5012, or a purge skipped."""

    def throttled(self) -> None:
        """A response answered as wrong without being checked: its user is blocked."""


class _NoEvents:
    """The events of deciders nobody counts for (the unit tests)."""

    def store_failed(self) -> None:
        pass

    def throttled(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class DiameterRequest:
    """Which RFC 6733 request asks: Origin-Host and end-to-end id name it across every hop
    and re-send (§3), and ``copy`` is its T flag. A relay that loses a server re-sends the
    request to another (RFC 6733 §5.5.4); if the lost server had recorded the response's
    nonce-count before dying, the copy is the same request, not a replay."""

    identity: str
    copy: bool = False


class DigestChecker:
    """The server's judgement of digest credentials: the shared core's order (see
    ``digest_check``) with the store's HA1s and nonce counts, and the throttle: while a
    user is blocked after repeated wrong responses, responses are answered as wrong
    without being checked, so a guesser learns nothing during the block. The nonce
    counts live in the store, so a replay is refused across every process and instance
    sharing it.
    """

    def __init__(
        self,
        store: Store,
        nonces: NonceFactory,
        throttle: ThrottlePolicy | None = None,
        check_uri: bool = True,
        events: AuthEvents | None = None,
    ) -> None:
        self._store = store
        self._nonces = nonces
        self._throttle = throttle or ThrottlePolicy()
        self._check_uri = check_uri  # False only behind a front end that rewrites Request-URIs
        self._events = events or _NoEvents()
        self._clock = nonces.clock
        self._next_purge = 0.0

    def check(
        self,
        realm: str,
        username: str,
        params: Mapping[str, str],
        method: str,
        target: Target | None,
        request: DiameterRequest | None = None,
    ) -> DigestVerdict:
        """``realm`` is the realm we challenged in (the nonce is bound to it);
        ``params`` are the credentials under their Authorization-header names,
        ``params["realm"]`` the realm the user is looked up in; ``method`` enters
        H(A2); ``target`` is what the digest ``uri`` must name, when known;
        ``request`` is the Diameter request that asks, when it has an identity."""
        screened = digest_check.screen(self._nonces, realm, params, target if self._check_uri else None)
        if isinstance(screened, DigestVerdict):
            return screened
        cred_realm = params.get("realm", "").lower()
        split = digest_check.split_username(username, cred_realm)
        hashes = self._store.user_hashes(split[0], cred_realm) if split is not None else None
        if split is None or hashes is None:
            return DigestVerdict(Check.UNKNOWN_USER, f"unknown user {username!r}@{cred_realm!r}")
        user, with_domain = split
        now = self._clock()
        self._purge(now)
        who = f"{user}@{cred_realm}"
        if hashes.blocked_until > now:
            self._events.throttled()
            return DigestVerdict(
                Check.WRONG, f"response for {who!r} not checked: throttled for {hashes.blocked_until - now:.1f} s"
            )
        check = digest_check.judge(screened, hashes.ha1b if with_domain else hashes.ha1, method)
        if check is Check.WRONG:
            self._failed(user, cred_realm, now)
            return DigestVerdict(Check.WRONG, f"wrong response for {who!r}")
        if check is Check.STALE:
            return DigestVerdict(Check.STALE, "nonce expired")
        nonce = params["nonce"]
        request_id, copy = (request.identity, request.copy) if request is not None else ("", False)
        if not self._store.use_nonce(nonce, screened.nc, self._nonces.expiry(nonce), request_id, copy):
            return DigestVerdict(Check.STALE, f"replayed response for {who!r} (nc {params['nc']} not above the last)")
        if hashes.failures:
            self._store.clear_failures(user, cred_realm)
        return DigestVerdict(Check.AUTHENTICATED, f"authenticated {who!r}")

    def _failed(self, user: str, realm: str, now: float) -> None:
        policy = self._throttle
        if not policy.enabled:
            return
        failures = self._store.record_failure(user, realm, now, now - policy.forget_after)
        delay = policy.delay(failures)
        if delay:
            self._store.block(user, realm, now + delay)
            log.warning(
                "throttling %r@%r: %d wrong responses in a row, the next one is checked in %.0f s",
                user,
                realm,
                failures,
                delay,
            )

    def _purge(self, now: float) -> None:
        """A sweep now and then; a failed one waits for the next and fails no request."""
        if now >= self._next_purge:
            self._next_purge = now + PURGE_INTERVAL
            try:
                self._store.purge(now - COUNT_GRACE, now - self._throttle.forget_after)
            except StoreUnavailable as exc:
                self._events.store_failed()
                log.error("store failed while purging expired nonce counts: %s", exc)


def resource_target(resource: bytes) -> Target | None:
    """The Request-URI's parts from a legacy Resource AVP (the C module's
    ``user@host:port`` buffer with its NUL quirks, see legacy.c_string_buffer);
    None if it cannot be read."""
    try:
        text = resource.rstrip(b"\0").decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\0" in text:  # host\0port: no user, an explicit port
        host, _, port = text.partition("\0")
        return Target("", host, port)
    user, _, hostport = text.rpartition("@")
    if hostport.startswith("["):
        host, _, tail = hostport.partition("]")
        return Target(user, host + "]", tail[1:] if tail.startswith(":") else "")
    host, _, port = hostport.partition(":")
    return Target(user, host, port)


def aor_target(sip_aor: str) -> Target | None:
    """An RFC 4740 SIP-AOR as the request's target: for requests other than REGISTER
    it is the Request-URI (§8.7), without its port."""
    try:
        u: SipUri = parse_uri(sip_aor)
    except UriError:
        return None
    return Target(u.user, u.host, None)


@dataclass(frozen=True, slots=True)
class Verdict:
    result_code: int
    challenge: bytes | None = None
    reason: str = ""  # for the server log


class _Authority:
    """What both dialects decide with: the store, the nonces, one digest checker (shared
    by a process's listeners, so they purge and throttle as one), and
    ``hide_unknown_users``: an unknown user gets the answer a wrong password gets, so
    that replies do not tell which users exist."""

    def __init__(
        self,
        store: Store,
        nonces: NonceFactory,
        *,
        checker: DigestChecker | None = None,
        hide_unknown_users: bool = False,
        events: AuthEvents | None = None,
    ) -> None:
        self._store = store
        self._nonces = nonces
        self._events = events or _NoEvents()
        self._checker = checker or DigestChecker(store, nonces, events=self._events)
        self._hide_unknown = hide_unknown_users

    @property
    def store(self) -> Store:
        return self._store


class LegacyAuthority(_Authority):
    """With ``hide_unknown_users`` an unknown user gets 4001 with a fresh challenge
    instead of DISC's 5003 (401 instead of 403)."""

    def _challenge(self, realm: str, reason: str, stale: bool = False) -> Verdict:
        text = f'Digest realm="{realm}", nonce="{self._nonces.make(realm)}", qop="auth"'
        if stale:
            text += ", stale=true"
        return Verdict(legacy.RESULT_AUTHENTICATION_REJECTED, (text + "\r\n").encode(), reason)

    def decide(self, request: legacy.Message) -> Verdict:
        service = (request.first(legacy.AVP_SERVICE_TYPE) or b"")[:1]
        try:
            if service == legacy.SERVICE_AUTH:
                return self._authenticate(request)
            if service == legacy.SERVICE_GROUP:
                return self._group(request)
        except StoreUnavailable as exc:
            self._events.store_failed()
            log.error("store failed, answering 5012: %s", exc)
            return Verdict(legacy.RESULT_UNABLE_TO_COMPLY, reason=f"store failed: {exc}")
        return Verdict(legacy.RESULT_UNABLE_TO_COMPLY, reason=f"unsupported Service-Type {service!r}")

    def _authenticate(self, request: legacy.Message) -> Verdict:
        realm_raw = request.first(legacy.AVP_DESTINATION_REALM) or b""
        realm = realm_raw.decode("utf-8", "replace").lower()
        if not _SAFE_REALM.fullmatch(realm):
            return Verdict(legacy.RESULT_UNABLE_TO_COMPLY, reason=f"unusable Destination-Realm {realm_raw!r}")
        response = request.first(legacy.AVP_RESPONSE)
        if response is None:
            return self._challenge(realm, "no credentials")
        try:
            cred = parse_credentials(response.decode("utf-8"))
        except (UnicodeDecodeError, CredentialsError) as exc:
            return self._challenge(realm, f"malformed credentials: {exc}")
        if cred is None:
            return self._challenge(realm, "not Digest credentials")
        method = (request.first(legacy.AVP_METHOD) or b"").decode("utf-8", "replace")
        resource = request.first(legacy.AVP_RESOURCE)
        target = resource_target(resource) if resource is not None else None
        if target is None:
            return Verdict(legacy.RESULT_UNABLE_TO_COMPLY, reason=f"unusable Resource {resource!r}")
        v = self._checker.check(realm, cred.username, cred.params, method, target)
        if v.check is Check.AUTHENTICATED:
            return Verdict(legacy.RESULT_SUCCESS, reason=v.reason)
        if v.check is Check.UNKNOWN_USER and not self._hide_unknown:
            return Verdict(legacy.RESULT_AUTHORIZATION_REJECTED, reason=v.reason)
        return self._challenge(realm, v.reason, stale=v.check is Check.STALE)

    def _group(self, request: legacy.Message) -> Verdict:
        name = (request.first(legacy.AVP_USER_NAME) or b"").rstrip(b"\0").decode("utf-8", "replace")
        group = (request.first(legacy.AVP_USER_GROUP) or b"").decode("utf-8", "replace")
        if self._store.in_group(name, group):
            return Verdict(legacy.RESULT_SUCCESS, reason=f"{name!r} in {group!r}")
        return Verdict(legacy.RESULT_AUTHENTICATION_REJECTED, reason=f"{name!r} not in {group!r}")


class SipAuthority(_Authority):
    """RFC 4740 decisions (Flow A: the nonce is made and the response checked here).

    MAR without credentials, or with credentials we cannot use (a nonce that is not
    ours, a qop we did not offer, a digest uri that is not the request's) -> a
    challenge, result 1001, or 2008 when the MAR had no SIP-Server-URI (RFC 4740
    §10.1.2: "challenge sent, server name not stored"; that is the outbound-proxy
    case of §6.4). A correct response with an expired nonce, or a replayed one ->
    the same with Digest-Stale "true". A wrong response -> 4001 with a fresh
    challenge. An unknown user -> 5032 (4001 with ``hide_unknown_users``). A
    REGISTER whose digest user is not the SIP-AOR's user -> 5033
    (IDENTITIES_DONT_MATCH): a user may register only their own address, or a valid
    user could take over another's calls. A correct response -> 2001 to a registrar
    (with SIP-Server-URI, the §6.2 flow), 2006 without it (§10.1.2). No server name
    is ever stored; a registrar that needs one is not served by this reference server.

    Flow B (§6.3), only when the caller says the peer is trusted with H(A1)
    (``ha1``): a MAR without credentials but with User-Name (the digest username as
    the UA gives it) is answered with the same challenge code, one SIP-Auth-Data-Item
    per H(A1) the user has, SHA-256 first, each SIP-Authenticate carrying Digest-HA1
    (see :func:`user_ha1s`; the realm is the SIP-AOR's host). A REGISTER for someone
    else's SIP-AOR -> 5033 and an unknown user -> 5032, whatever
    ``hide_unknown_users`` says: the peer is trusted with password equivalents, and
    what the UA learns is the peer's decision. Nothing is counted in the store (no
    nonce count, no failure). Without User-Name, or for an untrusted peer, Flow A's
    challenge as before.

    SAR NO_ASSIGNMENT with User-Name -> 2001 (nothing is assigned, so nothing
    remains unstored) with SIP-User-Data "groups"; other assignment types -> 5012.
    """

    def _challenge(
        self, realm: str, result_code: int, stale: bool = False, error: str | None = None
    ) -> sip_app.MultimediaAuthAnswer:
        challenge = sip_app.DigestChallenge(realm=realm, nonce=self._nonces.make(realm), stale=stale)
        return sip_app.MultimediaAuthAnswer(result_code, challenge, error_message=error)

    def multimedia_auth(
        self, req: sip_app.MultimediaAuthRequest, request: DiameterRequest | None = None, ha1: bool = False
    ) -> sip_app.MultimediaAuthAnswer:
        try:
            if ha1 and req.credentials is None and req.user_name:
                return self._flow_b(req)
            return self._multimedia_auth(req, request)
        except StoreUnavailable as exc:
            self._events.store_failed()
            log.error("store failed, answering 5012: %s", exc)
            return sip_app.MultimediaAuthAnswer(base.RESULT_UNABLE_TO_COMPLY, error_message="user database unavailable")

    def server_assignment(self, req: sip_app.ServerAssignmentRequest) -> sip_app.ServerAssignmentAnswer:
        try:
            return self._server_assignment(req)
        except StoreUnavailable as exc:
            self._events.store_failed()
            log.error("store failed, answering 5012: %s", exc)
            return sip_app.ServerAssignmentAnswer(
                base.RESULT_UNABLE_TO_COMPLY, error_message="user database unavailable"
            )

    def _multimedia_auth(
        self, req: sip_app.MultimediaAuthRequest, request: DiameterRequest | None
    ) -> sip_app.MultimediaAuthAnswer:
        realm = _digest_realm(req)
        if not _SAFE_REALM.fullmatch(realm):
            return sip_app.MultimediaAuthAnswer(
                base.RESULT_INVALID_AVP_VALUE, error_message=f"no usable realm in User-Name or SIP-AOR {req.sip_aor!r}"
            )
        registrar = req.server_uri is not None
        challenge_code = (
            base.RESULT_MULTI_ROUND_AUTH if registrar else sip_app.RESULT_SUCCESS_AUTH_SENT_SERVER_NOT_STORED
        )
        cred = req.credentials
        if cred is None:
            return self._challenge(realm, challenge_code)
        # RFC 4740 §9.14: SIP-Method is for authorization; H(A2) uses Digest-Method.
        method = cred.method or req.sip_method
        register = req.sip_method.upper() == "REGISTER"
        if register and not _owns(cred.username, realm, req.sip_aor):
            return sip_app.MultimediaAuthAnswer(
                sip_app.RESULT_ERROR_IDENTITIES_DONT_MATCH,
                error_message=f"{cred.username!r} may not register {req.sip_aor!r}",
            )
        target = None if register else aor_target(req.sip_aor)
        v = self._checker.check(realm, cred.username, cred.params(), method, target, request)
        if v.check is Check.AUTHENTICATED:
            return sip_app.MultimediaAuthAnswer(
                base.RESULT_SUCCESS if registrar else sip_app.RESULT_SUCCESS_SERVER_NAME_NOT_STORED
            )
        if v.check is Check.UNKNOWN_USER and not self._hide_unknown:
            return sip_app.MultimediaAuthAnswer(sip_app.RESULT_ERROR_USER_UNKNOWN, error_message=v.reason)
        if v.check in (Check.WRONG, Check.UNKNOWN_USER):
            return self._challenge(realm, base.RESULT_AUTHENTICATION_REJECTED, error="authentication rejected")
        return self._challenge(realm, challenge_code, stale=v.check is Check.STALE)

    def _flow_b(self, req: sip_app.MultimediaAuthRequest) -> sip_app.MultimediaAuthAnswer:
        code = (
            base.RESULT_MULTI_ROUND_AUTH
            if req.server_uri is not None
            else sip_app.RESULT_SUCCESS_AUTH_SENT_SERVER_NOT_STORED
        )
        username = req.user_name or ""
        realm = _aor_realm(req.sip_aor)
        if realm is None:
            return sip_app.MultimediaAuthAnswer(
                base.RESULT_INVALID_AVP_VALUE, error_message=f"no usable realm in SIP-AOR {req.sip_aor!r}"
            )
        if req.sip_method.upper() == "REGISTER" and not _owns(username, realm, req.sip_aor):
            return sip_app.MultimediaAuthAnswer(
                sip_app.RESULT_ERROR_IDENTITIES_DONT_MATCH,
                error_message=f"{username!r} may not register {req.sip_aor!r}",
            )
        ha1s = user_ha1s(self._store, username, realm)
        if not ha1s:
            return sip_app.MultimediaAuthAnswer(
                sip_app.RESULT_ERROR_USER_UNKNOWN, error_message=f"unknown user {username!r}@{realm!r}"
            )
        challenge = sip_app.DigestChallenge(realm=realm, nonce=self._nonces.make(realm), algorithm=ha1s[0].algorithm)
        return sip_app.MultimediaAuthAnswer(code, challenge, ha1s=ha1s)

    def _server_assignment(self, req: sip_app.ServerAssignmentRequest) -> sip_app.ServerAssignmentAnswer:
        if req.assignment_type != sip_app.ASSIGNMENT_NO_ASSIGNMENT:
            return sip_app.ServerAssignmentAnswer(
                base.RESULT_UNABLE_TO_COMPLY,
                error_message=f"SIP-Server-Assignment-Type {req.assignment_type} is not supported (only NO_ASSIGNMENT)",
            )
        if not req.user_name:
            return sip_app.ServerAssignmentAnswer(sip_app.RESULT_USER_NAME_REQUIRED, error_message="no User-Name")
        wanted = req.supported_user_data_types
        if wanted and sip_app.GROUPS_USER_DATA_TYPE not in wanted:
            return sip_app.ServerAssignmentAnswer(
                sip_app.RESULT_ERROR_NOT_SUPPORTED_USER_DATA,
                error_message=f"only SIP-User-Data-Type {sip_app.GROUPS_USER_DATA_TYPE!r} is served",
            )
        groups = self._store.user_groups(req.user_name)
        if groups is None:
            return sip_app.ServerAssignmentAnswer(
                sip_app.RESULT_ERROR_USER_UNKNOWN, error_message=f"unknown user {req.user_name!r}"
            )
        return sip_app.ServerAssignmentAnswer(base.RESULT_SUCCESS, (sip_app.groups_user_data(groups),))


class CxAuthority:
    """3GPP Cx MAR decisions for "SIP Digest" (TS 29.228 §6.3.1), as an HSS makes them.

    The S-CSCF (the proxy) checks digests itself, so the only answer worth having is
    the user's H(A1): a peer the caller does not trust with it (``trusted`` False: its
    Origin-Host matches no ``--ha1-peer``) gets 5012 UNABLE_TO_COMPLY and an
    Error-Message saying why, which a proxy logs; it is not told anything about the
    user. For a trusted peer, in TS 29.228's order: an IMPI (User-Name, the digest
    username) or IMPU (Public-Identity) we do not know -> Experimental-Result 5001; an
    IMPI that is not the IMPU's user -> 5002; a scheme other than "SIP Digest" or
    "Unknown" (the HSS's choice, which is SIP Digest) -> 5006; else 2001 with
    SIP-Digest-Authenticate: the MD5 H(A1) and, for a user added with a password, the
    SHA-256 one as Alternate-Digest-HA1. The realm is the IMPU's host. A store that
    cannot answer -> 5012. Nothing is counted in the store.
    """

    def __init__(self, store: Store, events: AuthEvents | None = None) -> None:
        self._store = store
        self._events = events or _NoEvents()

    def multimedia_auth(self, req: cx.MultimediaAuthRequest, trusted: bool) -> cx.MultimediaAuthAnswer:
        if not trusted:
            return cx.MultimediaAuthAnswer(
                base.RESULT_UNABLE_TO_COMPLY,
                error_message="H(A1) is given only to trusted peers (--ha1-peer), and this one is not",
            )
        try:
            return self._multimedia_auth(req)
        except StoreUnavailable as exc:
            self._events.store_failed()
            log.error("store failed, answering 5012: %s", exc)
            return cx.MultimediaAuthAnswer(base.RESULT_UNABLE_TO_COMPLY, error_message="user database unavailable")

    def _multimedia_auth(self, req: cx.MultimediaAuthRequest) -> cx.MultimediaAuthAnswer:
        realm = _aor_realm(req.public_identity)
        ha1s = user_ha1s(self._store, req.user_name, realm) if realm is not None else None
        if realm is None or not ha1s:
            return _experimental(cx.USER_UNKNOWN, f"unknown user {req.user_name!r} or {req.public_identity!r}")
        if not _owns(req.user_name, realm, req.public_identity):
            impu_user = parse_uri(req.public_identity).user
            if self._store.user_hashes(impu_user, realm) is None:
                return _experimental(cx.USER_UNKNOWN, f"unknown public identity {req.public_identity!r}")
            return _experimental(
                cx.IDENTITIES_DONT_MATCH, f"{req.user_name!r} is not the user of {req.public_identity!r}"
            )
        if req.scheme not in (cx.SCHEME_SIP_DIGEST, cx.SCHEME_UNKNOWN):
            return _experimental(cx.AUTH_SCHEME_NOT_SUPPORTED, f"only {cx.SCHEME_SIP_DIGEST!r} is served")
        return cx.MultimediaAuthAnswer(base.RESULT_SUCCESS, ha1s=ha1s)


def _experimental(code: int, why: str) -> cx.MultimediaAuthAnswer:
    return cx.MultimediaAuthAnswer(experimental_result=code, error_message=why)


def user_ha1s(store: Store, username: str, realm: str) -> tuple[DigestHa1, ...] | None:
    """The H(A1)s a proxy needs to check ``username``'s responses in ``realm`` itself,
    SHA-256 first (RFC 8760: the stronger one is offered first), qop "auth"; None for
    a user we do not know. ``alice`` gets the hashes over ``alice``, ``alice@realm``
    those over ``alice@realm`` (the ``ha1b`` ones, as :class:`DigestChecker` uses them);
    a domain other than ``realm`` is nobody. Only users added with a password have a
    SHA-256 one. One read, nothing written."""
    user, at, domain = username.partition("@")
    if not user or (at and domain.lower() != realm):
        return None
    hashes = store.user_hashes(user, realm)
    if hashes is None:
        return None
    pairs = (
        (SHA_256, hashes.ha1b_sha256 if at else hashes.ha1_sha256),
        (MD5, hashes.ha1b if at else hashes.ha1),
    )
    return tuple(DigestHa1(algorithm, ha1, realm, "auth") for algorithm, ha1 in pairs if ha1)


def _aor_realm(uri: str) -> str | None:
    """The realm an address of record is in: its host in lower case; None if it has none usable."""
    try:
        host = parse_uri(uri).host.lower()
    except UriError:
        return None
    return host if _SAFE_REALM.fullmatch(host) else None


def _owns(username: str, realm: str, sip_aor: str) -> bool:
    """Whether the digest user ``alice`` (or ``alice@realm``) of ``realm`` is the user of
    the address of record ``sip:alice@realm``: user parts equal, domains equal ignoring case."""
    try:
        aor = parse_uri(sip_aor)
    except UriError:
        return False
    user, at, domain = username.partition("@")
    if at and domain.lower() != realm:
        return False
    return aor.user == user and aor.host.lower() == realm


def _digest_realm(req: sip_app.MultimediaAuthRequest) -> str:
    """The digest realm a MAR is about, in lower case; never Destination-Realm, which is
    the Diameter routing realm (one AAA realm serves many SIP domains, and relays route
    on it).

    With credentials, the realm the UA answered in (the nonce is bound to it, so a
    forged one fails the check). Without, the realm of an NAI User-Name (user@realm:
    how our plugin passes the realm its script chose), else the SIP-AOR's domain.
    """
    if req.credentials is not None:
        return req.credentials.realm.lower()
    if req.user_name and "@" in req.user_name:
        return req.user_name.rpartition("@")[2].lower()
    try:
        return parse_uri(req.sip_aor).host.lower()
    except UriError:
        return ""
