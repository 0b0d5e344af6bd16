"""Whether Kamailio's embedded Python runs on its own standard library.

Embedded CPython finds its prefix from the ``python3`` first on PATH: when that
program has ``lib/python3.11/os.py`` next to it (a pyenv or source build), the
embedded Debian libpython loads *that* build's standard library, and the load fails
much later with something like ``_ssl...: undefined symbol: _PyModule_Add``. The
libpython actually mapped into the process is the truth, so its prefix is compared
with where the standard library and its C extensions (lib-dynload) came from.
``_sysconfigdata`` cannot tell the two apart: it records only ``3.11``, not the
patch level.

Only ``os`` and ``sys`` are used: whatever else we would import may come from the
wrong standard library.
"""

import os
import sys

_LIB_DIRS = ("lib", "lib64")


def install_prefix(directory: str, levels: int = 3) -> str | None:
    """The directory above the nearest ``lib``/``lib64`` at most ``levels`` up, symlinks resolved.

    Resolving matters on merged-/usr Debian: with ``/bin`` first on PATH the stdlib
    is ``/lib/python3.11``, which is ``/usr/lib/python3.11``, the same install.
    """
    current = os.path.realpath(directory)
    for _ in range(levels):
        if os.path.basename(current) in _LIB_DIRS:
            return os.path.dirname(current)
        current = os.path.dirname(current)
    return None


def mapped_libpythons(maps: str) -> list[str]:
    """The libpython files mapped into the process, from the text of /proc/self/maps."""
    found: list[str] = []
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and os.path.basename(fields[5]).startswith("libpython3") and fields[5] not in found:
            found.append(fields[5])
    return found


def foreign_stdlib(maps: str, stdlib_dirs: list[str], executable: str) -> str | None:
    """Why the standard library is another Python's, or None when it is ours or we cannot tell.

    ``stdlib_dirs`` are where ``os`` and lib-dynload were found. No libpython mapped
    (a statically linked interpreter, as /usr/bin/python3 itself is) or an unusual
    layout means there is nothing to compare: a false alarm would stop Kamailio.
    """
    libraries: dict[str, str] = {}
    for lib in mapped_libpythons(maps):
        prefix = install_prefix(os.path.dirname(lib))
        if prefix is not None:
            libraries.setdefault(prefix, lib)
    if not libraries:
        return None
    for directory in stdlib_dirs:
        prefix = install_prefix(directory)
        if prefix is not None and prefix not in libraries:
            ours, library = next(iter(libraries.items()))
            return (
                f"Kamailio's Python ({library}) loaded another Python's standard library from {directory}"
                f" (the python3 first on PATH is {executable or 'unknown'}); start Kamailio with"
                f" {os.path.join(ours, 'bin')} first on PATH, as systemd does, and without PYTHONHOME"
            )
    return None


def check() -> str | None:
    """``foreign_stdlib`` for this process: one read of /proc/self/maps, once at load."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            maps = f.read()
    except OSError:
        return None
    stdlib_dirs = [p for p in sys.path if os.path.basename(p) == "lib-dynload"]
    os_file = getattr(os, "__file__", None)
    if os_file:
        stdlib_dirs.insert(0, os.path.dirname(os_file))
    return foreign_stdlib(maps, stdlib_dirs, sys.executable)
