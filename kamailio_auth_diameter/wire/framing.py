"""Diameter stream framing (RFC 6733 §3): the 24-bit length in bytes 1..3, pure.

Shared by the legacy dialect and real Diameter, by the plugin's blocking
transport and by the asyncio server: feed bytes in, take whole messages out.
"""

from __future__ import annotations

HEADER_LEN = 20
MAX_MESSAGE = 65536  # the C module's MAX_AAA_MSG_SIZE; larger frames are hostile here


class FramingError(ValueError):
    """The stream cannot be a Diameter stream any more; the connection must be closed."""


def frame_length(header: bytes) -> int:
    """Length announced by a message header, validated against our limits."""
    if header[0] != 1:
        raise FramingError(f"unsupported Diameter version {header[0]}")
    length = int.from_bytes(header[1:4], "big")
    if not HEADER_LEN <= length <= MAX_MESSAGE:
        raise FramingError(f"message length {length} outside {HEADER_LEN}..{MAX_MESSAGE}")
    return length


class Framer:
    """Accumulates stream bytes and yields complete messages."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_message(self) -> bytes | None:
        """One whole message, or None until more bytes arrive."""
        if len(self._buf) < 4:
            return None
        length = frame_length(self._buf[:4])
        if len(self._buf) < length:
            return None
        msg = bytes(self._buf[:length])
        del self._buf[:length]
        return msg

    @property
    def pending(self) -> int:
        return len(self._buf)

    def clear(self) -> None:
        self._buf.clear()
