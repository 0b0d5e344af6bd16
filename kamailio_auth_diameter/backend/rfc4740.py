"""RFC 4740 mode (Flow A): the Diameter server makes the nonces and checks responses.

A MAR (wire/sip_app.py) asks about each request and the MAA's verdict becomes the
outcome; group checks are a SAR NO_ASSIGNMENT for the user's "groups" SIP-User-Data
(our convention, see wire/sip_app.py). What a request means in RFC 4740 terms (which
AOR, which User-Name) and what an answer means for SIP live here, not in wire/.
"""

from __future__ import annotations

from .. import authorize, group, outcome
from ..authorize import AuthContext, Result
from ..group import GroupContext
from ..outcome import Outcome
from ..settings import Settings
from ..sip.uri import SipUri
from ..wire import base, sip_app
from .contract import Environment
from .peer import PeerClient

# RFC 4740 names no code for a bad response; the base protocol's 4001 and 5003 and the
# application's "who is that" codes all mean the user is refused, not that we failed.
REFUSED_RESULTS = frozenset(
    {
        base.RESULT_AUTHENTICATION_REJECTED,
        5003,
        sip_app.RESULT_ERROR_USER_UNKNOWN,
        sip_app.RESULT_ERROR_IDENTITIES_DONT_MATCH,
    }
)
_REQUIRED_DIGEST = ("username", "realm", "nonce", "uri", "response")  # SIP-Authorization's {AVPs}


class IncompleteCredentials(ValueError):
    """Credentials that lack what SIP-Authorization requires: the UA's fault, 400."""


def aor(uri: SipUri) -> str | None:
    """The URI as an address of record (no port, no parameters); None without a host."""
    if not uri.host:
        return None
    return f"sip:{uri.user}@{uri.host}" if uri.user else f"sip:{uri.host}"


def mar_for(
    ctx: AuthContext, realm: str, session_id: str, origin: base.Identity, destination_realm: str
) -> sip_app.MultimediaAuthRequest | None:
    """The MAR asking about one SIP request (RFC 4740 §8.7), or None if it cannot be built.

    SIP-AOR is the To URI for REGISTER and the Request-URI otherwise (§8.7). The
    realm the script passed travels as the domain of User-Name while there are no
    credentials (an NAI, user@realm: RFC 4740 has no other place for it and the
    server needs it to challenge); with credentials User-Name is the digest username,
    as §9.14 requires. SIP-Server-URI is never sent: we are not a registrar (§8.7).
    IncompleteCredentials if the credentials lack a parameter SIP-Authorization needs.
    """
    sip_aor = aor(ctx.identity if ctx.method == "REGISTER" else ctx.ruri)
    if sip_aor is None or not realm:
        return None
    cred = ctx.credentials
    credentials = None
    if cred is not None:
        p = cred.params
        missing = [name for name in _REQUIRED_DIGEST if not p.get(name)]
        if missing:
            raise IncompleteCredentials(f"credentials without {', '.join(missing)}")
        credentials = sip_app.DigestResponse(
            username=p["username"],
            realm=p["realm"],
            nonce=p["nonce"],
            uri=p["uri"],
            response=p["response"],
            algorithm=p.get("algorithm"),
            cnonce=p.get("cnonce"),
            qop=p.get("qop"),
            nonce_count=p.get("nc"),
            method=ctx.method,
            opaque=p.get("opaque"),
        )
    user = cred.username if cred is not None else f"{ctx.identity.user}@{realm}" if ctx.identity.user else None
    return sip_app.MultimediaAuthRequest(
        session_id=session_id,
        origin_host=origin.origin_host,
        origin_realm=origin.origin_realm,
        destination_realm=destination_realm,
        sip_aor=sip_aor,
        sip_method=ctx.method,
        user_name=user,
        credentials=credentials,
    )


def verdict(answer: sip_app.MultimediaAuthAnswer) -> Result:
    """RFC 4740 §10 as a verdict: a challenge (1001, 2008, or any success carrying
    SIP-Authenticate), authorized (2001/2006 without one), refused, or our failure."""
    code = answer.result_code
    if code == base.RESULT_MULTI_ROUND_AUTH or (2000 <= code < 3000 and answer.challenge is not None):
        return Result.CHALLENGE if answer.challenge is not None else Result.SERVER_ERROR
    if code in (base.RESULT_SUCCESS, sip_app.RESULT_SUCCESS_SERVER_NAME_NOT_STORED):
        return Result.AUTHORIZED
    if code in REFUSED_RESULTS:
        return Result.NOT_AUTHORIZED
    return Result.SERVER_ERROR


