"""The TLS client context for Diameter peers (RFC 6733 §2.1: TLS first, then CER, port 5658).

Built from the tls_* settings; any file that cannot be used raises SettingsError
naming its setting, at start-up as well as when an operator changes one.
"""

from __future__ import annotations

import ssl

from ..settings import GROUP, Settings, SettingsError


def client_context(s: Settings) -> ssl.SSLContext:
    """TLS 1.2 or later, the peer's certificate verified against tls_ca_file (or the
    system store) and its name checked against the host named in ``peers``."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if s.tls_ca_file:
        try:
            ctx.load_verify_locations(cafile=s.tls_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise SettingsError(f"{GROUP}.tls_ca_file: cannot load {s.tls_ca_file!r}: {exc}") from None
    if s.tls_cert_file:
        try:
            ctx.load_cert_chain(s.tls_cert_file, s.tls_key_file or None)
        except (OSError, ssl.SSLError) as exc:
            name = "tls_key_file" if s.tls_key_file and "key" in str(exc).lower() else "tls_cert_file"
            files = f"{s.tls_cert_file!r} / {s.tls_key_file!r}"
            raise SettingsError(f"{GROUP}.{name}: cannot load {files}: {exc}") from None
    elif s.tls_key_file:
        raise SettingsError(f"{GROUP}.tls_key_file: set, but tls_cert_file is empty")
    return ctx
