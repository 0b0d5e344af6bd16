"""The server's verdicts on legacy requests, as DISC's sipauth module gave them (§9).

No sockets here: a decoded request goes in, a Result-Code and an optional challenge
come out. Service '6': no credentials, a foreign or tampered nonce, or a wrong
response -> 4001 with a fresh challenge; an expired nonce -> 4001 with stale=true;
an unknown user -> 5003; a correct response -> 2001. Service '8': 2001 or 4001.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from .. import digest
from ..nonce import NonceFactory, NonceState
from ..sip.credentials import CredentialsError, parse_credentials
from ..wire import legacy
from .store import UserHashes

_SAFE_REALM = re.compile(r"[A-Za-z0-9.\-_:\[\]]+")


class Store(Protocol):
    def user_hashes(self, username: str, realm: str) -> UserHashes | None: ...

    def in_group(self, name: str, group: str) -> bool: ...


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
        if service == legacy.SERVICE_AUTH:
            return self._authenticate(request)
        if service == legacy.SERVICE_GROUP:
            return self._group(request)
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
        p = cred.params
        state = self._nonces.check(p.get("nonce", ""), realm)
        if state is NonceState.INVALID:
            return self._challenge(realm, "nonce not ours")
        if state is NonceState.STALE:
            return self._challenge(realm, "nonce expired", stale=True)
        username = cred.username
        user, at, domain = username.partition("@")
        hashes = self._store.user_hashes(user, cred.realm) if (not at or domain == cred.realm) else None
        if hashes is None:
            return Verdict(legacy.RESULT_AUTHORIZATION_REJECTED, reason=f"unknown user {username!r}@{cred.realm!r}")
        method = (request.first(legacy.AVP_METHOD) or b"").decode("utf-8", "replace")
        qop = p.get("qop", "")
        if qop and qop.lower() != "auth":
            return self._challenge(realm, f"qop {qop!r} not offered")
        d = digest.DigestInput(
            method=method,
            uri=p.get("uri", ""),
            nonce=p["nonce"],
            algorithm=p.get("algorithm", "MD5"),
            qop=qop,
            nc=p.get("nc", ""),
            cnonce=p.get("cnonce", ""),
        )
        if digest.check(hashes.ha1b if at else hashes.ha1, d, p.get("response", "")):
            return Verdict(legacy.RESULT_SUCCESS, reason=f"authenticated {username!r}")
        return self._challenge(realm, f"wrong response for {username!r}")

    def _group(self, request: legacy.Message) -> Verdict:
        name = (request.first(legacy.AVP_USER_NAME) or b"").rstrip(b"\0").decode("utf-8", "replace")
        group = (request.first(legacy.AVP_USER_GROUP) or b"").decode("utf-8", "replace")
        if self._store.in_group(name, group):
            return Verdict(legacy.RESULT_SUCCESS, reason=f"{name!r} in {group!r}")
        return Verdict(legacy.RESULT_AUTHENTICATION_REJECTED, reason=f"{name!r} not in {group!r}")
