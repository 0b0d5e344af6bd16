"""A short seeded run of tests/fuzz.py over every target, and checks that its generators
and checks do what the long run relies on."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from kamailio_auth_diameter.outcome import Outcome
from kamailio_auth_diameter.wire import base
from kamailio_auth_diameter.wire.framing import MAX_MESSAGE
from tests import fuzz

SEED = 20260
INPUTS = 400  # per target: about half a second each

# Labels each target must produce in the short run: the inputs reached both sides of its contract.
EXPECTED = {
    "server-cer": {"answer", "close"},
    "server-open": {"answer", "close"},
    "legacy-server": {"answer", "close"},
    "legacy-answer": {"rejected", "authorized", "challenge", "not-authorized"},
    "maa": {"rejected", "authorized", "challenge", "not-authorized"},
    "cx-maa": {"rejected", "ha1", "experimental", "result"},
    "saa": {"rejected", "groups", "no-groups"},
    "peer-cea": {"consumed", "close:PeerError", "no-frame"},
    "peer-open": {"answer", "reply", "close:Disconnected"},
    "failover": {"None", "3002", "3004"},
    "framer": {"drained", "framing-error", "closed"},
}


@pytest.fixture(scope="module")
def fuzzer() -> Iterator[fuzz.Fuzzer]:
    with fuzz.fuzzer() as f:
        yield f


@pytest.fixture(scope="module")
def reports(fuzzer: fuzz.Fuzzer) -> dict[str, fuzz.Report]:
    return {name: fuzzer.run(target, SEED, INPUTS) for name, target in fuzz.TARGETS.items()}


def test_every_target_is_run() -> None:
    assert set(EXPECTED) == set(fuzz.TARGETS)


@pytest.mark.parametrize("name", sorted(fuzz.TARGETS))
def test_target_keeps_its_contract(reports: dict[str, fuzz.Report], name: str) -> None:
    r = reports[name]
    assert not r.failure_kinds, "\n".join(f.describe() + "\n" + f.traceback for f in r.failures)
    assert EXPECTED[name] <= set(r.outcomes), r.outcomes
    assert set(r.generators) == ({"stream"} if name == "framer" else set(fuzz.GENERATORS))


def _generated(fuzzer: fuzz.Fuzzer, target: str, generator: str, count: int) -> list[bytes]:
    seeds = fuzzer.seeds(fuzz.TARGETS[target])
    rng = random.Random(generator)
    return [fuzz.GENERATORS[generator](rng, seeds) for _ in range(count)]


def test_nesting_goes_past_the_limit_and_thousands_deep(fuzzer: fuzz.Fuzzer) -> None:
    depths = [fuzz.nesting_depth(raw) for raw in _generated(fuzzer, "maa", "nest", 300)]
    assert any(base.MAX_DEPTH < d < 100 for d in depths)
    assert any(1000 <= d < 2000 for d in depths)
    assert max(depths) > 7000


def _members(raw: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(code, payload start, payload end) of each AVP of one level, read without recursion."""
    while start + 8 <= end:
        code, flags_length = int.from_bytes(raw[start : start + 4], "big"), raw[start + 4 : start + 8]
        length = int.from_bytes(flags_length[1:], "big")
        if length < 8 or start + length > end:
            return
        yield code, start + 8, start + length
        start += (length + 3) & ~3


def test_nesting_lands_inside_the_groups_readers_open(fuzzer: fuzz.Fuzzer) -> None:
    """Some chains sit in SIP-Authenticate, two groups down in an MAA, where decode_maa reads."""
    depths = []
    for raw in _generated(fuzzer, "maa", "nest", 300):
        for code, start, end in _members(raw, 20, len(raw)):
            for inner, istart, iend in _members(raw, start, end) if code == 376 else ():
                if inner == 379:
                    depths.append(fuzz.nesting_depth(raw[istart:iend], 0))
    assert max(depths) > base.MAX_DEPTH


