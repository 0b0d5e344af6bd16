"""server/throttle: how long responses go unchecked after wrong ones."""

from __future__ import annotations

import pytest

from kamailio_auth_diameter.server.throttle import ThrottlePolicy


def test_free_failures_then_doubling_to_the_ceiling() -> None:
    p = ThrottlePolicy(free=5, max_delay=60)
    assert [p.delay(n) for n in range(1, 14)] == [0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60]
    assert p.delay(10**9) == 60


def test_off() -> None:
    p = ThrottlePolicy(max_delay=0)
    assert not p.enabled and p.delay(1000) == 0


@pytest.mark.parametrize("kwargs", [{"free": -1}, {"max_delay": -1}, {"max_delay": 100, "forget_after": 50}])
def test_refused_policies(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ThrottlePolicy(**kwargs)  # type: ignore[arg-type]
