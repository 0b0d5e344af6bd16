"""HTTP/SIP digest maths (RFC 2617, RFC 7616), pure and shared by every wire format.

The server verifies responses with it today; the plugin will verify them locally
from a Digest-HA1 later. Keeping one implementation means one set of test vectors.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

# Algorithm token (upper-cased) -> hashlib name. The "-sess" variants share the
# hash of their base algorithm.
_HASHES = {
    "MD5": "md5",
    "SHA-256": "sha256",
    "SHA-512-256": "sha512_256",
}
# hashlib's named constructors cost half of hashlib.new(name) a call; a verifying proxy
# hashes three times a request.
_CONSTRUCTORS = {"md5": hashlib.md5, "sha256": hashlib.sha256}


class UnsupportedAlgorithm(ValueError):
    """The credentials name an algorithm we cannot compute."""


# upper-case token -> (hashlib name, is a -sess variant), every token we compute
_TOKENS = {name + sess: (hash_name, bool(sess)) for name, hash_name in _HASHES.items() for sess in ("", "-SESS")}


def _split_algorithm(algorithm: str) -> tuple[str, bool]:
    found = _TOKENS.get((algorithm or "MD5").upper())
    if found is None:
        raise UnsupportedAlgorithm(f"unsupported digest algorithm {algorithm!r}")
    return found


def _h(hash_name: str, data: str) -> str:
    make = _CONSTRUCTORS.get(hash_name)
    raw = data.encode("utf-8")
    return (make(raw) if make is not None else hashlib.new(hash_name, raw)).hexdigest()


def ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """H(username:realm:password): what a store keeps instead of the password."""
    hash_name, _ = _split_algorithm(algorithm)
    return _h(hash_name, f"{username}:{realm}:{password}")


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
    hash_name, sess = _split_algorithm(d.algorithm)
    a1 = stored_ha1
    if sess:
        a1 = _h(hash_name, f"{stored_ha1}:{d.nonce}:{d.cnonce}")
    qop = d.qop.lower()
    if qop == "auth-int":
        body_hash = hashlib.new(hash_name, d.body).hexdigest()
        ha2 = _h(hash_name, f"{d.method}:{d.uri}:{body_hash}")
    else:
        ha2 = _h(hash_name, f"{d.method}:{d.uri}")
    if qop in ("auth", "auth-int"):
        return _h(hash_name, f"{a1}:{d.nonce}:{d.nc}:{d.cnonce}:{qop}:{ha2}")
    return _h(hash_name, f"{a1}:{d.nonce}:{ha2}")


def check(stored_ha1: str, d: DigestInput, given: str) -> bool:
    """Constant-time comparison of a UA's response with the expected one."""
    try:
        expected = response(stored_ha1, d)
    except UnsupportedAlgorithm:
        return False
    return hmac.compare_digest(expected.encode(), given.lower().encode("utf-8", "replace"))
