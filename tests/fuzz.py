"""Fuzzing of the reference server's sessions and of the plugin's answer path.

Every target takes bytes an attacker controls and has a contract: the server's
sessions answer or close and never raise; the plugin's decoders raise only their
own errors (the caller then closes the connection or fails the request with 500);
the plugin's verdict on a decoded answer never raises and never puts a control
character into a WWW-/Proxy-Authenticate header. Anything else escaping is a
failure, reported with the seed and case number that replay it::

    .venv/bin/python -m tests.fuzz --inputs 1000000 [--seed N] [--target NAME]
    .venv/bin/python -m tests.fuzz --target maa --seed 1 --case 4711   # one input, with its traceback

Inputs are valid messages of each target's kind, then changed by one generator:
``mutate`` (byte flips, truncation, extension, splices, lying header and AVP
lengths), ``nest`` (a chain of Grouped AVPs up to 8,000 deep at the top level or
inside any group a reader opens), ``oversize`` (frames at and over 64 KiB, AVP and
header lengths at their limits up to 2^24 - 1, thousands of tiny AVPs, one huge
group) and ``structure`` (repeated AVPs, vendor flag set or cleared, the M flag on
unknown codes, header flags, command and application, hostile values). The
``framer`` target feeds streams of such messages in random chunks through
wire/framing.py's Framer into the plugin's peer connection and decoders.

Case ``i`` of a target is generated from its own ``random.Random(f"{seed}/{target}/{i}")``,
so any case replays alone. The server targets share one SQLite store per run: nonce
counts and failure counters carry over between cases, which changes verdicts but
not what the parsers see.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import random
import struct
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kamailio_auth_diameter import authorize, digest
from kamailio_auth_diameter.authorize import Result
from kamailio_auth_diameter.backend import legacy as legacy_backend
from kamailio_auth_diameter.backend import rfc4740 as rfc4740_backend
from kamailio_auth_diameter.nonce import NonceFactory
from kamailio_auth_diameter.outcome import Outcome
from kamailio_auth_diameter.peer_state import PeerError, PeerProtocol, State
from kamailio_auth_diameter.server.app import LegacyServer
from kamailio_auth_diameter.server.auth import LegacyAuthority, SipAuthority
from kamailio_auth_diameter.server.diameter import DiameterResponder, PeerSession, Reply
from kamailio_auth_diameter.server.store import SqliteStore
from kamailio_auth_diameter.sip.credentials import parse_credentials
from kamailio_auth_diameter.sip.uri import parse_uri
from kamailio_auth_diameter.transport.client import _failover_result
from kamailio_auth_diameter.wire import base, cx, legacy, sip_app
from kamailio_auth_diameter.wire.base import Capabilities, Identity
from kamailio_auth_diameter.wire.digest_avps import HEX_LENGTHS, DigestHa1
from kamailio_auth_diameter.wire.framing import HEADER_LEN, MAX_MESSAGE, Framer, FramingError

SERVER = Identity("aaa.example.org", "example.org")
CLIENT = Identity("kamailio.example.org", "example.org")
REALM = "example.com"
PASSWORD = "s3cret"
HA1S = (
    DigestHa1("SHA-256", digest.ha1("alice", REALM, PASSWORD, "SHA-256"), REALM, "auth"),
    DigestHa1("MD5", digest.ha1("alice", REALM, PASSWORD), REALM, "auth"),
)

_AVP_HEAD = struct.Struct("!II")
_MESSAGE_HEAD = struct.Struct("!IIIII")
# Grouped AVPs the tree model opens (by code, or (code, vendor) for a vendor's): every
# one any reader of ours opens, and 401, which python-diameter's dictionary calls
# Grouped (NASREQ Tunneling).
GROUPED: frozenset[base.AvpKey] = sip_app.GROUPED | cx.GROUPED | {401}
UNKNOWN_CODES = (0, 9, 1000, 4095, 65535, 0x7FFFFFFF, 0xFFFFFFFF, 99999)
RESULT_CODES = (0, 1001, 2001, 2006, 2008, 3001, 3002, 3004, 3010, 4001, 5003, 5012, 5032, 5033, 0xFFFFFFFF)
DEPTHS = (1, 2, 3, base.MAX_DEPTH - 1, base.MAX_DEPTH, base.MAX_DEPTH + 1, base.MAX_DEPTH + 2, 100, 999, 1000, 1001)
HOSTILE_TEXT = (
    b"",
    b"x",
    b'"',
    b"\\",
    b"\r\n",
    b"a\r\nX-Injected: 1",
    b"\0",
    b"\x01",
    b"\x1b[31m",
    b"\x7f",
    b"\t",
    b"\xff\xfe",
    b"\xc3",
    "é".encode(),
    b"a" * 1000,
    b'Digest realm="a", nonce="b"',
    b", stale=true",
)


class ContractBroken(AssertionError):
    """A target returned, but not what its contract promises (a reply a peer cannot read,
    a frame the framer should not have handed out, a verdict of the wrong type)."""


class HeaderProblem(ContractBroken):
    """The plugin would send a header that carries a control character or is not one header."""


# --- a small model of a message, to change it and still write honest lengths --------


@dataclass
class Avp:
    code: int
    flags: int
    vendor: int
    data: bytes = b""
    members: list[Avp] | None = None  # a group the model opened; data is then unused
    packed: bytes | None = None  # AVPs already packed (thousands of them): written as they are


@dataclass
class Msg:
    flags: int
    command: int
    application: int
    hop_by_hop: int
    end_to_end: int
    avps: list[Avp]

    def pack(self) -> bytes:
        body = pack_avps(self.avps)
        head = _MESSAGE_HEAD.pack(
            1 << 24 | (HEADER_LEN + len(body)) & 0xFFFFFF,
            self.flags << 24 | self.command,
            self.application,
            self.hop_by_hop,
            self.end_to_end,
        )
        return head + body


def _key(code: int, vendor: int) -> base.AvpKey:
    return (code, vendor) if vendor else code


def parse_avps(raw: bytes, grouped: frozenset[base.AvpKey]) -> list[Avp]:
    """AVPs of a valid message (our own seeds); groups with these keys are opened."""
    out = []
    pos = 0
    while pos + 8 <= len(raw):
        code, flags_length = _AVP_HEAD.unpack_from(raw, pos)
        flags, length = flags_length >> 24, flags_length & 0xFFFFFF
        head = 12 if flags & base.AVP_FLAG_VENDOR else 8
        vendor = int.from_bytes(raw[pos + 8 : pos + 12], "big") if head == 12 else 0
        data = raw[pos + head : pos + length]
        if _key(code, vendor) in grouped:
            out.append(Avp(code, flags, vendor, members=parse_avps(data, grouped)))
        else:
            out.append(Avp(code, flags, vendor, data))
        pos += (length + 3) & ~3
    return out


def parse(raw: bytes, grouped: frozenset[base.AvpKey]) -> Msg:
    _, flags_command, application, hop, e2e = _MESSAGE_HEAD.unpack_from(raw)
    return Msg(flags_command >> 24, flags_command & 0xFFFFFF, application, hop, e2e, parse_avps(raw[20:], grouped))


def pack_avp(code: int, flags: int, data: bytes, vendor: int = 0) -> bytes:
    head = 12 if flags & base.AVP_FLAG_VENDOR else 8
    length = head + len(data)
    vendor_id = vendor.to_bytes(4, "big") if head == 12 else b""
    return _AVP_HEAD.pack(code, flags << 24 | length & 0xFFFFFF) + vendor_id + data + b"\0" * (-length & 3)


def pack_avps(avps: list[Avp]) -> bytes:
    return b"".join(
        a.packed
        if a.packed is not None
        else pack_avp(a.code, a.flags, pack_avps(a.members) if a.members is not None else a.data, a.vendor)
        for a in avps
    )


def avp_lists(msg: Msg) -> list[list[Avp]]:
    """Every list of AVPs a reader may walk: the top level and each opened group's members."""
    out = [msg.avps]
    stack = list(msg.avps)
    while stack:
        a = stack.pop()
        if a.members is not None:
            out.append(a.members)
            stack.extend(a.members)
    return out


