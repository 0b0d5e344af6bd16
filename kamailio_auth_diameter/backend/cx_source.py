"""3GPP Cx "SIP Digest" (TS 29.228 §6.3, TS 29.229) as a source of HA1s.

MAR with User-Name (IMPI = the digest username), Public-Identity (IMPU),
SIP-Auth-Data-Item{"SIP Digest"} and Server-Name; the HSS answers with
SIP-Digest-Authenticate{Digest-HA1, ...}. Experimental-Result 5001/5002 mean the user
is unknown or not this identity (403); 5006, the HSS does not do SIP Digest for the
user (a server error, logged). Cx has no group membership, so ``diameter_is_user_in``
fails in this mode with a log line that says so.
"""

from __future__ import annotations

from .. import group
from ..authorize import AuthContext
from ..group import GroupContext
from ..settings import Settings
from ..wire import base, cx
from .contract import Environment
from .ha1_source import FAILED, UNKNOWN, Fetched, first_ha1s
from .peer import PeerClient
from .rfc4740 import aor


class CxSource:
    def __init__(self, env: Environment) -> None:
        self._env = env
        self._peer = PeerClient(env, (), (cx.APPLICATION,))
        self._server_name = ""

    def configure(self, settings: Settings, deadline: float) -> None:
        self._peer.configure(settings, deadline)
        self._server_name = settings.server_name or f"sip:{self._peer.base_host}"

    def close(self, deadline: float | None) -> None:
        self._peer.close(deadline)

    def is_user_in(self, ctx: GroupContext, group_name: str, start: float) -> int:
        self._env.log("diameter_is_user_in: the cx mode has no group membership (Cx has no message for it)")
        return group.ERROR

    def fetch(self, ctx: AuthContext, username: str, start: float) -> Fetched:
        peer, log = self._peer, self._env.log
        impu = aor(ctx.identity)
        if impu is None:
            log("authorize: cannot build the MAR: the user's URI has no host")
            return FAILED
        mar = cx.MultimediaAuthRequest(
            session_id=peer.sessions(),
            origin_host=peer.origin.origin_host,
            origin_realm=peer.origin.origin_realm,
            destination_realm=peer.destination_realm,
            user_name=username,
            public_identity=impu,
            server_name=self._server_name,
        )

        def build(hop: int, e2e: int, retransmit: bool) -> bytes:
            return cx.encode_mar(mar, hop, e2e, retransmit)

        answer = peer.ask(build, start, cx.decode_maa, "authorize: unusable Cx MAA")
        if answer is None:
            return FAILED
        if answer.experimental_result in (cx.USER_UNKNOWN, cx.IDENTITIES_DONT_MATCH):
            return UNKNOWN
        if answer.result_code == base.RESULT_SUCCESS:
            ha1s = first_ha1s(answer.ha1s, ctx.realm)
            if ha1s:
                return Fetched(ha1s)
            log("authorize: Cx MAA 2001 without a usable SIP-Digest-Authenticate")
            return FAILED
        code = answer.experimental_result or answer.result_code
        log(f"authorize: the HSS answered {code}" + (f": {answer.error_message}" if answer.error_message else ""))
        return FAILED
