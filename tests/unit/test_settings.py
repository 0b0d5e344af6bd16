"""settings: defaults, bounds, types, and error messages that name the setting."""

from __future__ import annotations

import dataclasses

import pytest

from kamailio_auth_diameter import settings
from kamailio_auth_diameter.settings import Settings, SettingsError

BOUNDS = {
    "diameter_client_port": (1, 65535),
    "use_domain": (0, 1),
    "identity_check": (0, 1),
    "answer_timeout": (1, 60000),
    "connect_timeout": (1, 60000),
    "reconnect_interval": (0, 3600000),
    "failover_timeout": (1, 60000),
    "reconnect_max": (0, 3600000),
    "watchdog_interval": (6000, 3600000),
    "use_tls": (0, 1),
    "nonce_lifetime": (10, 86400),
    "ha1_cache_ttl": (0, 86400),
}
INT_NAMES = tuple(BOUNDS)


def test_defaults() -> None:
    assert settings.parse({}) == Settings(
        diameter_client_host="localhost",
        diameter_client_port=3000,
        use_domain=0,
        identity_check=1,
        answer_timeout=2000,
        connect_timeout=500,
        reconnect_interval=1000,
        protocol="legacy",
        peers="",
        origin_host="",
        origin_realm="",
        destination_realm="",
        failover_timeout=1000,
        reconnect_max=10000,
        watchdog_interval=30000,
        use_tls=0,
        tls_ca_file="",
        tls_cert_file="",
        tls_key_file="",
        nonce_secret_file="",
        nonce_lifetime=300,
        ha1_cache_ttl=600,
        digest_algorithms="MD5",
        nc_table="authdia_nc",
        ha1_table="authdia_ha1",
        server_name="",
    )


def test_none_means_default() -> None:
    assert settings.parse({name: None for name in settings.NAMES}) == settings.parse({})


def test_names_match_the_dataclass() -> None:
    assert settings.NAMES == tuple(f.name for f in dataclasses.fields(Settings))


def test_group_name() -> None:
    assert settings.GROUP == "auth_diameter"


@pytest.mark.parametrize("name", INT_NAMES)
def test_int_bounds_accepted(name: str) -> None:
    low, high = BOUNDS[name]
    assert getattr(settings.parse({name: low}), name) == low
    assert getattr(settings.parse({name: high}), name) == high


@pytest.mark.parametrize("name", INT_NAMES)
@pytest.mark.parametrize("side", ["low", "high"])
def test_int_out_of_bounds_names_the_setting(name: str, side: str) -> None:
    low, high = BOUNDS[name]
    value = low - 1 if side == "low" else high + 1
    with pytest.raises(SettingsError, match=rf"auth_diameter\.{name}\b"):
        settings.parse({name: value})


@pytest.mark.parametrize("name", INT_NAMES)
@pytest.mark.parametrize("value", [True, False, 1.0, 2.5, [], {}, b"1", object(), "abc", "", "1.5", "0x10"])
def test_int_type_errors_name_the_setting(name: str, value: object) -> None:
    with pytest.raises(SettingsError, match=rf"auth_diameter\.{name}\b"):
        settings.parse({name: value})


@pytest.mark.parametrize("name", INT_NAMES)
def test_int_from_string(name: str) -> None:
    low, _ = BOUNDS[name]
    assert getattr(settings.parse({name: str(low)}), name) == low


def test_port_from_string_with_spaces() -> None:
    assert settings.parse({"diameter_client_port": " 3001 "}).diameter_client_port == 3001


@pytest.mark.parametrize("value", [1, 0, True, 1.5, b"host", ["h"]])
def test_host_type_error_names_the_setting(value: object) -> None:
    with pytest.raises(SettingsError, match=r"auth_diameter\.diameter_client_host\b"):
        settings.parse({"diameter_client_host": value})


@pytest.mark.parametrize(
    "value", ["", " ", "\t\n", "local host", "a\tb", "host\0", "a/b", "http://x", "a\nb", "\u00a0"]
)
def test_bad_hosts_name_the_setting(value: str) -> None:
    with pytest.raises(SettingsError, match=r"auth_diameter\.diameter_client_host\b"):
        settings.parse({"diameter_client_host": value})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" 127.0.0.1 ", "127.0.0.1"),
        ("\tdisc.example.com\n", "disc.example.com"),
        ("::1", "::1"),
        ("localhost", "localhost"),
    ],
)
def test_host_surrounding_whitespace_is_stripped(value: str, expected: str) -> None:
    assert settings.parse({"diameter_client_host": value}).diameter_client_host == expected


