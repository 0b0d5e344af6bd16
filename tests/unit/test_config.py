"""kamailio/config: settings read from Kamailio per request, validated once per change."""

from __future__ import annotations

import pytest
from fake_ksr import FakeKSR

from kamailio_auth_diameter import settings
from kamailio_auth_diameter.kamailio.cfgfile import UNRESOLVED, Declared
from kamailio_auth_diameter.kamailio.config import REFRESH_INTERVAL, CfgSettings
from kamailio_auth_diameter.settings import SettingsError


class Clock:
    """Each call is a new refresh interval later, unless ``step`` is changed."""

    def __init__(self, step: float = REFRESH_INTERVAL) -> None:
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def cfg_reads(ksr: FakeKSR) -> list[str]:
    return [c[1] for c in ksr.calls if c[0] == "pv.get" and str(c[1]).startswith("$sel(")]


def test_nothing_declared_gives_defaults_without_reading() -> None:
    ksr = FakeKSR({"use_domain": 1})
    cfg = CfgSettings(ksr, (), clock=Clock())
    assert cfg.refresh() == settings.parse({})
    assert cfg_reads(ksr) == []


def test_reads_only_declared_names() -> None:
    ksr = FakeKSR({"use_domain": 1, "diameter_client_port": 4000})
    cfg = CfgSettings(ksr, ("use_domain",), clock=Clock())
    s = cfg.refresh()
    assert s is not None
    assert (s.use_domain, s.diameter_client_port) == (1, 3000)
    assert cfg_reads(ksr) == ["$sel(cfg_get.auth_diameter.use_domain)"]


def test_change_is_validated_and_logged_once() -> None:
    ksr = FakeKSR({"diameter_client_port": 4000})
    cfg = CfgSettings(ksr, ("diameter_client_port",), clock=Clock())
    first = cfg.refresh()
    assert first is not None
    assert first.diameter_client_port == 4000
    assert cfg.refresh() is first  # unchanged values: same object, nothing re-parsed
    ksr.cfg["diameter_client_port"] = 4001
    second = cfg.refresh()
    assert second is not None
    assert second.diameter_client_port == 4001
    assert cfg.refresh() is second
    assert len([i for i in ksr.infos if "changed" in i]) == 1
    assert ksr.errors == []


def test_invalid_change_keeps_previous_and_logs_once() -> None:
    ksr = FakeKSR({"answer_timeout": 1500})
    cfg = CfgSettings(ksr, ("answer_timeout",), clock=Clock())
    good = cfg.refresh()
    ksr.cfg["answer_timeout"] = 0
    for _ in range(3):
        assert cfg.refresh() is good
    assert len(ksr.errors) == 1
    assert "auth_diameter.answer_timeout" in ksr.errors[0]
    ksr.cfg["answer_timeout"] = 1700
    s = cfg.refresh()
    assert s is not None
    assert s.answer_timeout == 1700


def test_never_valid_gives_none() -> None:
    ksr = FakeKSR({"diameter_client_host": "bad host"})
    cfg = CfgSettings(ksr, ("diameter_client_host",), clock=Clock())
    assert cfg.refresh() is None
    assert cfg.refresh() is None
    assert len(ksr.errors) == 1
    ksr.cfg["diameter_client_host"] = "127.0.0.1"
    s = cfg.refresh()
    assert s is not None
    assert s.diameter_client_host == "127.0.0.1"


def test_values_are_not_read_again_within_the_refresh_interval() -> None:
    ksr = FakeKSR({"diameter_client_port": 4000})
    clock = Clock(step=REFRESH_INTERVAL / 10)
    cfg = CfgSettings(ksr, ("diameter_client_port",), clock=clock)
    first = cfg.refresh()
    ksr.cfg["diameter_client_port"] = 4001
    for _ in range(5):
        assert cfg.refresh() is first
    assert len(cfg_reads(ksr)) == 1
    clock.step = REFRESH_INTERVAL
    second = cfg.refresh()
    assert second is not None and second.diameter_client_port == 4001
    assert len(cfg_reads(ksr)) == 2


def test_undeclared_read_as_none_means_default() -> None:
    ksr = FakeKSR({})
    cfg = CfgSettings(ksr, ("use_domain",), clock=Clock())
    assert cfg.refresh() == settings.parse({})


def test_at_startup_validates_literals() -> None:
    ksr = FakeKSR()
    cfg = CfgSettings.at_startup(ksr, Declared(values={"use_domain": 1, "diameter_client_port": UNRESOLVED}))
    ksr.cfg = {"use_domain": 1, "diameter_client_port": 4000}
    s = cfg.refresh()
    assert s is not None
    assert (s.use_domain, s.diameter_client_port) == (1, 4000)


@pytest.mark.parametrize(
    ("values", "name"),
    [({"use_domain": 5}, "use_domain"), ({"nope": 1}, "nope"), ({"diameter_client_host": ""}, "diameter_client_host")],
)
def test_at_startup_rejects_bad_literals(values: dict[str, object], name: str) -> None:
    with pytest.raises(SettingsError, match=rf"auth_diameter\.{name}\b"):
        CfgSettings.at_startup(FakeKSR(), Declared(values=values))