def avp_offsets(raw: bytes, grouped: frozenset[base.AvpKey]) -> list[tuple[int, int]]:
    """(offset of an AVP header, end of the list it is in) for every AVP of a valid message."""
    out = []
    stack = [(HEADER_LEN, len(raw))]
    while stack:
        pos, end = stack.pop()
        while pos + 8 <= end:
            code, flags_length = _AVP_HEAD.unpack_from(raw, pos)
            flags, length = flags_length >> 24, flags_length & 0xFFFFFF
            out.append((pos, end))
            head = 12 if flags & base.AVP_FLAG_VENDOR else 8
            vendor = int.from_bytes(raw[pos + 8 : pos + 12], "big") if head == 12 else 0
            if _key(code, vendor) in grouped:
                stack.append((pos + head, pos + length))
            pos += (length + 3) & ~3
    return out


def nested_chain(keys: list[base.AvpKey], leaf: bytes, flags: int = base.AVP_FLAG_MANDATORY) -> bytes:
    """Grouped AVPs ``keys[0]`` ⊃ ``keys[1]`` ⊃ … ⊃ ``leaf`` (a code, or (code, vendor) for
    a vendor's AVP with its 12-byte header), built without recursion or quadratic copying,
    so that 8,000 levels cost what 8,000 headers do."""
    leaf = leaf + b"\0" * (-len(leaf) & 3)
    heads = []
    length = len(leaf)
    for key in reversed(keys):
        if isinstance(key, tuple):
            length += 12
            heads.append(struct.pack("!III", key[0], (flags | base.AVP_FLAG_VENDOR) << 24 | length, key[1]))
        else:
            length += 8
            heads.append(struct.pack("!II", key, flags << 24 | length))
    heads.reverse()
    return b"".join(heads) + leaf


def nesting_depth(raw: bytes, start: int = HEADER_LEN) -> int:
    """The deepest chain of AVPs whose payload is itself AVPs with honest lengths (any code)."""
    deepest = 0
    stack = [(start, len(raw), 0)]
    while stack:
        pos, end, depth = stack.pop()
        deepest = max(deepest, depth)
        while pos + 8 <= end:
            flags_length = _AVP_HEAD.unpack_from(raw, pos)[1]
            length = flags_length & 0xFFFFFF
            if length < 8 or pos + length > end:
                break
            if length >= 16:
                stack.append((pos + 8, pos + length, depth + 1))
            pos += (length + 3) & ~3
    return deepest


# --- generators -----------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    raw: bytes
    grouped: frozenset[int]


Generator = Callable[[random.Random, list[Seed]], bytes]


def _honest_length(raw: bytearray) -> None:
    if len(raw) >= 4:
        raw[1:4] = (len(raw) & 0xFFFFFF).to_bytes(3, "big")


