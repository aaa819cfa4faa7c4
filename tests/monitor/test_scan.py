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


def _collector_state_during(monkeypatch: pytest.MonkeyPatch, step: str, *,
                            workers: int | None) -> tuple[list[bool], scan.ScanResult]:
    """Whether the cyclic GC was on each time run_scan called ``step`` (``collect`` or ``evaluate_scan``)."""
    seen: list[bool] = []
    real = getattr(scan, step)

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(scan, step, spy)
    reader = RecordedTenant(DEMO)
    return seen, scan.run_scan(reader, parse_config({}), manifest=reader.manifest, workers=workers)


def test_scan_evaluates_with_the_collector_paused_and_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks run with the cyclic GC off (its passes over the snapshot freed nothing and cost half the
    evaluation at 100k resources) and the GC is on again afterwards."""
    seen, result = _collector_state_during(monkeypatch, "evaluate_scan", workers=1)
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


def test_a_recorded_folder_is_read_on_one_thread_unless_workers_says_otherwise() -> None:
    """Proves: open_source gives a --from folder one reader thread by default (a local folder has no latency to
    hide; threads only contend for the GIL), keeps an explicit --workers, and the scan is the same either way."""
    from plmon.monitor.collect.sources import open_source

    with open_source(DEMO) as one, open_source(DEMO, workers=6) as six:
        assert one.workers == 1 and six.workers == 6
        first = scan.run_scan(one.reader, parse_config({}), manifest=one.manifest, workers=one.workers)
        second = scan.run_scan(six.reader, parse_config({}), manifest=six.manifest, workers=six.workers)
    assert first.stats.workers == 1 and second.stats.workers == 6
    assert [f.to_dict() for f in first.evaluation.findings] == [f.to_dict() for f in second.evaluation.findings]


@pytest.mark.parametrize(("workers", "collector_during_collection"), [(1, False), (4, True), (None, True)])
def test_collector_paused_for_a_one_thread_collection_only(monkeypatch: pytest.MonkeyPatch, workers: int | None,
                                                           collector_during_collection: bool) -> None:
    """Proves: a collection on the scan's own thread (a recorded folder) runs with the cyclic GC paused, while a
    concurrent (live) one keeps it, since its requests leave the SDK's cyclic garbage behind while they wait; the
    collector is back on after the scan either way."""
    seen, _ = _collector_state_during(monkeypatch, "collect", workers=workers)
    assert seen == [collector_during_collection]
    assert gc.isenabled()


def test_a_concurrent_collection_defers_the_collectors_full_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proves: a live (concurrent) collection runs with the young passes only (a full pass stopped every worker for
    up to 0.3 s at 100 subscriptions), and the thresholds are back as they were after the scan."""
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []
    real = scan.collect

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.get_threshold())
        return real(*args, **kwargs)

    monkeypatch.setattr(scan, "collect", spy)
    reader = RecordedTenant(DEMO)
    scan.run_scan(reader, parse_config({}), manifest=reader.manifest, workers=4)
    assert seen[0][:2] == before[:2] and seen[0][2] > before[2]
    assert gc.get_threshold() == before


def test_defaults_are_what_no_config_file_validates_to() -> None:
    """scan.DEFAULTS (a scan without --config) gives the same check settings and waivers as load_config(None)."""
    from plmon.monitor.config import load_config

    config = load_config(None)
    assert scan.DEFAULTS.check_settings() == config.check_settings()
    assert scan.DEFAULTS.waiver_list() == config.waiver_list()


def test_a_scan_without_config_imports_no_validator() -> None:
    """`plmon scan --from DIR --format json` without --config imports neither pydantic, the config nor structlog."""
    import subprocess
    import sys

    code = ("import sys; from plmon.monitor.cli import main; sys.argv = ['plmon', 'scan', '--from', sys.argv[1], "
            "'--format', 'json']\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('pydantic', 'plmon.monitor.config', 'structlog', 'yaml') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code, str(DEMO)], capture_output=True, text=True, check=True)
    assert r.stdout.splitlines()[-1] == "[]"
