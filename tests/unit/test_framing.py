"""wire/framing: whole messages out of a byte stream, hostile lengths refused."""

from __future__ import annotations

import pytest

from kamailio_auth_diameter.wire.framing import HEADER_LEN, MAX_MESSAGE, Framer, FramingError, frame_length


def frame(length: int, fill: int = 0xAB, version: int = 1) -> bytes:
    return bytes([version]) + length.to_bytes(3, "big") + bytes([fill]) * (length - 4)


def test_frame_length() -> None:
    assert frame_length(frame(20)[:4]) == 20
    assert frame_length(frame(MAX_MESSAGE)[:4]) == MAX_MESSAGE


@pytest.mark.parametrize("length", [0, 4, 19])
def test_too_short(length: int) -> None:
    with pytest.raises(FramingError):
        frame_length(bytes([1]) + length.to_bytes(3, "big"))


@pytest.mark.parametrize("length", [MAX_MESSAGE + 1, 0xFFFFFF])
def test_too_long(length: int) -> None:
    with pytest.raises(FramingError):
        frame_length(bytes([1]) + length.to_bytes(3, "big"))


@pytest.mark.parametrize("version", [0, 2, 0xFF])
def test_bad_version(version: int) -> None:
    with pytest.raises(FramingError):
        frame_length(bytes([version, 0, 0, 20]))


def test_constants() -> None:
    assert HEADER_LEN == 20
    assert MAX_MESSAGE == 65536


def test_byte_by_byte() -> None:
    framer = Framer()
    msg = frame(37)
    for i, b in enumerate(msg):
        assert framer.next_message() is None
        framer.feed(bytes([b]))
        if i < len(msg) - 1:
            assert framer.pending == i + 1
    assert framer.next_message() == msg
    assert framer.next_message() is None
    assert framer.pending == 0


def test_several_frames_in_one_chunk() -> None:
    a, b, c = frame(20, 1), frame(44, 2), frame(21, 3)
    framer = Framer()
    framer.feed(a + b + c[:10])
    assert framer.next_message() == a
    assert framer.next_message() == b
    assert framer.next_message() is None
    framer.feed(c[10:])
    assert framer.next_message() == c
    assert framer.next_message() is None


def test_split_across_header() -> None:
    framer = Framer()
    msg = frame(24)
    framer.feed(msg[:2])
    assert framer.next_message() is None
    framer.feed(msg[2:5])
    assert framer.next_message() is None
    framer.feed(msg[5:])
    assert framer.next_message() == msg


def test_largest_frame() -> None:
    framer = Framer()
    msg = frame(MAX_MESSAGE)
    framer.feed(msg)
    assert framer.next_message() == msg


@pytest.mark.parametrize(
    "bad",
    [frame(20)[:1] + (19).to_bytes(3, "big"), bytes([1]) + (MAX_MESSAGE + 1).to_bytes(3, "big"), frame(20, version=2)],
)
def test_framer_raises_on_hostile_header(bad: bytes) -> None:
    framer = Framer()
    framer.feed(bad[:4])
    with pytest.raises(FramingError):
        framer.next_message()


def test_hostile_frame_after_a_good_one() -> None:
    framer = Framer()
    good = frame(20)
    framer.feed(good + b"\x02\x00\x00\x14")
    assert framer.next_message() == good
    with pytest.raises(FramingError):
        framer.next_message()


def test_clear() -> None:
    framer = Framer()
    framer.feed(frame(30)[:10])
    framer.clear()
    assert framer.pending == 0
    framer.feed(frame(20))
    assert framer.next_message() == frame(20)


def test_returns_bytes() -> None:
    framer = Framer()
    framer.feed(bytearray(frame(20)))
    assert type(framer.next_message()) is bytes


def test_framing_error_is_value_error() -> None:
    assert issubclass(FramingError, ValueError)