def mutate(rng: random.Random, seeds: list[Seed]) -> bytes:
    """Byte-level damage to a valid message; half of the time the header's length is
    made honest again so that the damage reaches the AVP readers."""
    seed = rng.choice(seeds)
    raw = bytearray(seed.raw)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(7)
        if op == 0 and raw:  # bytes
            for _ in range(rng.randint(1, 4)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        elif op == 1 and raw:  # bits
            for _ in range(rng.randint(1, 4)):
                raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        elif op == 2:
            del raw[rng.randrange(len(raw) + 1) :]
        elif op == 3:
            raw += rng.randbytes(rng.choice((1, 2, 3, 4, 8, rng.randrange(200))))
        elif op == 4:  # splice with another seed
            other = rng.choice(seeds).raw
            raw = raw[: rng.randrange(len(raw) + 1)] + other[rng.randrange(len(other) + 1) :]
        elif op == 5 and len(raw) >= 4:  # the header lies
            lie = rng.choice((0, 19, 20, len(raw) - 4, len(raw) - 1, len(raw) + 1, len(raw) + 4, MAX_MESSAGE, 0xFFFFFF))
            raw[1:4] = (lie & 0xFFFFFF).to_bytes(3, "big")
            return bytes(raw)
        elif op == 6:  # an AVP lies
            _avp_length_lie(rng, raw, seed)
    if rng.random() < 0.5:
        _honest_length(raw)
    return bytes(raw)


def _avp_length_lie(rng: random.Random, raw: bytearray, seed: Seed) -> None:
    offsets = [(pos, end) for pos, end in avp_offsets(seed.raw, seed.grouped) if pos + 8 <= len(raw)]
    if not offsets:
        return
    pos, end = rng.choice(offsets)
    left = end - pos
    lie = rng.choice((0, 1, 7, 8, 9, 11, 12, 13, left - 1, left, left + 1, left + 3, left + 4, 0xFFFFFC, 0xFFFFFF))
    raw[pos + 5 : pos + 8] = (lie & 0xFFFFFF).to_bytes(3, "big")


def _sort_key(key: base.AvpKey) -> tuple[int, int]:
    return key if isinstance(key, tuple) else (key, 0)


_GROUPED_CODES = tuple(sorted(GROUPED, key=_sort_key))
_CHAIN_CODES = tuple(sorted(GROUPED | set(UNKNOWN_CODES), key=_sort_key))


def _model_avp(key: base.AvpKey, flags: int, data: bytes) -> Avp:
    code, vendor = _sort_key(key)
    return Avp(code, flags | (base.AVP_FLAG_VENDOR if vendor else 0), vendor, data)


def _chain_codes(rng: random.Random, depth: int) -> list[base.AvpKey]:
    """One code all the way down, a mix of Grouped codes, or a mix with unknown codes."""
    kind = rng.randrange(3)
    if kind == 0:
        return [rng.choice(_GROUPED_CODES)] * depth
    return rng.choices(_GROUPED_CODES if kind == 1 else _CHAIN_CODES, k=depth)


def _leaf(rng: random.Random) -> bytes:
    return rng.choice(
        (
            b"",
            pack_avp(rng.choice(UNKNOWN_CODES), base.AVP_FLAG_MANDATORY, b"x"),
            pack_avp(sip_app.AVP_DIGEST_REALM, base.AVP_FLAG_MANDATORY, b"example.com"),
            pack_avp(base.AVP_RESULT_CODE, base.AVP_FLAG_MANDATORY, (2001).to_bytes(4, "big")),
            b"\0" * rng.randrange(1, 8),
        )
    )


def nest(rng: random.Random, seeds: list[Seed]) -> bytes:
    """A chain of Grouped AVPs, 1 to ~8,000 deep, at the top level or inside any group
    a reader opens: added, or replacing a group's members."""
    seed = rng.choice(seeds)
    msg = parse(seed.raw, seed.grouped)
    room = (MAX_MESSAGE - len(seed.raw) - 64) // 8
    depth = rng.choice((*DEPTHS, rng.randint(1, 64), rng.randint(1, max(1, room)), room, room + 1, room + 200))
    depth = max(1, depth)
    keys = _chain_codes(rng, depth)
    chain = nested_chain(keys, _leaf(rng))
    node = _model_avp(keys[0], chain[4] & ~base.AVP_FLAG_VENDOR, chain[12 if isinstance(keys[0], tuple) else 8 :])
    groups = [a for members in avp_lists(msg) for a in members if a.members is not None]
    if groups and rng.random() < 0.3:
        rng.choice(groups).members = [node]
    else:
        where = rng.choice(avp_lists(msg))
        where.insert(rng.randrange(len(where) + 1), node)
    return msg.pack()


def oversize(rng: random.Random, seeds: list[Seed]) -> bytes:
    """Frames at and past 64 KiB, lengths at their limits, many tiny AVPs, one huge group."""
    seed = rng.choice(seeds)
    msg = parse(seed.raw, seed.grouped)
    where = rng.choice(avp_lists(msg))
    kind = rng.randrange(5)
    if kind == 0:  # a filler AVP that brings the frame to the limit or just past it
        target = MAX_MESSAGE + rng.choice((-4, 0, 0, 4, 8, rng.randrange(1, 5000)))
        need = max(0, target - len(seed.raw) - 8)
        flags = rng.choice((0, base.AVP_FLAG_MANDATORY))
        where.insert(rng.randrange(len(where) + 1), Avp(rng.choice(UNKNOWN_CODES), flags, 0, b"\0" * need))
        return msg.pack()
    if kind == 1:  # thousands of tiny AVPs
        count = rng.choice((100, 1000, (MAX_MESSAGE - len(seed.raw)) // 8, 9000, rng.randrange(1, 9000)))
        code = rng.choice((*UNKNOWN_CODES, base.AVP_RESULT_CODE, base.AVP_ORIGIN_HOST, sip_app.AVP_SIP_AUTH_DATA_ITEM))
        flags = rng.choice((0, base.AVP_FLAG_MANDATORY))
        tiny = Avp(code, flags, 0, packed=pack_avp(code, flags, b"") * count)
        where.insert(rng.randrange(len(where) + 1), tiny)
        return msg.pack()
    if kind == 2:  # one group holding ~60 KB of members
        members = pack_avp(rng.choice(UNKNOWN_CODES), 0, b"m" * 24) * rng.choice((100, 1800, 2000))
        where.insert(rng.randrange(len(where) + 1), _model_avp(rng.choice(_GROUPED_CODES), 0x40, members))
        return msg.pack()
    raw = bytearray(seed.raw)
    if kind == 3:  # an AVP length at the limits
        _avp_length_lie(rng, raw, seed)
        if rng.random() < 0.5:
            _honest_length(raw)
        return bytes(raw)
    # a 24-bit header length near 2^24, with or without bytes behind it
    raw[1:4] = rng.choice((0xFFFFFF, 0xFFFFFC, 0xFFFFF0, 0x010000, 0x010004)).to_bytes(3, "big")
    if rng.random() < 0.3:
        raw += bytes(rng.choice((MAX_MESSAGE, MAX_MESSAGE + 4)) - len(raw))
    return bytes(raw)


def _interesting_value(rng: random.Random, a: Avp) -> bytes:
    if len(a.data) == 4 and rng.random() < 0.5:
        return rng.choice(RESULT_CODES).to_bytes(4, "big")
    return rng.choice((*HOSTILE_TEXT, rng.randbytes(rng.randrange(12)), a.data + rng.choice(HOSTILE_TEXT)))


def structure(rng: random.Random, seeds: list[Seed]) -> bytes:
    """Changes that keep every length honest: repeated AVPs, the vendor flag set or
    cleared, the M flag on unknown codes, hostile values, other header bits."""
    seed = rng.choice(seeds)
    msg = parse(seed.raw, seed.grouped)
    for _ in range(rng.randint(1, 3)):
        where = rng.choice(avp_lists(msg))
        op = rng.randrange(8)
        if op == 0 and where:  # repeat an AVP
            a = rng.choice(where)
            count = rng.choice((1, 2, 5, 100))
            where[where.index(a) : where.index(a)] = [copy.deepcopy(a) for _ in range(count)]
        elif op == 1 and where:  # vendor flag set, with a Vendor-Id, or cleared
            a = rng.choice(where)
            if a.flags & base.AVP_FLAG_VENDOR:
                a.flags &= ~base.AVP_FLAG_VENDOR
                a.vendor = 0
            else:
                a.flags |= base.AVP_FLAG_VENDOR
                a.vendor = rng.choice((0, 10415, 13019, 0xFFFFFFFF))
        elif op == 2:  # an unknown AVP with the M flag
            code = rng.choice((*UNKNOWN_CODES, base.AVP_FAILED_AVP, 450, 383))
            flags = base.AVP_FLAG_MANDATORY | rng.choice((0, base.AVP_FLAG_VENDOR))
            where.insert(rng.randrange(len(where) + 1), Avp(code, flags, rng.choice((0, 10415)), rng.randbytes(4)))
        elif op == 3 and where:  # the M flag toggled
            rng.choice(where).flags ^= base.AVP_FLAG_MANDATORY
        elif op == 4 and where:  # a hostile value
            a = rng.choice(where)
            a.members = None
            a.data = _interesting_value(rng, a)
        elif op == 5 and where:  # an AVP dropped, or the order shuffled
            if rng.random() < 0.5:
                where.pop(rng.randrange(len(where)))
            else:
                rng.shuffle(where)
        elif op == 6:  # header bits: R, P, E, T
            msg.flags = rng.choice((0, 0x20, 0x40, 0x80, 0xA0, 0xC0, 0xE0, 0x10, 0xF0, 0xFF, rng.randrange(256)))
        else:  # another command, application or hop-by-hop
            field_ = rng.randrange(3)
            if field_ == 0:
                msg.command = rng.choice((257, 265, 280, 282, 284, 286, 0, 0xFFFFFF))
            elif field_ == 1:
                msg.application = rng.choice((0, 1, 6, 4, 0xFFFFFFFF))
            else:
                msg.hop_by_hop = rng.choice((0, 1, msg.hop_by_hop ^ 1, 0xFFFFFFFF))
    return msg.pack()


GENERATORS: dict[str, Generator] = {"mutate": mutate, "nest": nest, "oversize": oversize, "structure": structure}


# --- the world the targets live in ----------------------------------------------------


def _hostile_header(header: str) -> str | None:
    """Why this reply header would be unsafe, or None: one header line, no control characters."""
    if not header.startswith(("WWW-Authenticate: ", "Proxy-Authenticate: ")) or not header.endswith("\r\n"):
        return "not one WWW-/Proxy-Authenticate header line"
    bad = sorted({c for c in header[:-2] if (c < " " and c != "\t") or c == "\x7f"})
    return f"control characters {bad!r}" if bad else None


def check_outcome(decided: Outcome) -> None:
    if not isinstance(decided, Outcome):
        raise ContractBroken(f"not an Outcome: {decided!r}")
    if decided.header:
        problem = _hostile_header(decided.header)
        if problem is not None:
            raise HeaderProblem(f"{problem} in {decided.header!r}")


def check_frame(data: bytes) -> None:
    """What a server or the plugin sends must be one frame its peer's Framer accepts.

    Whether it decodes is not checked: an answer echoes the request's Proxy-Info and
    wraps its Failed-AVP one level deeper, so a hostile request may well get an
    answer its own sender refuses to read."""
    if not data:
        return
    if len(data) > MAX_MESSAGE or data[0] != 1 or int.from_bytes(data[1:4], "big") != len(data) or len(data) % 4:
        raise ContractBroken(f"reply of {len(data)} bytes is not one frame a peer accepts")


class _Formatting(logging.Handler):
    """Formats every record the server logs, so that a message that cannot be
    formatted fails the case instead of vanishing into logging's own error output."""

    def emit(self, record: logging.LogRecord) -> None:
        record.getMessage()


class World:
    """What the targets need: a store with users, the server objects, opened peers."""

    def __init__(self, directory: Path) -> None:
        self.clock = [1_700_000_000.0]
        self.store = SqliteStore(str(directory / "fuzz.sqlite"), server=True)
        self.store.add_user("alice", REALM, PASSWORD)
        self.store.add_group("alice", "voicemail")
        nonces = NonceFactory(self.store.nonce_secret(), lifetime=300, clock=self._now)
        self.nonce = nonces.make(REALM)
        self.legacy_server = LegacyServer(LegacyAuthority(self.store, nonces), SERVER)
        responder = DiameterResponder(
            SipAuthority(self.store, nonces), SERVER, None, 42, clock=time.monotonic, ha1_peers=("trusted.example.org",)
        )
        self.fresh_session = PeerSession(responder, "127.0.0.1")
        self.open_session = PeerSession(responder, "127.0.0.1")
        self._expect_open(self.open_session.receive(self.cer()))
        self.trusted_session = PeerSession(responder, "127.0.0.1")  # given HA1s: Flow B, and Cx answered
        self._expect_open(self.trusted_session.receive(self.cer(host="trusted.example.org")))
        local = Capabilities(CLIENT, ("127.0.0.1",), (sip_app.APP_SIP,), origin_state_id=7)

        def ids(start: int) -> Callable[[], int]:
            counter = iter(range(start, 1 << 32))
            return lambda: next(counter)

        self.waiting_peer = PeerProtocol(local, 30.0, self._now, hop_by_hop=ids(100), end_to_end=ids(1))
        self.cer_to_peer = self.waiting_peer.start()
        self.open_peer = copy.copy(self.waiting_peer)
        self.open_peer.receive(self.cea(self.cer_to_peer))
        self.clock[0] += 31.0
        self.dwr_from_peer = self.open_peer.watchdog()  # outstanding: its DWA is a seed
        if self.open_peer.state is not State.OPEN or self.dwr_from_peer is None:
            raise RuntimeError("the fuzz world's client peer did not open")

    def _now(self) -> float:
        return self.clock[0]

    @staticmethod
    def _expect_open(reply: Reply) -> None:
        if reply.close or not reply.data:
            raise RuntimeError("the fuzz world's server session did not open")

    def close(self) -> None:
        self.store.close()

    # --- valid messages

    def cer(
        self, apps: tuple[int, ...] = (sip_app.APP_SIP,), inband: tuple[int, ...] = (), host: str = CLIENT.origin_host
    ) -> bytes:
        identity = Identity(host, CLIENT.origin_realm)
        caps = Capabilities(identity, ("127.0.0.1",), apps, origin_state_id=7, inband_security_ids=inband)
        return base.encode_cer(caps, 0x11, 0x22)

    def cea(self, cer: bytes, result: int = 2001, apps: tuple[int, ...] = (sip_app.APP_SIP,)) -> bytes:
        request = base.decode(cer)
        return base.encode_cea(request, Capabilities(SERVER, ("127.0.0.2",), apps), result)

    def credentials(self, password: str = PASSWORD) -> sip_app.DigestResponse:
        d = digest.DigestInput(
            method="REGISTER", uri="sip:example.com", nonce=self.nonce, qop="auth", nc="00000001", cnonce="c0ffee"
        )
        return sip_app.DigestResponse(
            username="alice",
            realm=REALM,
            nonce=self.nonce,
            uri="sip:example.com",
            response=digest.response(digest.ha1("alice", REALM, password), d),
            algorithm="MD5",
            cnonce="c0ffee",
            qop="auth",
            nonce_count="00000001",
            method="REGISTER",
        )

    def mar(self, credentials: sip_app.DigestResponse | None, hop: int = 5) -> bytes:
        req = sip_app.MultimediaAuthRequest(
            session_id="kamailio.example.org;1;1",
            origin_host=CLIENT.origin_host,
            origin_realm=CLIENT.origin_realm,
            destination_realm=SERVER.origin_realm,
            sip_aor="sip:alice@example.com",
            sip_method="REGISTER",
            user_name="alice" if credentials else "alice@example.com",
            credentials=credentials,
        )
        return sip_app.encode_mar(req, hop, hop + 1)

    def sar(self, hop: int = 7) -> bytes:
        req = sip_app.ServerAssignmentRequest(
            session_id="kamailio.example.org;1;2",
            origin_host=CLIENT.origin_host,
            origin_realm=CLIENT.origin_realm,
            destination_realm=SERVER.origin_realm,
            assignment_type=sip_app.ASSIGNMENT_NO_ASSIGNMENT,
            user_name="alice",
            supported_user_data_types=(sip_app.GROUPS_USER_DATA_TYPE,),
        )
        return sip_app.encode_sar(req, hop, hop + 1)

    def maas(self, hop: int = 5) -> list[bytes]:
        request = base.decode_lean(self.mar(None, hop))
        challenge = sip_app.DigestChallenge(REALM, self.nonce, opaque="op", domain="sip:example.com", stale=True)
        flow_b = sip_app.MultimediaAuthAnswer(2008, challenge, ha1s=HA1S)
        return [
            sip_app.encode_maa(request, SERVER, sip_app.MultimediaAuthAnswer(1001, challenge)),
            sip_app.encode_maa(request, SERVER, sip_app.MultimediaAuthAnswer(4001, challenge, "wrong")),
            sip_app.encode_maa(request, SERVER, sip_app.MultimediaAuthAnswer(2001)),
            sip_app.encode_maa(request, SERVER, sip_app.MultimediaAuthAnswer(5032, error_message="who")),
            sip_app.encode_maa(request, SERVER, flow_b),
        ]

    def cx_mar(self, hop: int = 9) -> bytes:
        req = cx.MultimediaAuthRequest(
            session_id="kamailio.example.org;1;3",
            origin_host=CLIENT.origin_host,
            origin_realm=CLIENT.origin_realm,
            destination_realm=SERVER.origin_realm,
            user_name="alice",
            public_identity="sip:alice@example.com",
            server_name="sip:kamailio.example.org",
        )
        return cx.encode_mar(req, hop, hop + 1)

    def cx_maas(self, hop: int = 9) -> list[bytes]:
        request = base.decode_lean(self.cx_mar(hop))
        return [
            cx.encode_maa(request, SERVER, cx.MultimediaAuthAnswer(2001, ha1s=HA1S)),
            cx.encode_maa(request, SERVER, cx.MultimediaAuthAnswer(2001, ha1s=HA1S[1:])),
            cx.encode_maa(request, SERVER, cx.MultimediaAuthAnswer(experimental_result=cx.USER_UNKNOWN)),
            cx.encode_maa(request, SERVER, cx.MultimediaAuthAnswer(5012, error_message="not trusted")),
        ]

    def saas(self, hop: int = 7) -> list[bytes]:
        request = base.decode_lean(self.sar(hop))
        groups = (sip_app.groups_user_data(["voicemail", "admins"]),)
        return [
            sip_app.encode_saa(request, SERVER, sip_app.ServerAssignmentAnswer(2001, groups)),
            sip_app.encode_saa(request, SERVER, sip_app.ServerAssignmentAnswer(5032, error_message="who")),
        ]

    def peer_requests(self) -> list[bytes]:
        dwr = base.encode_dwr(SERVER, 42, 0x31, 0x32)
        dpr = base.encode_dpr(SERVER, base.DISCONNECT_REBOOTING, 0x33, 0x34)
        unknown = base.encode(base.request_header(999, 0, 0x35, 0x36, proxiable=False), base.identity_avps(SERVER))
        return [dwr, dpr, unknown]

    def error_answers(self) -> list[bytes]:
        """3002/3004 from a relay that could not deliver, with E and Failed-AVP, Proxy-Info."""
        request = base.decode(self.mar(None))
        out = []
        for code in (3002, 3004, 3005):
            failed = base.avp(base.AVP_DESTINATION_HOST, b"aaa.example.org")
            error = base.RequestError(code, "unable to deliver", failed)
            out.append(base.encode_error(request, Identity("relay.example.org", "example.org"), error))
        return out

    def legacy_requests(self) -> list[bytes]:
        ruri, to = parse_uri("sip:example.com"), parse_uri("sip:alice@example.com")
        d = digest.DigestInput(
            method="REGISTER", uri="sip:example.com", nonce=self.nonce, qop="auth", nc="00000001", cnonce="c0ffee"
        )
        response = digest.response(digest.ha1("alice", REALM, PASSWORD), d)
        header = (
            f'Digest username="alice", realm="{REALM}", nonce="{self.nonce}", uri="sip:example.com", '
            f'response="{response}", algorithm=MD5, cnonce="c0ffee", qop=auth, nc=00000001'
        )
        cred = parse_credentials(header)
        return [
            legacy.encode_auth_request(ruri, to, 0x0A0B0C0D, None, "REGISTER"),
            legacy.encode_auth_request(ruri, to, 0x0A0B0C0E, cred, "REGISTER"),
            legacy.encode_group_request(REALM, 0x0A0B0C0F, "voicemail", b"alice"),
        ]

    def legacy_answers(self) -> list[bytes]:
        common = {"session_id": b"aaa;1;1", "origin_host": b"aaa.test", "origin_realm": b"test"}
        challenge = f'Digest realm="{REALM}", nonce="{self.nonce}", qop="auth"\r\n'.encode()
        msgid = (0x0A0B0C0D).to_bytes(4, "little")
        return [
            legacy.encode_answer(service=b"6", msgid=msgid, result_code=4001, challenge=challenge, **common),
            legacy.encode_answer(service=b"6", msgid=msgid, result_code=2001, **common),
            legacy.encode_answer(service=b"6", msgid=msgid, result_code=5003, **common),
            legacy.encode_answer(service=b"8", msgid=msgid, result_code=2001, hop_by_hop=9, end_to_end=10, **common),
        ]


# --- targets --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """``run`` returns a label for the statistics; anything it raises is a failure."""

    name: str
    seeds: Callable[[World], list[bytes]]
    run: Callable[[World, bytes, random.Random], str]
    grouped: frozenset[int] = frozenset(GROUPED)
    make: Callable[[Target, random.Random, list[Seed]], bytes] | None = None


def _server_reply(reply: Reply) -> str:
    if not isinstance(reply, Reply):
        raise ContractBroken(f"not a Reply: {reply!r}")
    check_frame(reply.data)
    return "close" if reply.close else "answer" if reply.data else "silence"


def run_server_fresh(world: World, data: bytes, rng: random.Random) -> str:
    return _server_reply(copy.copy(world.fresh_session).receive(data))


def run_server_open(world: World, data: bytes, rng: random.Random) -> str:
    session = world.trusted_session if rng.random() < 0.5 else world.open_session
    return _server_reply(copy.copy(session).receive(data))


def run_legacy_server(world: World, data: bytes, rng: random.Random) -> str:
    try:
        reply = world.legacy_server.answer(data)
    except legacy.LegacyError:
        return "close"
    check_frame(reply)
    legacy.decode_message(reply)
    return "answer"


def decide_legacy(answer: legacy.Answer) -> str:
    """The plugin's verdict on a legacy answer, as plugin.py makes it, for both functions."""
    result = legacy_backend.verdict(answer)
    if not isinstance(result, Result):
        raise ContractBroken(f"not a Result: {result!r}")
    for proxy in (False, True):
        check_outcome(authorize.result_outcome(result, answer.challenge, proxy))
    return result.value


def decide_maa(answer: sip_app.MultimediaAuthAnswer) -> str:
    """The plugin's verdict on an MAA, as plugin.py makes it, for both functions."""
    result = rfc4740_backend.verdict(answer)
    if not isinstance(result, Result):
        raise ContractBroken(f"not a Result: {result!r}")
    value = None
    if result is Result.CHALLENGE and answer.challenge is not None:
        value = rfc4740_backend.challenge_value(answer.challenge)
    for proxy in (False, True):
        check_outcome(authorize.result_outcome(result, value, proxy))
    return result.value


def check_ha1s(ha1s: object) -> None:
    """What every decoder promises of the H(A1)s it hands over: MD5 or SHA-256, lower-case hex of its length."""
    if not isinstance(ha1s, tuple) or not all(isinstance(h, DigestHa1) for h in ha1s):
        raise ContractBroken(f"ha1s are not DigestHa1s: {ha1s!r}")
    for h in ha1s:
        length = HEX_LENGTHS.get(h.algorithm)
        if length is None or len(h.ha1) != length or h.ha1.strip("0123456789abcdef"):
            raise ContractBroken(f"an H(A1) the decoder should have refused: {h!r}")
        if not isinstance(h.realm, str) or not isinstance(h.qop, str):
            raise ContractBroken(f"realm or qop is not text: {h!r}")


def decide_cx_maa(answer: cx.MultimediaAuthAnswer) -> str:
    check_ha1s(answer.ha1s)
    if answer.result_code is None and answer.experimental_result is None:
        raise ContractBroken("a Cx MAA decoded without any result")
    if answer.ha1s:
        return "ha1"
    return "experimental" if answer.experimental_result is not None else "result"


def decide_saa(answer: sip_app.ServerAssignmentAnswer) -> str:
    groups = sip_app.groups_of(answer.user_data)
    if groups is not None and not all(isinstance(g, str) for g in groups):
        raise ContractBroken(f"groups are not strings: {groups!r}")
    return "groups" if groups else "no-groups"


def run_legacy_answer(world: World, data: bytes, rng: random.Random) -> str:
    try:
        answer = legacy.decode_answer(data)
    except legacy.LegacyError:
        return "rejected"
    return decide_legacy(answer)


def run_maa(world: World, data: bytes, rng: random.Random) -> str:
    try:
        _, answer = sip_app.decode_maa(data)
    except (base.DecodeError, base.RequestError):
        return "rejected"
    check_ha1s(answer.ha1s)
    return decide_maa(answer)


def run_cx_maa(world: World, data: bytes, rng: random.Random) -> str:
    try:
        _, answer = cx.decode_maa(data)
    except (base.DecodeError, base.RequestError):
        return "rejected"
    return decide_cx_maa(answer)


def run_saa(world: World, data: bytes, rng: random.Random) -> str:
    try:
        _, answer = sip_app.decode_saa(data)
    except (base.DecodeError, base.RequestError):
        return "rejected"
    return decide_saa(answer)


def _frames(data: bytes) -> Iterator[bytes]:
    """What the transport would hand over from these bytes (PeerProtocol and the
    fail-over check take whole frames, never shorter than a header)."""
    framer = Framer()
    framer.feed(data)
    with contextlib.suppress(FramingError):
        while (frame := framer.next_message()) is not None:
            yield frame


def _peer_receive(peer: PeerProtocol, frame: bytes) -> str:
    try:
        received = peer.receive(frame)
    except PeerError as exc:
        return f"close:{type(exc).__name__}"
    if received.reply is not None:
        check_frame(received.reply)
    if received.answer is None:
        return "reply" if received.reply is not None else "consumed"
    _answer_path(received.answer)
    return "answer"


def _answer_path(frame: bytes) -> None:
    """What the plugin does with an answer: the fail-over check, then its decoder and verdict."""
    code = _failover_result(frame)
    if code is not None and code not in (3002, 3004):
        raise ContractBroken(f"_failover_result gave {code!r}")
    if frame[5:8] == sip_app.CMD_SERVER_ASSIGNMENT.to_bytes(3, "big"):
        with contextlib.suppress(base.DecodeError, base.RequestError):
            decide_saa(sip_app.decode_saa(frame)[1])
    elif frame[5:8] == cx.CMD_MULTIMEDIA_AUTH.to_bytes(3, "big"):
        with contextlib.suppress(base.DecodeError, base.RequestError):
            decide_cx_maa(cx.decode_maa(frame)[1])
    else:
        with contextlib.suppress(base.DecodeError, base.RequestError):
            decide_maa(sip_app.decode_maa(frame)[1])


def run_peer_cea(world: World, data: bytes, rng: random.Random) -> str:
    labels = [_peer_receive(copy.copy(world.waiting_peer), frame) for frame in _frames(data)]
    return labels[0] if labels else "no-frame"


def run_peer_open(world: World, data: bytes, rng: random.Random) -> str:
    labels = [_peer_receive(copy.copy(world.open_peer), frame) for frame in _frames(data)]
    return labels[0] if labels else "no-frame"


def run_failover(world: World, data: bytes, rng: random.Random) -> str:
    labels = []
    for frame in _frames(data):
        code = _failover_result(frame)
        if code is not None and code not in (3002, 3004):
            raise ContractBroken(f"_failover_result gave {code!r}")
        labels.append(str(code))
    return labels[0] if labels else "no-frame"


def make_stream(target: Target, rng: random.Random, seeds: list[Seed]) -> bytes:
    """One to six messages back to back, each valid or changed by a generator."""
    out = []
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.4:
            out.append(rng.choice(seeds).raw)
        else:
            out.append(GENERATORS[rng.choice(sorted(GENERATORS))](rng, seeds))
    return b"".join(out)


def run_framer(world: World, data: bytes, rng: random.Random) -> str:
    """A stream in random chunks: the Framer must hand out exactly the frames the
    headers announce, and the plugin's connection must take each or close."""
    legacy_stream = rng.random() < 0.3
    peer = copy.copy(world.open_peer)
    framer = Framer()
    pos = taken = 0
    while pos < len(data):
        size = rng.choice((1, 2, 3, 7, 20, 100, 4096, rng.randrange(1, 70000)))
        framer.feed(data[pos : pos + size])
        pos += size
        while True:
            try:
                frame = framer.next_message()
            except FramingError:
                return "framing-error"
            if frame is None:
                break
            if frame != data[taken : taken + len(frame)] or int.from_bytes(frame[1:4], "big") != len(frame):
                raise ContractBroken(f"the framer handed out {len(frame)} bytes that are not the next frame")
            taken += len(frame)
            if legacy_stream:
                with contextlib.suppress(legacy.LegacyError):
                    decide_legacy(legacy.decode_answer(frame))
            elif _peer_receive(peer, frame).startswith("close"):
                return "closed"
    if taken + framer.pending != len(data):
        raise ContractBroken(f"{len(data)} bytes fed, {taken} framed, {framer.pending} pending")
    return "drained" if not framer.pending else "partial"


def _answers(w: World) -> list[bytes]:
    return [*w.maas(), *w.saas(), *w.cx_maas()]


def _server_cer_seeds(w: World) -> list[bytes]:
    return [
        w.cer(),
        w.cer((base.APP_RELAY,)),
        w.cer((1,)),
        w.cer(inband=(1,)),
        w.cer((cx.APP_CX,), host="trusted.example.org"),
        w.mar(None),
        *w.peer_requests(),
    ]


def _server_open_seeds(w: World) -> list[bytes]:
    requests = [w.mar(None), w.mar(w.credentials()), w.mar(w.credentials("wrong")), w.sar(), w.cer(), w.cx_mar()]
    return [*requests, *w.peer_requests(), w.maas()[0]]


def _peer_cea_seeds(w: World) -> list[bytes]:
    cer = w.cer_to_peer
    return [w.cea(cer), w.cea(cer, apps=(base.APP_RELAY,)), w.cea(cer, result=3010), w.cea(cer, apps=(1,)), w.maas()[0]]


def _peer_open_seeds(w: World) -> list[bytes]:
    dwa = base.encode_dwa(base.decode(w.dwr_from_peer), SERVER, 42)
    return [*_answers(w), *w.peer_requests(), *w.error_answers(), w.cea(w.cer_to_peer), dwa]


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("server-cer", _server_cer_seeds, run_server_fresh),
        Target("server-open", _server_open_seeds, run_server_open),
        Target(
            "legacy-server", lambda w: [*w.legacy_requests(), w.legacy_answers()[0]], run_legacy_server, frozenset()
        ),
        Target("legacy-answer", World.legacy_answers, run_legacy_answer, frozenset()),
        Target("maa", World.maas, run_maa),
        Target("cx-maa", World.cx_maas, run_cx_maa),
        Target("saa", World.saas, run_saa),
        Target("peer-cea", _peer_cea_seeds, run_peer_cea),
        Target("peer-open", _peer_open_seeds, run_peer_open),
        Target("failover", lambda w: [*w.error_answers(), *_answers(w)], run_failover),
        Target(
            "framer",
            lambda w: [*_answers(w), *w.peer_requests(), *w.error_answers(), *w.legacy_answers()],
            run_framer,
            make=make_stream,
        ),
    )
}


# --- running --------------------------------------------------------------------------


@dataclass
class Failure:
    target: str
    seed: int
    case: int
    generator: str
    error: str
    kind: str  # exception type and innermost frame: failures are counted by it
    traceback: str
    data: bytes

    def replay(self) -> str:
        return f"python -m tests.fuzz --target {self.target} --seed {self.seed} --case {self.case}"

    def describe(self) -> str:
        head = self.data[:64].hex()
        return (
            f"{self.target} case {self.case} ({self.generator}, {len(self.data)} bytes): {self.kind}: {self.error}\n"
            f"  replay: {self.replay()}\n  first bytes: {head}"
        )


@dataclass
class Report:
    target: str
    inputs: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    generators: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    failure_kinds: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds else 0.0


class Fuzzer:
    """Builds the world once, then runs cases; keeps the first failures of each kind in full."""

    def __init__(self, directory: Path, keep: int = 5) -> None:
        self.world = World(directory)
        self.keep = keep
        self._seeds: dict[str, list[Seed]] = {}

    def close(self) -> None:
        self.world.close()

    def seeds(self, target: Target) -> list[Seed]:
        if target.name not in self._seeds:
            self._seeds[target.name] = [Seed(raw, target.grouped) for raw in target.seeds(self.world)]
        return self._seeds[target.name]

    def case(self, target: Target, seed: int, case: int) -> tuple[str, bytes, random.Random]:
        rng = random.Random(f"{seed}/{target.name}/{case}")
        seeds = self.seeds(target)
        if target.make is not None:
            return "stream", target.make(target, rng, seeds), rng
        name = rng.choice(sorted(GENERATORS))
        return name, GENERATORS[name](rng, seeds), rng

    def run(self, target: Target, seed: int, inputs: int, first: int = 0) -> Report:
        report = Report(target.name)
        server_log = logging.getLogger("kamailio_auth_diameter.server")
        saved = server_log.level, server_log.propagate, server_log.handlers[:]
        server_log.setLevel(logging.DEBUG)
        server_log.propagate = False
        server_log.handlers = [_Formatting()]
        start = time.perf_counter()
        try:
            for case in range(first, first + inputs):
                generator, data, rng = self.case(target, seed, case)
                report.generators[generator] += 1
                try:
                    report.outcomes[target.run(self.world, data, rng)] += 1
                except Exception as exc:  # noqa: BLE001 - whatever escapes is what we look for
                    self._record(report, target, seed, case, generator, data, exc)
        finally:
            report.seconds = time.perf_counter() - start
            report.inputs = inputs
            server_log.setLevel(saved[0])
            server_log.propagate = saved[1]
            server_log.handlers = saved[2]
        return report

    def _record(
        self, report: Report, target: Target, seed: int, case: int, generator: str, data: bytes, exc: Exception
    ) -> None:
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:  # the innermost frame, without reading a thousand
            tb = tb.tb_next
        code = tb.tb_frame.f_code if tb is not None else None
        where = f"{Path(code.co_filename).name}:{tb.tb_lineno} in {code.co_name}" if tb and code else "?"
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
        kind = f"{type(exc).__name__} at {where}"
        report.failure_kinds[kind] += 1
        if report.failure_kinds[kind] <= self.keep:
            text = "".join(traceback.format_exception(exc))
            report.failures.append(Failure(target.name, seed, case, generator, error, kind, text, data))


@contextlib.contextmanager
def fuzzer() -> Iterator[Fuzzer]:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as directory:
        f = Fuzzer(Path(directory))
        try:
            yield f
        finally:
            f.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=10_000, help="inputs in all, shared among the targets")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--target", choices=sorted(TARGETS), action="append", help="repeatable; default: all")
    parser.add_argument("--case", type=int, help="run this one case and print its input and traceback")
    args = parser.parse_args(argv)
    names = args.target or list(TARGETS)
    with fuzzer() as f:
        if args.case is not None:
            return _replay(f, TARGETS[names[0]], args.seed, args.case)
        total = Report("all")
        per_target = max(1, args.inputs // len(names))
        print(f"seed {args.seed}, {per_target} inputs per target, targets: {' '.join(names)}", flush=True)
        for name in names:
            r = f.run(TARGETS[name], args.seed, per_target)
            total.inputs += r.inputs
            total.seconds += r.seconds
            total.failure_kinds += r.failure_kinds
            top = ", ".join(f"{k} {v}" for k, v in r.outcomes.most_common(4))
            failures = sum(r.failure_kinds.values())
            print(f"{name:14} {r.inputs:>9} in {r.seconds:7.1f} s {r.rate:8.0f}/s  failures {failures}  [{top}]")
            for kind, count in r.failure_kinds.most_common():
                print(f"    {count:>7} x {kind}")
            for failure in r.failures:
                print("  " + failure.describe().replace("\n", "\n  "))
            sys.stdout.flush()
        failures = sum(total.failure_kinds.values())
        print(f"total {total.inputs} inputs in {total.seconds:.1f} s ({total.rate:.0f}/s), {failures} failures")
    return 1 if failures else 0


def _replay(f: Fuzzer, target: Target, seed: int, case: int) -> int:
    r = f.run(target, seed, 1, first=case)
    generator, data, _ = f.case(target, seed, case)
    print(f"{target.name} seed {seed} case {case}: {generator}, {len(data)} bytes, nesting {nesting_depth(data)}")
    print(data.hex())
    for failure in r.failures:
        print(failure.traceback)
    print(f"outcome: {', '.join(r.outcomes) or 'failure'}")
    return 1 if r.failures else 0


if __name__ == "__main__":
    sys.exit(main())
