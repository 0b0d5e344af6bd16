"""logtext: network text made safe for a log line."""

from __future__ import annotations

from kamailio_auth_diameter.logtext import MAX_LEN, printable


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
