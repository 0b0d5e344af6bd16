"""Where the verify-in-proxy modes get a user's HA1s, and RFC 4740's way.

* RFC 4740 "Flow B" (§6.3, §9.5): an MAR without credentials, User-Name the digest
  username, SIP-AOR the user's own address; the server answers with SIP-Authenticate
  carrying Digest-HA1, one SIP-Auth-Data-Item per algorithm. The server's nonce in it
  is not used: H(A1) does not depend on the nonce, and our own nonces let every
  worker and host check each other's without asking (see verify.py).
* 3GPP Cx "SIP Digest": see cx_source.py.

Group checks: RFC 4740's SAR, as in rfc4740 mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..authorize import AuthContext
from ..group import GroupContext
from ..settings import Settings
from ..wire import sip_app
from ..wire.digest_avps import DigestHa1
from .contract import Environment
from .rfc4740 import REFUSED_RESULTS, Rfc4740Backend, aor


@dataclass(slots=True)  # not frozen: built per exchange, and frozen triples the cost (bench/README.md)
class Fetched:
    """HA1s by algorithm ("MD5", "SHA-256"); none with ``unknown``: the server does not
    know the user (403); none without it: we could not tell (logged; 500)."""

    ha1s: dict[str, str] = field(default_factory=dict)
    unknown: bool = False


FAILED = Fetched()
UNKNOWN = Fetched(unknown=True)


class Ha1Source(Protocol):
    def configure(self, settings: Settings, deadline: float) -> None: ...

    def close(self, deadline: float | None) -> None: ...

    def fetch(self, ctx: AuthContext, username: str, start: float) -> Fetched: ...

    def is_user_in(self, ctx: GroupContext, group_name: str, start: float) -> int: ...


def first_ha1s(items: tuple[DigestHa1, ...], realm: str) -> dict[str, str]:
    """The first HA1 of each algorithm given for ``realm`` (a server may answer for others)."""
    out: dict[str, str] = {}
    for item in items:
        if (not item.realm or item.realm.lower() == realm.lower()) and item.algorithm not in out:
            out[item.algorithm] = item.ha1
    return out


class Rfc4740Ha1Source:
    def __init__(self, env: Environment) -> None:
        self._env = env
        self._groups = Rfc4740Backend(env)  # group checks: the SAR, as in rfc4740 mode
        self._peer = self._groups.peer  # the HA1 MARs go over the same connections

    def configure(self, settings: Settings, deadline: float) -> None:
        self._groups.configure(settings, deadline)

    def close(self, deadline: float | None) -> None:
        self._groups.close(deadline)

    def is_user_in(self, ctx: GroupContext, group_name: str, start: float) -> int:
        return self._groups.is_user_in(ctx, group_name, 0, start)

    def fetch(self, ctx: AuthContext, username: str, start: float) -> Fetched:
        peer, log = self._peer, self._env.log
        own = aor(ctx.identity)
        if own is None:
            log("authorize: cannot build the MAR: the user's URI has no host")
            return FAILED
        mar = sip_app.MultimediaAuthRequest(
            session_id=peer.sessions(),
            origin_host=peer.origin.origin_host,
            origin_realm=peer.origin.origin_realm,
            destination_realm=peer.destination_realm,
            sip_aor=own,
            sip_method=ctx.method,
            user_name=username,
        )

        def build(hop: int, e2e: int, retransmit: bool) -> bytes:
            return sip_app.encode_mar(mar, hop, e2e, retransmit)

        answer = peer.ask(build, start, sip_app.decode_maa, "authorize: unusable MAA")
        if answer is None:
            return FAILED
        if answer.result_code in REFUSED_RESULTS:
            return UNKNOWN
        ha1s = first_ha1s(answer.ha1s, ctx.realm)
        if ha1s:
            return Fetched(ha1s)
        if answer.challenge is not None:
            log("authorize: the server challenged instead of giving Digest-HA1 (Flow A): it must trust this proxy")
        else:
            log(f"authorize: server answered Result-Code {answer.result_code} without Digest-HA1")
        return FAILED
