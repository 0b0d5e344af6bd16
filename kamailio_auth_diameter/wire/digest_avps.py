"""The RFC 5090 Digest-* AVPs that RFC 4740 and 3GPP Cx both carry, and the H(A1) they deliver.

RFC 4740's Flow B (§6.3: Digest-HA1 inside SIP-Authenticate) and Cx "SIP Digest"
(TS 29.229: SIP-Digest-Authenticate) both hand the SIP server a user's H(A1), so that
it makes its own nonces and checks responses itself. Both codecs turn what they read
into :class:`DigestHa1` through :func:`digest_ha1`, which is where an HA1 from the
network is judged: one set of rules for every source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .base import DecodeError

AVP_DIGEST_RESPONSE = 103
AVP_DIGEST_REALM = 104
AVP_DIGEST_NONCE = 105
AVP_DIGEST_METHOD = 108
AVP_DIGEST_URI = 109
AVP_DIGEST_QOP = 110
AVP_DIGEST_ALGORITHM = 111
AVP_DIGEST_CNONCE = 113
AVP_DIGEST_NONCE_COUNT = 114
AVP_DIGEST_USERNAME = 115
AVP_DIGEST_OPAQUE = 116
AVP_DIGEST_DOMAIN = 119
AVP_DIGEST_STALE = 120
AVP_DIGEST_HA1 = 121
AVP_SIP_AOR = 122

MD5 = "MD5"
SHA_256 = "SHA-256"
DEFAULT_QOP = "auth"  # what a Digest-QoP left out means here (FHoSS leaves it out of Cx answers)
# The algorithms whose H(A1) a SIP server can use directly, and the hex length of their hash.
# The -sess variants are not among them: their H(A1) depends on the cnonce (RFC 4740 §11).
HEX_LENGTHS = {MD5: 32, SHA_256: 64}
_HEX = re.compile(r"[0-9A-Fa-f]+")


@dataclass(slots=True)  # not frozen: built per exchange, and frozen triples the cost (bench/README.md)
class DigestHa1:
    """One H(A1) of a user, with what a challenge built on it must say."""

    algorithm: str  # "MD5" or "SHA-256", exactly
    ha1: str  # lower-case hex: 32 digits for MD5, 64 for SHA-256
    realm: str
    qop: str  # "auth" when the server did not say


def digest_ha1(algorithm: str | None, ha1: str, realm: str, qop: str | None) -> DigestHa1 | None:
    """What an answer's Digest-Algorithm, Digest-HA1, Digest-Realm and Digest-QoP say.

    No Digest-Algorithm means MD5 (RFC 7616 §3.3); its case is not significant. An
    algorithm we cannot use (SHA-512-256, a -sess variant) gives None: the answer may
    well hold another H(A1) we can use. An H(A1) that is not hex of its algorithm's
    length is DecodeError: a server that sends one cannot be relied on for the rest.
    """
    name = (algorithm or MD5).upper()
    length = HEX_LENGTHS.get(name)
    if length is None:
        return None
    if len(ha1) != length or not _HEX.fullmatch(ha1):
        raise DecodeError(f"Digest-HA1 for {name} is not {length} hex digits")
    return DigestHa1(name, ha1.lower(), realm, qop if qop is not None else DEFAULT_QOP)
