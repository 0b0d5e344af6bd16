"""The load-time check that Kamailio's Python runs on its own standard library."""

from __future__ import annotations

from pathlib import Path

from kamailio_auth_diameter.kamailio import interpreter

DEBIAN_LIB = "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"
DEBIAN_STDLIB = ["/usr/lib/python3.11", "/usr/lib/python3.11/lib-dynload"]
PYENV = "/root/.pyenv/versions/3.11.7"


def maps(*paths: str) -> str:
    """/proc/self/maps text mapping each path, among anonymous and other mappings."""
    lines = ["55d0c0a00000-55d0c0a2e000 r--p 00000000 08:01 1311 /usr/sbin/kamailio"]
    for i, path in enumerate(paths):
        lines.append(f"7f3a{i:04x}000-7f3a{i:04x}800 r-xp 00010000 08:01 {4000 + i} {path}")
    lines.append("7ffd5a1c3000-7ffd5a1e4000 rw-p 00000000 00:00 0                          [stack]")
    lines.append("7f3b00000000-7f3b00021000 rw-p 00000000 00:00 0 ")
    return "\n".join(lines) + "\n"


def test_install_prefix_finds_the_directory_above_lib():
    assert interpreter.install_prefix("/usr/lib/x86_64-linux-gnu") == "/usr"
    assert interpreter.install_prefix("/opt/python/lib64") == "/opt/python"
    assert interpreter.install_prefix(f"{PYENV}/lib/python3.11/lib-dynload") == PYENV
    assert interpreter.install_prefix("/srv/a/b/c/d") is None


def test_mapped_libpythons_reads_each_file_once():
    text = maps(DEBIAN_LIB, "/usr/lib/x86_64-linux-gnu/libc.so.6", DEBIAN_LIB, "/opt/my python/lib/libpython3.12.so")
    assert interpreter.mapped_libpythons(text) == [DEBIAN_LIB, "/opt/my python/lib/libpython3.12.so"]


def test_debian_python_on_its_own_stdlib_passes():
    assert interpreter.foreign_stdlib(maps(DEBIAN_LIB), DEBIAN_STDLIB, "/usr/bin/python3") is None


def test_pyenv_stdlib_under_debian_libpython_names_both_and_the_fix():
    stdlib = [f"{PYENV}/lib/python3.11", f"{PYENV}/lib/python3.11/lib-dynload"]
    message = interpreter.foreign_stdlib(maps(DEBIAN_LIB), stdlib, f"{PYENV}/bin/python3")
    assert message == (
        f"Kamailio's Python ({DEBIAN_LIB}) loaded another Python's standard library from {PYENV}/lib/python3.11"
        f" (the python3 first on PATH is {PYENV}/bin/python3); start Kamailio with /usr/bin first on PATH,"
        " as systemd does, and without PYTHONHOME"
    )
    assert "\n" not in message


def test_foreign_lib_dynload_alone_is_caught():
    stdlib = ["/usr/lib/python3.11", f"{PYENV}/lib/python3.11/lib-dynload"]
    message = interpreter.foreign_stdlib(maps(DEBIAN_LIB), stdlib, "")
    assert message is not None
    assert f"from {PYENV}/lib/python3.11/lib-dynload (the python3 first on PATH is unknown)" in message


def test_a_venv_first_on_path_uses_debian_stdlib_and_passes():
    """A venv from /usr/bin/python3 keeps /usr's stdlib; only sys.prefix would differ, and is not looked at."""
    assert interpreter.foreign_stdlib(maps(DEBIAN_LIB), DEBIAN_STDLIB, "/opt/venv/bin/python3") is None


def test_symlinked_lib_resolves_to_the_same_install(tmp_path: Path):
    """Merged /usr: with /bin first on PATH the stdlib is /lib/python3.11, a symlink into /usr/lib."""
    (tmp_path / "usr" / "lib" / "python3.11").mkdir(parents=True)
    (tmp_path / "usr" / "lib" / "x86_64-linux-gnu").mkdir()
    (tmp_path / "lib").symlink_to(tmp_path / "usr" / "lib")
    library = f"{tmp_path}/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"
    assert interpreter.foreign_stdlib(maps(library), [f"{tmp_path}/lib/python3.11"], "/bin/python3") is None
    assert interpreter.foreign_stdlib(maps(library), [f"{tmp_path}/other/lib/python3.11"], "x") is not None


def test_no_libpython_mapped_means_no_verdict():
    """A statically linked interpreter (as /usr/bin/python3 is) gives nothing to compare with."""
    libc = maps("/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert interpreter.foreign_stdlib(libc, [f"{PYENV}/lib/python3.11"], "") is None


def test_a_stdlib_outside_any_lib_dir_means_no_verdict():
    assert interpreter.foreign_stdlib(maps(DEBIAN_LIB), ["/srv/a/b/c/python3.11"], "") is None


def test_one_matching_libpython_among_several_is_enough():
    text = maps(f"{PYENV}/lib/libpython3.11.so.1.0", DEBIAN_LIB)
    assert interpreter.foreign_stdlib(text, DEBIAN_STDLIB, "") is None
