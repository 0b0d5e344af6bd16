"""A throwaway certificate authority for TLS tests, made with the openssl command line.

Each call makes a fresh CA, so a second call gives a CA the first one's peers do
not trust. The server certificate names localhost and 127.0.0.1 (subjectAltName),
which is what a client checks; the client certificate is a Diameter peer's, its
CN an Origin-Host and its subjectAltNames that host and each of its workers
(``*.`` that host), which the reference server checks a CER against. EC P-256
keys: generated in milliseconds, unlike RSA.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = "openssl"
DAYS = "2"
# The key identifiers too: strict X.509 verification (Python 3.13's default) wants them.
LEAF_EXTENSIONS = (
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature\n"
    "subjectKeyIdentifier=hash\n"
    "authorityKeyIdentifier=keyid:always\n"
)
SERVER_EXTENSIONS = LEAF_EXTENSIONS + "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
CLIENT_EXTENSIONS = LEAF_EXTENSIONS + "extendedKeyUsage=clientAuth\n"


@dataclass(frozen=True, slots=True)
class Pki:
    """PEM files: the CA's certificate and key, and a server's and a client's certificate and key."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path) -> None:
    r = subprocess.run([OPENSSL, *map(str, args)], capture_output=True, text=True, timeout=30, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed ({r.returncode}): {r.stderr}")


def _new_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)


def _issue(directory: Path, name: str, cn: str, extensions: str, ca_cert: Path, ca_key: Path) -> tuple[Path, Path]:
    key, csr, cert, ext = (directory / f"{name}.{suffix}" for suffix in ("key", "csr", "crt", "ext"))
    _new_key(key)
    _openssl("req", "-new", "-key", key, "-subj", f"/CN={cn}", "-out", csr)
    ext.write_text(extensions)
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-set_serial", str(secrets.randbits(63)),
        "-days", DAYS, "-sha256", "-extfile", ext, "-out", cert,
    )  # fmt: skip
    return cert, key


def make_pki(
    directory: Path,
    server_cn: str = "aaa.example.com",
    client_cn: str = "kamailio.example.com",
    ca_cn: str = "kamailio-auth-diameter test CA",
) -> Pki:
    """A new CA in ``directory`` (created if needed), and a server and a client certificate it signed."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    _new_key(ca_key)
    _openssl(
        "req", "-x509", "-new", "-key", ca_key, "-subj", f"/CN={ca_cn}", "-days", DAYS, "-sha256", "-out", ca_cert,
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    server_cert, server_key = _issue(directory, "server", server_cn, SERVER_EXTENSIONS, ca_cert, ca_key)
    # the reference server binds a CER's Origin-Host to these names: a Kamailio worker is w<rank>.<origin_host>
    client_names = f"subjectAltName=DNS:{client_cn},DNS:*.{client_cn}\n"
    client_cert, client_key = _issue(directory, "client", client_cn, CLIENT_EXTENSIONS + client_names, ca_cert, ca_key)
    return Pki(ca_cert, ca_key, server_cert, server_key, client_cert, client_key)
