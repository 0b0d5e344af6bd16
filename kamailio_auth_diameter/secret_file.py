"""Files that hold secrets: who may read them, and how a new one is made.

The user database holds HA1 hashes (each as good as the password for digest
authentication) and the nonce secret; a TLS key, or a file with a database password,
is a secret outright. Like ssh with its keys, we refuse to use such a file when any
user of the machine may read or write it, and warn when its group may: a service
group that shares a key (``root:kamailio 0640``) is a common and deliberate setup,
a world-readable one never is.
"""

from __future__ import annotations

import os
import stat


class InsecureFile(Exception):
    """A secret file that other users of the machine can read or write; the message says how to fix it."""


def check(path: str, what: str) -> str | None:
    """None if only the owner (and root) can use ``path``, a warning if its group can;
    InsecureFile if anyone else can. ``what`` names the file in the messages (a setting
    or an option). A file that does not exist is not checked here: whoever opens it
    reports that."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXO):
        raise InsecureFile(
            f"{what} {path} is accessible to every user of this machine (mode {mode:04o}) and holds secrets: "
            f"chmod 600 {path}"
        )
    if mode & stat.S_IRWXG:
        return (
            f"{what} {path} is accessible to its group (mode {mode:04o}) and holds secrets; "
            f"chmod 600 {path} unless that group is meant to share it"
        )
    return None


def create_private(path: str) -> bool:
    """Create ``path`` empty with mode 0600 if it does not exist; True if it was created.

    Done before a program that would create it with the umask's mode (SQLite: 0644)
    opens it. A file that exists is left as it is (:func:`check` judges it).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True
