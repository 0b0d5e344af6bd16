"""Every plugin setting: name, type, default, validation. One reader per source elsewhere.

In Kamailio the settings are custom cfg parameters of group ``auth_diameter``
(``auth_diameter.use_domain = 1 desc "..."``), so an operator can change them at
run time with cfg_rpc. Values arrive as str or int; anything missing takes its default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

GROUP = "auth_diameter"
_INTEGER = re.compile(r"[+-]?[0-9]+")
# A DiameterIdentity (RFC 6733 §4.3.1) is an FQDN; we accept its usual letters only.
_IDENTITY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*")
_PEER = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:/,\[\]]+))(?::(?P<port>[0-9]{1,5}))?")
PROTOCOLS = ("legacy", "rfc4740", "rfc4740-ha1", "cx")
ALGORITHMS = ("SHA-256", "MD5")  # what verify-in-proxy challenges may offer, RFC 8760 order
_TABLE = re.compile(r"[A-Za-z0-9_]{1,64}")
DIAMETER_PORT = 3868  # RFC 6733 §2.1: TCP
DIAMETER_TLS_PORT = 5658  # and TLS/TCP


class SettingsError(ValueError):
    """A setting has a value we refuse; the message names it."""


@dataclass(frozen=True, slots=True)
class Spec:
    """``kind`` is int, or for strings what the text must be: "host", "identity",
    "choice" (one of ``choices``), "peers" or "path"; an empty string means "not set"
    for the kinds that allow it (identity, peers, path)."""

    name: str
    kind: type | str
    default: object
    low: int = 0
    high: int = 0
    help: str = ""
    choices: tuple[str, ...] = ()


SPECS: tuple[Spec, ...] = (
    Spec("diameter_client_host", "host", "localhost", help="host name or address of the Diameter server (DISC client)"),
    Spec("diameter_client_port", int, 3000, 1, 65535, "TCP port of the Diameter server"),
    Spec("use_domain", int, 0, 0, 1, "1: diameter_is_user_in sends user@domain as User-Name"),
    Spec(
        "identity_check",
        int,
        1,
        0,
        1,
        "1: credentials must be the To user's (REGISTER) or the From user's (other requests), else 403; "
        "0: the C module's behaviour, any valid user may claim any identity",
    ),
    Spec("answer_timeout", int, 2000, 1, 60000, "ms from the start of a request to its answer, connect included"),
    Spec(
        "connect_timeout",
        int,
        500,
        1,
        60000,
        "ms allowed for a TCP connect to one address (capped by what is left of answer_timeout)",
    ),
    Spec(
        "reconnect_interval",
        int,
        1000,
        0,
        3600000,
        "ms after a failed connect (refused, timed out, no address, TLS or CER failure) during which requests "
        "fail at once with 500; a late answer does not count",
    ),
    Spec(
        "protocol",
        "choice",
        "legacy",
        help="legacy: the C module's DISC wire format; rfc4740: an RFC 6733 peer with the RFC 4740 SIP application; "
        "rfc4740-ha1 and cx: the proxy checks digests itself with HA1s fetched by RFC 4740 MAR (Digest-HA1) or "
        "3GPP Cx MAR (SIP-Digest-Authenticate)",
        choices=PROTOCOLS,
    ),
    Spec(
        "peers",
        "peers",
        "",
        help="rfc4740: host[:port] list, comma-separated (port 3868, or 5658 with use_tls); "
        "empty: diameter_client_host and diameter_client_port",
    ),
    Spec("origin_host", "identity", "", help="rfc4740: our Origin-Host; empty: this machine's FQDN"),
    Spec("origin_realm", "identity", "", help="rfc4740: our Origin-Realm; empty: origin_host without its first label"),
    Spec("destination_realm", "identity", "", help="rfc4740: Destination-Realm of requests; empty: origin_realm"),
    Spec(
        "failover_timeout",
        int,
        1000,
        1,
        60000,
        "rfc4740: ms one peer may take to answer before the request is re-sent to another (capped by answer_timeout)",
    ),
    Spec(
        "reconnect_max",
        int,
        10000,
        0,
        3600000,
        "rfc4740: ceiling of the doubling back-off after consecutive failed connects to a peer",
    ),
    Spec("watchdog_interval", int, 30000, 6000, 3600000, "rfc4740: Tw, ms of silence after which we send a DWR"),
    Spec("use_tls", int, 0, 0, 1, "rfc4740: 1 to speak TLS (before CER, RFC 6733) to every peer"),
    Spec("tls_ca_file", "path", "", help="rfc4740: CA certificates that sign the peers' certificates; empty: system"),
    Spec("tls_cert_file", "path", "", help="rfc4740: our client certificate (PEM), if the peers ask for one"),
    Spec("tls_key_file", "path", "", help="rfc4740: its private key (PEM); empty: in tls_cert_file"),
    Spec(
        "nonce_secret_file",
        "path",
        "",
        help="rfc4740-ha1, cx: file with the secret (at least 32 bytes, not readable by others) that signs our "
        "nonces; Kamailio hosts sharing it accept each other's nonces",
    ),
    Spec("nonce_lifetime", int, 300, 10, 86400, "rfc4740-ha1, cx: seconds a nonce of ours is valid"),
    Spec(
        "ha1_cache_ttl",
        int,
        600,
        0,
        86400,
        "rfc4740-ha1, cx: seconds an HA1 from the server answers without asking again; 0: ask for every response",
    ),
    Spec(
        "digest_algorithms",
        "algorithms",
        "MD5",
        help="rfc4740-ha1, cx: the algorithms challenges offer, one WWW-/Proxy-Authenticate each, in this order, "
        'e.g. "SHA-256,MD5" (RFC 8760) where every UA takes the first algorithm it knows; only those the server '
        "has an HA1 for once the user is known",
    ),
    Spec("nc_table", "table", "authdia_nc", help="rfc4740-ha1, cx: htable of each nonce's last nonce-count"),
    Spec("ha1_table", "table", "authdia_ha1", help="rfc4740-ha1, cx: htable caching the HA1s"),
    Spec("server_name", "text", "", help="cx: Server-Name of our MARs (a SIP URI); empty: sip:<origin_host>"),
)
NAMES = tuple(s.name for s in SPECS)


@dataclass(frozen=True, slots=True)
class Settings:
    """Field names and order match SPECS; defaults live only there (``parse({})``)."""

    diameter_client_host: str
    diameter_client_port: int
    use_domain: int
    identity_check: int
    answer_timeout: int
    connect_timeout: int
    reconnect_interval: int
    protocol: str
    peers: str
    origin_host: str
    origin_realm: str
    destination_realm: str
    failover_timeout: int
    reconnect_max: int
    watchdog_interval: int
    use_tls: int
    tls_ca_file: str
    tls_cert_file: str
    tls_key_file: str
    nonce_secret_file: str
    nonce_lifetime: int
    ha1_cache_ttl: int
    digest_algorithms: str
    nc_table: str
    ha1_table: str
    server_name: str


@dataclass(frozen=True, slots=True)
class PeerAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_peers(text: str, default_port: int, where: str = f"{GROUP}.peers") -> tuple[PeerAddress, ...]:
    """``"aaa1.example.com, [::1]:3869"`` -> addresses in order; duplicates are an error."""
    peers: list[PeerAddress] = []
    for item in text.split(","):
        item = item.strip()
        m = _PEER.fullmatch(item)
        if m is None:
            raise SettingsError(f"{where}: {item!r} is not host[:port] (IPv6 in brackets)")
        port = int(m["port"]) if m["port"] else default_port
        if not 1 <= port <= 65535:
            raise SettingsError(f"{where}: port {port} of {item!r} is outside 1..65535")
        peer = PeerAddress(m["v6"] or m["host"], port)
        if peer in peers:
            raise SettingsError(f"{where}: {peer} is listed twice")
        peers.append(peer)
    return tuple(peers)


def _text(spec: Spec, where: str, raw: str) -> str:
    value = raw.strip()
    if spec.kind == "host":
        if not value or any(c.isspace() or c in "/\0" for c in value):
            raise SettingsError(f"{where}: {raw!r} is not a host name or address")
    elif spec.kind == "choice":
        if value not in spec.choices:
            raise SettingsError(f"{where}: {raw!r} is not one of {', '.join(spec.choices)}")
    elif spec.kind == "identity":
        if value and not _IDENTITY.fullmatch(value):
            raise SettingsError(f"{where}: {raw!r} is not a DiameterIdentity (an FQDN such as sip1.example.com)")
    elif spec.kind == "peers":
        if value:
            parse_peers(value, DIAMETER_PORT, where)
    elif spec.kind == "algorithms":
        algorithms(value, where)
    elif spec.kind == "table":
        if not _TABLE.fullmatch(value):
            raise SettingsError(f"{where}: {raw!r} is not an htable name (letters, digits, _)")
    elif spec.kind == "text":
        if any(ord(c) < 0x20 or c in '"\\' for c in value):
            raise SettingsError(f"{where}: {raw!r} has a control character, a quote or a backslash")
    elif "\0" in value:
        raise SettingsError(f"{where}: {raw!r} is not a file name")
    return value


def _convert(spec: Spec, raw: object) -> object:
    where = f"{GROUP}.{spec.name}"
    if spec.kind is not int:
        if not isinstance(raw, str):
            raise SettingsError(f"{where}: expected a string, got {raw!r}")
        return _text(spec, where, raw)
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise SettingsError(f"{where}: expected an integer, got {raw!r}")
    if isinstance(raw, str) and not _INTEGER.fullmatch(raw.strip()):
        raise SettingsError(f"{where}: expected an integer, got {raw!r}")
    value = int(raw)
    if not spec.low <= value <= spec.high:
        raise SettingsError(f"{where}: {value} is outside {spec.low}..{spec.high}")
    return value


def parse(raw: Mapping[str, object]) -> Settings:
    """Validated settings from raw values; unknown names are an error, not a silent typo."""
    unknown = sorted(set(raw) - set(NAMES))
    if unknown:
        raise SettingsError(f"{GROUP}.{unknown[0]}: unknown setting (known: {', '.join(NAMES)})")
    values = {}
    for spec in SPECS:
        value = raw.get(spec.name)
        values[spec.name] = spec.default if value is None else _convert(spec, value)
    return Settings(**values)


def algorithms(text: str, where: str = f"{GROUP}.digest_algorithms") -> tuple[str, ...]:
    """``"SHA-256,MD5"`` -> ("SHA-256", "MD5"): known names, upper-cased, no repeats, at least one."""
    names = tuple(a.strip().upper() for a in text.split(","))
    for name in names:
        if name not in ALGORITHMS:
            raise SettingsError(f"{where}: {name!r} is not one of {', '.join(ALGORITHMS)}")
    if len(set(names)) != len(names):
        raise SettingsError(f"{where}: {text!r} names an algorithm twice")
    return names


def peer_addresses(s: Settings) -> tuple[PeerAddress, ...]:
    """The rfc4740 peers: ``peers``, or the C module's host and port when it is empty."""
    if not s.peers:
        return (PeerAddress(s.diameter_client_host, s.diameter_client_port),)
    return parse_peers(s.peers, DIAMETER_TLS_PORT if s.use_tls else DIAMETER_PORT)
