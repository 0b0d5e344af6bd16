"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest


class Clock:
    """A settable clock for code that takes ``clock=``: time moves only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()
