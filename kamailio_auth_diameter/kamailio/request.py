"""KSR -> the plain values the pure core works on, read once per call, and only those needed."""

from __future__ import annotations

from typing import Any

from ..authorize import SipRequest

_HEADER = {False: "Authorization", True: "Proxy-Authorization"}
_COUNT = {proxy: f"$hdrc({name})" for proxy, name in _HEADER.items()}
MAX_CREDENTIAL_HEADERS = 16  # more is hostile; Kamailio would parse them all, we stop here


def credentials_count(ksr: Any, proxy: bool) -> int:
    """How many Authorization (www) or Proxy-Authorization headers the request has: read
    first, as a mode that challenges without the server needs nothing else when it is 0."""
    return ksr.pv.get(_COUNT[proxy]) or 0


def read_auth_request(ksr: Any, method: str, proxy: bool, realm: str, count: int) -> tuple[SipRequest, int]:
    """The SipRequest of an authorize call and Kamailio's message id ($mi); ``count``:
    what credentials_count said.

    From and To are read only when authorize.plan will look at them: To for REGISTER
    (the identity, and the www realm), From otherwise or for a proxy realm on REGISTER.
    """
    pv = ksr.pv
    register = method == "REGISTER"
    bodies: tuple[str, ...] = ()
    if count == 1:  # nearly always: one header, read without building a generator
        body = ksr.hdr.get_idx(_HEADER[proxy], 0)
        bodies = (body,) if body is not None else ()
    elif count:
        name, get_idx = _HEADER[proxy], ksr.hdr.get_idx
        bodies = tuple(
            b for b in (get_idx(name, i) for i in range(min(count, MAX_CREDENTIAL_HEADERS))) if b is not None
        )
    req = SipRequest(
        method=method,
        ruri=pv.get("$ru"),
        from_uri=pv.get("$fu") if not register or (proxy and not realm) else None,
        to_uri=pv.get("$tu") if register else None,
        credentials=bodies,
    )
    return req, int(pv.get("$mi"))
