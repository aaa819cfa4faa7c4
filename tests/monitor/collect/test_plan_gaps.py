"""A collection's coverage gaps come out in one order, the tenant's, whatever the order its reads failed in."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.replay.synth import SynthSpec, generate, write_tenant


class _Jittery:
    """The recorded reader, each read delayed a random moment, so parallel reads finish (and fail) in a new order."""

    def __init__(self, inner: RecordedTenant, seed: int) -> None:
        self.inner, self._random, self._lock = inner, random.Random(seed), threading.Lock()

    def get(self, path: str, *, kind: str = "") -> Any:
        with self._lock:
            pause = self._random.random() / 2000
        time.sleep(pause)
        return self.inner.get(path, kind=kind)


def test_gaps_are_sorted_and_the_same_for_one_worker_and_for_eight_in_any_finishing_order(tmp_path: Path) -> None:
    folder = tmp_path / "tenant"
    write_tenant(generate(SynthSpec(subscriptions=12, endpoints=200, seed=5, bad_share=0.5)), folder)
    reader = RecordedTenant(folder)
    alone = collect(reader, manifest=reader.manifest, workers=1).gaps
    assert len(alone) >= 3  # the synth tenant's unreadable targets: enough gaps for an order to matter
    assert alone == sorted(alone, key=lambda g: (g.scope.lower(), g.type.lower(), g.code, g.status or 0,
                                                  g.message or ""))
    assert collect(_Jittery(reader, 1), manifest=reader.manifest, workers=8).gaps == alone