def challenge_value(c: sip_app.DigestChallenge) -> bytes | None:
    """The WWW-/Proxy-Authenticate value for a challenge, quotes put back (§9.5);
    None if a value would break out of its quotes or the header."""
    params = [("realm", c.realm, True), ("nonce", c.nonce, True)]
    if c.opaque is not None:
        params.append(("opaque", c.opaque, True))
    if c.domain is not None:
        params.append(("domain", c.domain, True))
    if c.stale:
        params.append(("stale", "true", False))
    if c.algorithm is not None:
        params.append(("algorithm", c.algorithm, False))
    if c.qop is not None:
        params.append(("qop", c.qop, True))
    parts = []
    for name, value, quoted in params:
        if not value or outcome.UNSAFE_IN_QUOTES & set(value) or (not quoted and (" " in value or "," in value)):
            return None
        parts.append(f'{name}="{value}"' if quoted else f"{name}={value}")
    return ("Digest " + ", ".join(parts)).encode()


class Rfc4740Backend:
    def __init__(self, env: Environment) -> None:
        self._env = env
        self.peer = PeerClient(env, (sip_app.APP_SIP,))

    def configure(self, settings: Settings, deadline: float) -> None:
        self.peer.configure(settings, deadline)

    def close(self, deadline: float | None) -> None:
        self.peer.close(deadline)

    def challenge(self, realm: str, proxy: bool) -> None:
        return None  # the server makes the challenges

    def authorize(self, ctx: AuthContext, proxy: bool, msgid: int, start: float) -> Outcome:
        log, peer = self._env.log, self.peer
        try:
            mar = mar_for(ctx, ctx.realm, peer.sessions(), peer.origin, peer.destination_realm)
        except IncompleteCredentials as exc:
            log(f"authorize: {exc}")
            return outcome.BAD_REQUEST
        if mar is None:
            log("authorize: cannot build the MAR: the URI has no host or there is no realm")
            return outcome.SERVER_ERROR

        def build(hop: int, e2e: int, retransmit: bool) -> bytes:
            return sip_app.encode_mar(mar, hop, e2e, retransmit)

        answer = peer.ask(build, start, sip_app.decode_maa, "authorize: unusable MAA")
        if answer is None:
            return outcome.SERVER_ERROR
        if answer.ha1s:
            # Flow B to a proxy in Flow A: its challenges are made for a verifier that
            # offers what the HA1s allow (SHA-256 first), which the server's own check
            # may not take; and HA1s should not travel to a proxy that does not use them.
            log(
                "authorize: the server handed over HA1s (RFC 4740 Flow B) to this rfc4740 (Flow A) proxy: "
                "set protocol rfc4740-ha1, or take this proxy out of the server's --ha1-peer"
            )
            return outcome.SERVER_ERROR
        result = verdict(answer)
        if result is Result.SERVER_ERROR:
            log(f"authorize: server answered Result-Code {answer.result_code}")
        value = None
        if result is Result.CHALLENGE and answer.challenge is not None:
            value = challenge_value(answer.challenge)
            if value is None:
                log("authorize: refused a challenge whose values would break the header")
        return authorize.result_outcome(result, value, proxy, ctx.credentials is not None)

    def is_user_in(self, ctx: GroupContext, group_name: str, msgid: int, start: float) -> int:
        """SAR NO_ASSIGNMENT for the user's "groups" SIP-User-Data (see wire/sip_app.py)."""
        peer = self.peer
        sar = sip_app.ServerAssignmentRequest(
            session_id=peer.sessions(),
            origin_host=peer.origin.origin_host,
            origin_realm=peer.origin.origin_realm,
            destination_realm=peer.destination_realm,
            assignment_type=sip_app.ASSIGNMENT_NO_ASSIGNMENT,
            user_name=ctx.user_name.decode("utf-8", "replace"),
            supported_user_data_types=(sip_app.GROUPS_USER_DATA_TYPE,),
        )

        def build(hop: int, e2e: int, retransmit: bool) -> bytes:
            return sip_app.encode_sar(sar, hop, e2e, retransmit)

        answer = peer.ask(build, start, sip_app.decode_saa, "diameter_is_user_in: unusable SAA")
        if answer is None:
            return group.ERROR
        if answer.result_code not in (base.RESULT_SUCCESS, sip_app.RESULT_SUCCESS_SERVER_NAME_NOT_STORED):
            if answer.result_code != sip_app.RESULT_ERROR_USER_UNKNOWN:
                self._env.log(f"diameter_is_user_in: server answered Result-Code {answer.result_code}")
            return group.ERROR
        groups = sip_app.groups_of(answer.user_data)
        if groups is None:
            self._env.log("diameter_is_user_in: SAA without a 'groups' SIP-User-Data")
            return group.ERROR
        return group.USER_IN if group_name in groups else group.ERROR
