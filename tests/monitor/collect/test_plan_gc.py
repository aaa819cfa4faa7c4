"""young_gc: the collector's young passes only, for a concurrent (live) collection."""

from __future__ import annotations

import gc

import pytest

from plmon.monitor.collect.plan import young_gc


def test_young_gc_defers_full_passes_and_restores_the_collector() -> None:
    """Proves: inside young_gc the collector is on with its young thresholds kept and no full pass due, and on the
    way out (an error too) the thresholds and the on/off state are what they were."""
    before = gc.get_threshold()
    gc.disable()
    try:
        with young_gc():
            assert gc.isenabled()
            inside = gc.get_threshold()
            assert inside[:2] == before[:2] and inside[2] >= 2**31 - 1
        assert not gc.isenabled() and gc.get_threshold() == before
    finally:
        gc.enable()
    with pytest.raises(RuntimeError), young_gc():
        raise RuntimeError("boom")
    assert gc.isenabled() and gc.get_threshold() == before