def _vendor_members(raw: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(code, vendor, payload start, payload end) of each AVP of one level, vendor AVPs too."""
    while start + 8 <= end:
        code, flags = int.from_bytes(raw[start : start + 4], "big"), raw[start + 4]
        length = int.from_bytes(raw[start + 5 : start + 8], "big")
        head = 12 if flags & base.AVP_FLAG_VENDOR else 8
        if length < head or start + length > end:
            return
        vendor = int.from_bytes(raw[start + 8 : start + 12], "big") if head == 12 else 0
        yield code, vendor, start + head, start + length
        start += (length + 3) & ~3


def test_nesting_lands_inside_the_vendor_groups_cx_readers_open(fuzzer: fuzz.Fuzzer) -> None:
    """Some chains sit in 3GPP's SIP-Digest-Authenticate (635), two vendor groups down in a Cx MAA."""
    depths = []
    for raw in _generated(fuzzer, "cx-maa", "nest", 300):
        for code, vendor, start, end in _vendor_members(raw, 20, len(raw)):
            if (code, vendor) == (612, 10415):
                for inner, inner_vendor, istart, iend in _vendor_members(raw, start, end):
                    if (inner, inner_vendor) == (635, 10415):
                        depths.append(fuzz.nesting_depth(raw[istart:iend], 0))
    assert max(depths) > base.MAX_DEPTH


def test_oversize_reaches_the_frame_limit_and_the_24_bit_lengths(fuzzer: fuzz.Fuzzer) -> None:
    raws = _generated(fuzzer, "server-open", "oversize", 400)
    sizes = {len(raw) for raw in raws}
    announced = {int.from_bytes(raw[1:4], "big") for raw in raws if len(raw) >= 4}
    assert MAX_MESSAGE in sizes
    assert any(s > MAX_MESSAGE for s in sizes)
    assert any(a >= 0xFFFFF0 for a in announced)


def test_mutation_lies_about_lengths(fuzzer: fuzz.Fuzzer) -> None:
    raws = _generated(fuzzer, "maa", "mutate", 300)
    lying = [raw for raw in raws if len(raw) >= 4 and int.from_bytes(raw[1:4], "big") != len(raw)]
    honest = [raw for raw in raws if len(raw) >= 4 and int.from_bytes(raw[1:4], "big") == len(raw)]
    assert len(lying) > 30 and len(honest) > 30


def test_a_failure_comes_with_the_case_that_replays_it(fuzzer: fuzz.Fuzzer) -> None:
    def fragile(world: fuzz.World, data: bytes, rng: random.Random) -> str:
        if len(data) > 1000:
            raise KeyError("too long")
        return "fine"

    target = fuzz.Target("fragile", fuzz.World.maas, fragile)
    r = fuzzer.run(target, 7, 200)
    assert set(r.failure_kinds) == {f"KeyError at test_fuzz.py:{fragile.__code__.co_firstlineno + 2} in fragile"}
    failure = r.failures[0]
    assert failure.replay() == f"python -m tests.fuzz --target fragile --seed 7 --case {failure.case}"
    assert fuzzer.case(target, 7, failure.case)[1] == failure.data
    assert "KeyError: 'too long'" in failure.traceback


@pytest.mark.parametrize(
    ("header", "bad"),
    [
        ('WWW-Authenticate: Digest realm="a\x01"\r\n', True),
        ('Proxy-Authenticate: Digest realm="a\x7f"\r\n', True),
        ('WWW-Authenticate: Digest realm="a"\r\nX: 1\r\n', True),
        ('WWW-Authenticate: Digest realm="a"', True),
        ('WWW-Authenticate: Digest realm="a",\tnonce="é"\r\n', False),
    ],
)
def test_header_check_refuses_control_characters(header: str, bad: bool) -> None:
    decided = Outcome(401, "Unauthorized", -5, header)
    if bad:
        with pytest.raises(fuzz.HeaderProblem):
            fuzz.check_outcome(decided)
    else:
        fuzz.check_outcome(decided)


def test_frame_check_refuses_what_a_peer_would_not_read() -> None:
    good = base.pack_message(0, 280, 0, 1, 2, b"")
    fuzz.check_frame(good)
    for bad in (good[:-1], b"\x02" + good[1:], good + b"\0\0\0\0", base.pack_message(0, 1, 0, 1, 2, bytes(65520))):
        with pytest.raises(fuzz.ContractBroken):
            fuzz.check_frame(bad)


def test_command_line_runs_targets_and_replays_a_case(capsys: pytest.CaptureFixture[str]) -> None:
    assert fuzz.main(["--inputs", "20", "--target", "maa", "--target", "saa"]) == 0
    out = capsys.readouterr().out
    assert "maa" in out and "saa" in out and "total 20 inputs" in out
    assert fuzz.main(["--target", "maa", "--seed", "3", "--case", "5"]) == 0
    assert "maa seed 3 case 5:" in capsys.readouterr().out
