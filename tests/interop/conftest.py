"""Interop tests: real Kamailio processes, with the C module and with our plugin.

Everything here needs kamailio, its auth_diameter and app_python3 modules and sipp;
the tests are skipped when any of them is missing.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for "from tests.harness import ..."

MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
HERE = Path(__file__).resolve().parent


def _missing() -> str | None:
    for tool in ("kamailio", "sipp"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    for module in ("auth_diameter.so", "app_python3.so"):
        if not (MODULES / module).exists():
            return f"{MODULES / module} is missing"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _missing()
    if reason is None:
        return
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.skip(reason=reason))
