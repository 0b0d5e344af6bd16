"""nonce: HMAC-signed, expiring, realm-bound nonces."""

from __future__ import annotations

import hmac
import re

import pytest
from conftest import Clock

from kamailio_auth_diameter.nonce import NONCE_LEN, NonceFactory, NonceState

SECRET = b"0123456789abcdef0123456789abcdef"


@pytest.fixture
def factory(clock: Clock) -> NonceFactory:
    return NonceFactory(SECRET, lifetime=300, clock=clock)


def test_layout_is_48_lower_hex(factory: NonceFactory) -> None:
    n = factory.make("example.com")
    assert len(n) == NONCE_LEN == 48
    assert re.fullmatch(r"[0-9a-f]{48}", n)


def test_expiry_is_now_plus_lifetime(factory: NonceFactory, clock: Clock) -> None:
    assert int(factory.make("example.com")[:8], 16) == int(clock.now) + 300


def test_nonces_are_salted(factory: NonceFactory) -> None:
    assert factory.make("example.com") != factory.make("example.com")


def test_valid(factory: NonceFactory) -> None:
    assert factory.check(factory.make("example.com"), "example.com") is NonceState.VALID


def test_valid_until_expiry_then_stale(factory: NonceFactory, clock: Clock) -> None:
    n = factory.make("example.com")
    clock.now += 300
    assert factory.check(n, "example.com") is NonceState.VALID
    clock.now += 1
    assert factory.check(n, "example.com") is NonceState.STALE


def test_stale_long_after(factory: NonceFactory, clock: Clock) -> None:
    n = factory.make("example.com")
    clock.now += 86400
    assert factory.check(n, "example.com") is NonceState.STALE


def test_other_realm_is_invalid(factory: NonceFactory) -> None:
    n = factory.make("example.com")
    assert factory.check(n, "example.org") is NonceState.INVALID
    assert factory.check(n, "Example.com") is NonceState.INVALID


def test_other_secret_is_invalid(factory: NonceFactory, clock: Clock) -> None:
    other = NonceFactory(b"another secret of 32 bytes......", clock=clock)
    assert other.check(factory.make("example.com"), "example.com") is NonceState.INVALID


def test_same_secret_other_instance_accepts(factory: NonceFactory, clock: Clock) -> None:
    twin = NonceFactory(SECRET, clock=clock)
    assert twin.check(factory.make("example.com"), "example.com") is NonceState.VALID


def _flip(text: str, index: int) -> str:
    c = text[index]
    return text[:index] + ("0" if c != "0" else "1") + text[index + 1 :]


@pytest.mark.parametrize("index", [0, 7, 8, 15, 16, 47])
def test_tampered_is_invalid(factory: NonceFactory, index: int) -> None:
    n = factory.make("example.com")
    assert factory.check(_flip(n, index), "example.com") is NonceState.INVALID


def test_extended_expiry_is_invalid_not_valid(factory: NonceFactory, clock: Clock) -> None:
    n = factory.make("example.com")
    clock.now += 1000
    forged = "ffffffff" + n[8:]
    assert factory.check(forged, "example.com") is NonceState.INVALID


@pytest.mark.parametrize("length", [0, 1, 40, 47, 49, 96])
def test_wrong_length_is_invalid(factory: NonceFactory, length: int) -> None:
    n = (factory.make("example.com") * 2)[:length]
    assert factory.check(n, "example.com") is NonceState.INVALID


@pytest.mark.parametrize(
    "head",
    ["zzzzzzzz", "-0000001", " 1234567", "0x123456", "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668", "\0" * 8],
)
def test_non_hex_expiry_is_invalid(factory: NonceFactory, head: str) -> None:
    n = factory.make("example.com")
    assert factory.check(head + n[8:], "example.com") is NonceState.INVALID


def test_non_ascii_and_surrogates_do_not_raise(factory: NonceFactory) -> None:
    assert factory.check("\u00e9" * 48, "example.com") is NonceState.INVALID
    assert factory.check("\udc80" * 48, "example.com") is NonceState.INVALID
    n = factory.make("example.com")
    assert factory.check(n[:16] + "\udc80" * 32, "example.com") is NonceState.INVALID


def test_upper_case_mac_is_invalid(factory: NonceFactory) -> None:
    n = factory.make("example.com")
    if n[16:] == n[16:].upper():  # pragma: no cover - all-digit MAC, vanishingly rare
        pytest.skip("MAC has no letters")
    assert factory.check(n[:16] + n[16:].upper(), "example.com") is NonceState.INVALID


@pytest.mark.parametrize("secret", [b"", b"short", b"x" * 15])
def test_short_secret_rejected(secret: bytes) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        NonceFactory(secret)


def test_sixteen_byte_secret_accepted() -> None:
    NonceFactory(b"x" * 16)


@pytest.mark.parametrize("lifetime", [0, -1])
def test_non_positive_lifetime_rejected(lifetime: int) -> None:
    with pytest.raises(ValueError):
        NonceFactory(SECRET, lifetime=lifetime)


@pytest.mark.parametrize("secret", [b"k" * 16, b"k" * 64, b"k" * 65, bytes(range(200))])
def test_the_mac_is_hmac_sha256_of_expiry_salt_and_realm(secret: bytes) -> None:
    """The precomputed pads must give exactly RFC 2104's HMAC, for keys of every length."""
    nonce = NonceFactory(secret, 300).make("example.com", "0badc0de")
    head = nonce[:16]
    assert head[8:] == "0badc0de"
    assert nonce[16:] == hmac.digest(secret, f"{head}|example.com".encode(), "sha256")[:16].hex()
