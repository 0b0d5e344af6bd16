"""The server's verdicts, pure: one digest/nonce core, two dialects around it.

No sockets here: a decoded request goes in, an answer's content comes out.
:func:`check_digest` judges credentials and returns a neutral :class:`DigestVerdict`;
each dialect turns it into its own result codes.

Legacy, as DISC's sipauth module gave them (§9): service '6': no credentials, a
foreign or tampered nonce, or a wrong response -> 4001 with a fresh challenge; an
expired nonce -> 4001 with stale=true; an unknown user -> 5003; a correct response
-> 2001. Service '8': 2001 or 4001.

RFC 4740 (Flow A, the server checks the digest): see :class:`SipAuthority`.

A store that cannot answer (:class:`~.store.StoreUnavailable`: the database is down
or slow) fails that one request with 5012 in either dialect, and is logged; the
connection and the server go on, and the next request asks the store again.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from .. import digest
from ..nonce import NonceFactory, NonceState
from ..sip.credentials import CredentialsError, parse_credentials
from ..sip.uri import UriError, parse_uri
from ..wire import base, legacy, sip_app
from .store import StoreUnavailable, UserHashes

log = logging.getLogger("kamailio_auth_diameter.server")

_SAFE_REALM = re.compile(r"[A-Za-z0-9.\-_:\[\]]+")


class Store(Protocol):
    """What the decisions read; each may raise StoreUnavailable."""

    def user_hashes(self, username: str, realm: str) -> UserHashes | None: ...

    def in_group(self, name: str, group: str) -> bool: ...

    def user_groups(self, name: str) -> list[str] | None: ...


class DigestCheck(enum.Enum):
    AUTHENTICATED = "authenticated"
    UNUSABLE = "unusable"  # not ours, malformed or not what we offered: challenge afresh
    WRONG = "wrong"  # a wrong response from a known user
    STALE = "stale"  # our nonce, expired: challenge with stale=true
    UNKNOWN_USER = "unknown user"


@dataclass(frozen=True, slots=True)
class DigestVerdict:
    check: DigestCheck
    reason: str  # for the server log


def check_digest(
    store: Store, nonces: NonceFactory, realm: str, username: str, params: Mapping[str, str], method: str
) -> DigestVerdict:
    """Judge one set of digest credentials, for every dialect.

    ``realm`` is the realm we challenged in (the nonce is bound to it); ``params`` are
    the credentials under their Authorization-header names, ``params["realm"]`` the
    realm the user is looked up in; ``method`` enters H(A2).
    """
    state = nonces.check(params.get("nonce", ""), realm)
    if state is NonceState.INVALID:
        return DigestVerdict(DigestCheck.UNUSABLE, "nonce not ours")
    if state is NonceState.STALE:
        return DigestVerdict(DigestCheck.STALE, "nonce expired")
    cred_realm = params.get("realm", "")
    user, at, domain = username.partition("@")
    hashes = store.user_hashes(user, cred_realm) if (not at or domain == cred_realm) else None
    if hashes is None:
        return DigestVerdict(DigestCheck.UNKNOWN_USER, f"unknown user {username!r}@{cred_realm!r}")
    qop = params.get("qop", "")
    if qop and qop.lower() != "auth":
        return DigestVerdict(DigestCheck.UNUSABLE, f"qop {qop!r} not offered")
    d = digest.DigestInput(
        method=method,
        uri=params.get("uri", ""),
        nonce=params["nonce"],
        algorithm=params.get("algorithm", "MD5"),
        qop=qop,
        nc=params.get("nc", ""),
        cnonce=params.get("cnonce", ""),
    )
    if digest.check(hashes.ha1b if at else hashes.ha1, d, params.get("response", "")):
        return DigestVerdict(DigestCheck.AUTHENTICATED, f"authenticated {username!r}")
    return DigestVerdict(DigestCheck.WRONG, f"wrong response for {username!r}")


@dataclass(frozen=True, slots=True)
class Verdict:
    result_code: int
    challenge: bytes | None = None
    reason: str = ""  # for the server log


class LegacyAuthority:
    def __init__(self, store: Store, nonces: NonceFactory) -> None:
        self._store = store
        self._nonces = nonces

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
            log.error("store failed, answering 5012: %s", exc)
            return Verdict(legacy.RESULT_UNABLE_TO_COMPLY, reason=f"store failed: {exc}")
        return Verdict(legacy.RESULT_UNABLE_TO_COMPLY, reason=f"unsupported Service-Type {service!r}")

    def _authenticate(self, request: legacy.Message) -> Verdict:
        realm_raw = request.first(legacy.AVP_DESTINATION_REALM) or b""
        realm = realm_raw.decode("utf-8", "replace")
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
        v = check_digest(self._store, self._nonces, realm, cred.username, cred.params, method)
        if v.check is DigestCheck.AUTHENTICATED:
            return Verdict(legacy.RESULT_SUCCESS, reason=v.reason)
        if v.check is DigestCheck.UNKNOWN_USER:
            return Verdict(legacy.RESULT_AUTHORIZATION_REJECTED, reason=v.reason)
        return self._challenge(realm, v.reason, stale=v.check is DigestCheck.STALE)

    def _group(self, request: legacy.Message) -> Verdict:
        name = (request.first(legacy.AVP_USER_NAME) or b"").rstrip(b"\0").decode("utf-8", "replace")
        group = (request.first(legacy.AVP_USER_GROUP) or b"").decode("utf-8", "replace")
        if self._store.in_group(name, group):
            return Verdict(legacy.RESULT_SUCCESS, reason=f"{name!r} in {group!r}")
        return Verdict(legacy.RESULT_AUTHENTICATION_REJECTED, reason=f"{name!r} not in {group!r}")


class SipAuthority:
    """RFC 4740 decisions (Flow A: the nonce is made and the response checked here).

    MAR without credentials, or with credentials we cannot use (a nonce that is not
    ours, a qop we did not offer) -> a challenge, result 1001, or 2008 when the MAR
    had no SIP-Server-URI (RFC 4740 §10.1.2: "challenge sent, server name not
    stored"; that is the outbound-proxy case of §6.4). An expired nonce -> the same
    with Digest-Stale "true". A wrong response -> 4001 with a fresh challenge. An
    unknown user -> 5032. A correct response -> 2001 to a registrar (with
    SIP-Server-URI, the §6.2 flow), 2006 without it (§10.1.2). No server name is
    ever stored; a registrar that needs one is not served by this reference server.

    SAR NO_ASSIGNMENT with User-Name -> 2001 (nothing is assigned, so nothing
    remains unstored) with SIP-User-Data "groups"; other assignment types -> 5012.
    """

    def __init__(self, store: Store, nonces: NonceFactory) -> None:
        self._store = store
        self._nonces = nonces

    def _challenge(
        self, realm: str, result_code: int, stale: bool = False, error: str | None = None
    ) -> sip_app.MultimediaAuthAnswer:
        challenge = sip_app.DigestChallenge(realm=realm, nonce=self._nonces.make(realm), stale=stale)
        return sip_app.MultimediaAuthAnswer(result_code, challenge, error_message=error)

    def multimedia_auth(self, req: sip_app.MultimediaAuthRequest) -> sip_app.MultimediaAuthAnswer:
        try:
            return self._multimedia_auth(req)
        except StoreUnavailable as exc:
            log.error("store failed, answering 5012: %s", exc)
            return sip_app.MultimediaAuthAnswer(base.RESULT_UNABLE_TO_COMPLY, error_message="user database unavailable")

    def server_assignment(self, req: sip_app.ServerAssignmentRequest) -> sip_app.ServerAssignmentAnswer:
        try:
            return self._server_assignment(req)
        except StoreUnavailable as exc:
            log.error("store failed, answering 5012: %s", exc)
            return sip_app.ServerAssignmentAnswer(
                base.RESULT_UNABLE_TO_COMPLY, error_message="user database unavailable"
            )

    def _multimedia_auth(self, req: sip_app.MultimediaAuthRequest) -> sip_app.MultimediaAuthAnswer:
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
        v = check_digest(self._store, self._nonces, realm, cred.username, cred.params(), cred.method or req.sip_method)
        if v.check is DigestCheck.AUTHENTICATED:
            return sip_app.MultimediaAuthAnswer(
                base.RESULT_SUCCESS if registrar else sip_app.RESULT_SUCCESS_SERVER_NAME_NOT_STORED
            )
        if v.check is DigestCheck.UNKNOWN_USER:
            return sip_app.MultimediaAuthAnswer(sip_app.RESULT_ERROR_USER_UNKNOWN, error_message=v.reason)
        if v.check is DigestCheck.WRONG:
            return self._challenge(realm, base.RESULT_AUTHENTICATION_REJECTED, error=v.reason)
        return self._challenge(realm, challenge_code, stale=v.check is DigestCheck.STALE)

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


def _digest_realm(req: sip_app.MultimediaAuthRequest) -> str:
    """The digest realm a MAR is about; never Destination-Realm, which is the Diameter
    routing realm (one AAA realm serves many SIP domains, and relays route on it).

    With credentials, the realm the UA answered in (the nonce is bound to it, so a
    forged one fails the check). Without, the realm of an NAI User-Name (user@realm:
    how our plugin passes the realm its script chose), else the SIP-AOR's domain.
    """
    if req.credentials is not None:
        return req.credentials.realm
    if req.user_name and "@" in req.user_name:
        return req.user_name.rpartition("@")[2]
    try:
        return parse_uri(req.sip_aor).host
    except UriError:
        return ""
