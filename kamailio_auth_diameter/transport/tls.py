"""The TLS client context for Diameter peers (RFC 6733 §2.1: TLS first, then CER, port 5658).

Built from the tls_* settings; any file that cannot be used raises SettingsError
naming its setting, at start-up as well as when an operator changes one. A CA file
replaces the system's CAs rather than joining them: an operator who names the one
private CA that signs the peers means no public CA to vouch for a Diameter server.
Our private key is a secret (:mod:`..secret_file`): a key file any user of the
machine may read is refused, one its group may read is used with a warning.
"""

from __future__ import annotations

import ssl

from ..secret_file import InsecureFile, check
from ..settings import GROUP, Settings, SettingsError


def client_context(s: Settings) -> ssl.SSLContext:
    """TLS 1.2 or later, the peer's certificate verified against tls_ca_file alone (or the
    system store when it is empty) and its name checked against the host named in ``peers``."""
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=s.tls_ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"{GROUP}.tls_ca_file: cannot load {s.tls_ca_file!r}: {exc}") from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # A peer that closes without a close_notify (a TLS 1.3 server refusing our certificate
    # after the handshake, a server that just exits) reads as an end of stream, "peer
    # closed the connection", as with Python 3.11, which sets this option by default.
    # Python 3.12+ does not: the read raises SSLEOFError, or BrokenPipeError when OpenSSL's
    # alert finds the socket closed. Diameter's own length fields already catch a
    # truncated message, the attack close_notify guards against.
    ctx.options |= ssl.OP_IGNORE_UNEXPECTED_EOF
    if s.tls_cert_file:
        key_file_warning(s)
        try:
            ctx.load_cert_chain(s.tls_cert_file, s.tls_key_file or None)
        except (OSError, ssl.SSLError) as exc:
            name = "tls_key_file" if s.tls_key_file and "key" in str(exc).lower() else "tls_cert_file"
            files = f"{s.tls_cert_file!r} / {s.tls_key_file!r}"
            raise SettingsError(f"{GROUP}.{name}: cannot load {files}: {exc}") from None
    elif s.tls_key_file:
        raise SettingsError(f"{GROUP}.tls_key_file: set, but tls_cert_file is empty")
    return ctx


def key_file_warning(s: Settings) -> str | None:
    """What to log about the file that holds our private key (tls_key_file, or
    tls_cert_file without it): a warning when its group may read it, else None.
    SettingsError, naming the setting, when any user may."""
    name = "tls_key_file" if s.tls_key_file else "tls_cert_file"
    path = s.tls_key_file or s.tls_cert_file
    if not path:
        return None
    try:
        return check(path, f"{GROUP}.{name}")
    except InsecureFile as exc:
        raise SettingsError(str(exc)) from None
