"""Fixtures shared by the unit tests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from fake_ksr import FakeKSR

from kamailio_auth_diameter.kamailio import cfgfile, plugin
from kamailio_auth_diameter.kamailio.plugin import AuthDiameter

Make = Callable[..., AuthDiameter]


class Clock:
    """A settable clock for code that takes ``clock=``: time moves only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Make:
    """make(ksr, settings) -> the plugin, built by create() with those settings declared in the cfg file."""

    def factory(ksr: FakeKSR, values: dict[str, object], file_values: dict[str, object] | None = None) -> AuthDiameter:
        lines = []
        for name, value in (values if file_values is None else file_values).items():
            literal = f'"{value}"' if isinstance(value, str) else str(value)
            lines.append(f'auth_diameter.{name} = {literal} desc "{name}"')
        path = tmp_path / "kamailio.cfg"
        path.write_text("#!KAMAILIO\n" + "\n".join(lines) + "\nrequest_route {\n}\n")
        monkeypatch.setattr(cfgfile, "read_own_command_line", lambda: ["kamailio", "-f", str(path), "-DD"])
        ksr.cfg = dict(values)
        return plugin.create(ksr)

    return factory


@pytest.fixture
def secret(tmp_path: Path) -> str:
    """A nonce secret file as the verifying modes require it: 96 random hex digits, mode 600."""
    path = tmp_path / "nonce.key"
    path.write_bytes(os.urandom(48).hex().encode())
    path.chmod(0o600)
    return str(path)
