"""KSR -> the plain values the pure core works on, read once per call."""

from __future__ import annotations

from typing import Any

from ..authorize import SipRequest

_HEADER = {False: "Authorization", True: "Proxy-Authorization"}
_COUNT = {proxy: f"$hdrc({name})" for proxy, name in _HEADER.items()}
MAX_CREDENTIAL_HEADERS = 16  # more is hostile; Kamailio would parse them all, we stop here


def read_auth_request(ksr: Any, method: str, proxy: bool) -> tuple[SipRequest, int]:
    """The SipRequest of an authorize call and Kamailio's message id ($mi)."""
    pv = ksr.pv
    name = _HEADER[proxy]
    count = min(int(pv.get(_COUNT[proxy]) or 0), MAX_CREDENTIAL_HEADERS)
    get_idx = ksr.hdr.get_idx
    bodies = tuple(b for b in (get_idx(name, i) for i in range(count)) if b is not None)
    req = SipRequest(
        method=method,
        ruri=pv.get("$ru"),
        from_uri=pv.get("$fu"),
        to_uri=pv.get("$tu"),
        credentials=bodies,
    )
    return req, int(pv.get("$mi"))
