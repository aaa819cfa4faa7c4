"""The daemon's own CPU accounting (metrics.PhaseClock): which phase a stretch of work is charged to."""

from __future__ import annotations

from plmon.monitor.service.metrics import PHASES, PhaseClock


def _burn() -> None:
    x = 0
    for i in range(200_000):
        x += i


def test_nested_phases_charge_the_inner_one_only_and_outside_nothing():
    clock = PhaseClock()
    _burn()   # outside any phase: not charged
    assert clock.total == 0
    with clock.phase("intake"):
        with clock.phase("evaluate"):
            _burn()
        inner = clock.spent["evaluate"]
    assert inner > 0 and clock.spent["evaluate"] == inner   # the outer phase's time after it is the outer's
    assert clock.spent["intake"] < inner   # the outer phase did no work of its own: the inner's is not charged twice
    assert set(clock.spent) == set(PHASES)
    assert clock.total == sum(clock.spent.values())
