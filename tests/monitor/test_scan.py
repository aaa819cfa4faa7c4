"""run_scan: one definition of a scan, and the collector pause around its evaluation."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest

from plmon.monitor import scan
from plmon.monitor.collect.builder import paused_gc
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import parse_config

DEMO = Path(__file__).resolve().parents[2] / "monitor" / "demo_tenant"


def test_scan_evaluates_with_the_collector_paused_and_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks run with the cyclic GC off (its passes over the snapshot freed nothing and cost half the
    evaluation at 100k resources) and the GC is on again afterwards."""
    seen: list[bool] = []
    real = scan.evaluate

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(scan, "evaluate", spy)
    reader = RecordedTenant(DEMO)
    result = scan.run_scan(reader, parse_config({}), manifest=reader.manifest, workers=1)
    assert seen == [False]
    assert gc.isenabled()
    assert result.evaluation.findings


def test_paused_gc_nests_and_survives_an_error() -> None:
    """An inner pause leaves the collector off until the outer one ends; an error inside still restores it."""
    assert gc.isenabled()
    with paused_gc():
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), paused_gc():
        raise RuntimeError("boom")
    assert gc.isenabled()
