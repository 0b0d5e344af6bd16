"""HTTP/SIP digest maths (RFC 2617, RFC 7616), pure and shared by every wire format.

The server verifies responses with it today; the plugin will verify them locally
from a Digest-HA1 later. Keeping one implementation means one set of test vectors.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Algorithm token (upper-cased) -> hashlib name. The "-sess" variants share the
# hash of their base algorithm.
_HASHES = {
    "MD5": "md5",
    "SHA-256": "sha256",
    "SHA-512-256": "sha512_256",
}
# hashlib's named constructors cost half of hashlib.new(name) a call; a verifying proxy
# hashes three times a request.
_CONSTRUCTORS: dict[str, Callable[[bytes], Any]] = {"md5": hashlib.md5, "sha256": hashlib.sha256}


class UnsupportedAlgorithm(ValueError):
    """The credentials name an algorithm we cannot compute."""


def _constructor(hash_name: str) -> Callable[[bytes], Any]:
    return _CONSTRUCTORS.get(hash_name) or functools.partial(hashlib.new, hash_name)


# upper-case token -> (hash constructor, is a -sess variant), for every token we compute
_TOKENS = {
    name + sess: (_constructor(hash_name), bool(sess)) for name, hash_name in _HASHES.items() for sess in ("", "-SESS")
}


def _split_algorithm(algorithm: str) -> tuple[Callable[[bytes], Any], bool]:
    found = _TOKENS.get((algorithm or "MD5").upper())
    if found is None:
        raise UnsupportedAlgorithm(f"unsupported digest algorithm {algorithm!r}")
    return found


def ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """H(username:realm:password): what a store keeps instead of the password."""
    h, _ = _split_algorithm(algorithm)
    return h(f"{username}:{realm}:{password}".encode()).hexdigest()


@dataclass(slots=True)  # not frozen: built per request, and frozen triples the cost
class DigestInput:
    """The values of one Authorization header that enter the response computation."""

    method: str
    uri: str
    nonce: str
    algorithm: str = "MD5"
    qop: str = ""
    nc: str = ""
    cnonce: str = ""
    body: bytes = b""


def response(stored_ha1: str, d: DigestInput) -> str:
    """The request-digest a UA must send, computed from a stored HA1.

    qop "auth-int" needs the message body; the legacy wire format never carries it,
    so callers that cannot supply it should not offer auth-int.
    """
    h, sess = _split_algorithm(d.algorithm)
    a1 = stored_ha1
    if sess:
        a1 = h(f"{stored_ha1}:{d.nonce}:{d.cnonce}".encode()).hexdigest()
    qop = d.qop.lower()
    if qop == "auth-int":
        ha2 = h(f"{d.method}:{d.uri}:{h(d.body).hexdigest()}".encode()).hexdigest()
    else:
        ha2 = h(f"{d.method}:{d.uri}".encode()).hexdigest()
    if qop in ("auth", "auth-int"):
        return h(f"{a1}:{d.nonce}:{d.nc}:{d.cnonce}:{qop}:{ha2}".encode()).hexdigest()
    return h(f"{a1}:{d.nonce}:{ha2}".encode()).hexdigest()


def check_auth(
    stored_ha1: str, algorithm: str, method: str, uri: str, nonce: str, nc: str, cnonce: str, given: str
) -> bool:
    """:func:`check` for qop=auth, given the values themselves: the verifying proxy
    checks every request this way, and a DigestInput for each and the general case's
    branches cost a tenth of the check. ``algorithm``: an upper-case token."""
    found = _TOKENS.get(algorithm)
    if found is None or found[1]:  # unknown, or a -sess variant: the general case
        return check(stored_ha1, DigestInput(method, uri, nonce, algorithm, "auth", nc, cnonce), given)
    h = found[0]
    ha2 = h(f"{method}:{uri}".encode()).hexdigest()
    expected = h(f"{stored_ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}".encode()).hexdigest()
    return hmac.compare_digest(expected.encode(), given.lower().encode("utf-8", "replace"))


def check(stored_ha1: str, d: DigestInput, given: str) -> bool:
    """Constant-time comparison of a UA's response with the expected one."""
    try:
        expected = response(stored_ha1, d)
    except UnsupportedAlgorithm:
        return False
    return hmac.compare_digest(expected.encode(), given.lower().encode("utf-8", "replace"))
