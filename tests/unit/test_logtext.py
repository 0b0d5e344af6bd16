"""logtext: network text made safe for a log line."""

from __future__ import annotations

import logging

from kamailio_auth_diameter.logtext import MAX_LEN, printable
from kamailio_auth_diameter.server.__main__ import _PrintableFormatter


def test_printable_text_is_unchanged() -> None:
    assert printable("peer refused our CER with Result-Code 3010 (unknown peer é)") == (
        "peer refused our CER with Result-Code 3010 (unknown peer é)"
    )


def test_controls_are_escaped() -> None:
    forged = "ok\nJan  1 00:00:00 host kamailio: auth ok\r\x1b[2J\x00\x7f\x85\u2028\u202e"
    out = printable(forged)
    assert out == "ok\\x0aJan  1 00:00:00 host kamailio: auth ok\\x0d\\x1b[2J\\x00\\x7f\\x85\\u2028\\u202e"
    assert out.isprintable()


def test_long_text_is_cut() -> None:
    out = printable("x" * 100_000)
    assert len(out) == MAX_LEN + 3 and out.endswith("...")


def test_the_server_log_keeps_one_record_on_one_line() -> None:
    """The reference server's log lines carry peer text too (a CER's Origin-Host)."""
    record = logging.LogRecord("s", logging.INFO, __file__, 1, "CER from %s accepted", ("w1.evil\nforged",), None)
    assert _PrintableFormatter("%(message)s").format(record) == "CER from w1.evil\\x0aforged accepted"
