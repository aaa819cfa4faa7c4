"""The daemon's own CPU accounting (metrics.PhaseClock): which phase a stretch of work is charged to."""

from __future__ import annotations

from plmon.monitor.service.metrics import PHASES, Metrics, PhaseClock


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


def test_a_step_observes_only_the_phases_it_entered_and_its_total():
    """A step that stopped after its intake (stale or irrelevant events) puts no zero into the other phases'
    histograms, which would pull their medians towards nothing."""
    metrics, clock = Metrics(), PhaseClock()
    with clock.phase("intake"):
        _burn()
    metrics.observe_step(clock)
    text = metrics.render().decode()
    assert 'plmon_reevaluation_cpu_seconds_count{phase="intake"} 1.0' in text
    assert 'plmon_reevaluation_cpu_seconds_count{phase="total"} 1.0' in text
    for phase in set(PHASES) - {"intake"}:
        assert f'plmon_reevaluation_cpu_seconds_count{{phase="{phase}"}}' not in text
    assert set(clock.spent) == set(PHASES)   # the step's own account (StepReport.cpu) still names every phase