def test_unknown_setting_is_named() -> None:
    with pytest.raises(SettingsError, match=r"auth_diameter\.diameter_client_prot: unknown setting"):
        settings.parse({"diameter_client_prot": 3000})


def test_unknown_setting_wins_over_valid_ones() -> None:
    with pytest.raises(SettingsError, match="unknown"):
        settings.parse({"use_domain": 1, "timeout": 5})


def test_all_set() -> None:
    s = settings.parse(
        {
            "diameter_client_host": "10.0.0.1",
            "diameter_client_port": "3868",
            "use_domain": 1,
            "identity_check": 0,
            "answer_timeout": 100,
            "connect_timeout": 50,
            "reconnect_interval": 0,
            "protocol": "rfc4740",
            "peers": "aaa1:3868,aaa2",
            "origin_host": "sip1.example.com",
            "origin_realm": "example.com",
            "destination_realm": "aaa.example.com",
            "failover_timeout": "80",
            "reconnect_max": 5000,
            "watchdog_interval": 6000,
            "use_tls": 1,
            "tls_ca_file": "/etc/ca.pem",
            "tls_cert_file": "/etc/c.pem",
            "tls_key_file": "/etc/k.pem",
            "nonce_secret_file": "/etc/nonce.key",
            "nonce_lifetime": 60,
            "ha1_cache_ttl": 0,
            "digest_algorithms": "md5",
            "nc_table": "nc",
            "ha1_table": "ha1",
            "server_name": "sip:scscf.example.com",
        }
    )
    assert s == Settings(
        "10.0.0.1",
        3868,
        1,
        0,
        100,
        50,
        0,
        "rfc4740",
        "aaa1:3868,aaa2",
        "sip1.example.com",
        "example.com",
        "aaa.example.com",
        80,
        5000,
        6000,
        1,
        "/etc/ca.pem",
        "/etc/c.pem",
        "/etc/k.pem",
        "/etc/nonce.key",
        60,
        0,
        "md5",
        "nc",
        "ha1",
        "sip:scscf.example.com",
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("digest_algorithms", "SHA1", "'SHA1' is not one of SHA-256, MD5"),
        ("digest_algorithms", "MD5,md5", "names an algorithm twice"),
        ("nc_table", "a b", "not an htable name"),
        ("server_name", 'sip:"x"', "a quote"),
    ],
)
def test_verify_in_proxy_settings_are_checked(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"auth_diameter.{name}: .*{message}"):
        settings.parse({name: value})


def test_settings_error_is_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


def test_settings_are_frozen() -> None:
    s = settings.parse({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.use_domain = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("protocol", "diameter"),
        ("peers", "a b"),
        ("peers", "aaa:70000"),
        ("peers", "aaa,aaa:3868"),
        ("peers", "[::1"),
        ("origin_host", "kam..example.com"),
        ("origin_realm", "-example.com"),
        ("destination_realm", "exa mple.com"),
        ("tls_ca_file", "a\0b"),
    ],
)
def test_bad_text_names_the_setting(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=rf"auth_diameter\.{name}\b"):
        settings.parse({name: value})


def test_peers_default_to_the_c_modules_host_and_port() -> None:
    s = settings.parse({"diameter_client_host": "aaa", "diameter_client_port": 3001})
    assert settings.peer_addresses(s) == (settings.PeerAddress("aaa", 3001),)


def test_peers_list_with_default_ports() -> None:
    s = settings.parse({"peers": " aaa1.example.com, [::1]:3870 ,10.0.0.1:3869"})
    assert [str(p) for p in settings.peer_addresses(s)] == ["aaa1.example.com:3868", "[::1]:3870", "10.0.0.1:3869"]
    tls = settings.parse({"peers": "aaa1.example.com", "use_tls": 1})
    assert settings.peer_addresses(tls) == (settings.PeerAddress("aaa1.example.com", 5658),)


def test_empty_identities_mean_derived() -> None:
    s = settings.parse({"origin_host": "", "protocol": "rfc4740", "origin_realm": "example.com"})
    assert (s.origin_host, s.origin_realm, s.protocol) == ("", "example.com", "rfc4740")
