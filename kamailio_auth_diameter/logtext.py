"""Text that came from the network, made safe for one log line.

Peer-supplied strings reach our logs (a Diameter peer's Error-Message or Origin-Host,
a SIP header in an error): a CR or LF in them would forge log lines, an ESC would
drive the terminal of whoever reads the log, and a few kilobytes would flood it. So
whatever is not printable is written as an escape, and the line is cut short.
"""

from __future__ import annotations

MAX_LEN = 1000


def printable(text: str) -> str:
    """``text`` with every non-printable character (C0, DEL, C1, line and paragraph
    separators, bidi controls) escaped as ``\\xNN``/``\\uNNNN``, at most MAX_LEN long."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else _escape(c) for c in text)
    return text if len(text) <= MAX_LEN else text[:MAX_LEN] + "..."


def _escape(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"
