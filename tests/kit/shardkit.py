"""What the plan-phase and shard tests share: the tenants they run on and a reader that counts each path it is
asked for (thread-safe: shards read with several workers), so "every read made once" can be asserted."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

from plmon.monitor.collect.plan import ArmReader
from plmon.monitor.collect.segments import path_key
from plmon.monitor.replay.synth import SynthSpec, generate, write_tenant

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"demo": ROOT / "monitor" / "demo_tenant",
           "ms-examples": ROOT / "tests" / "fixtures" / "replay" / "ms-examples"}
SYNTH = SynthSpec(subscriptions=3, endpoints=60, seed=5, bad_share=0.3)


class Counting:
    """A reader that counts each path it was asked for."""

    def __init__(self, inner: ArmReader) -> None:
        self.inner = inner
        self.paths: Counter[str] = Counter()
        self._lock = threading.Lock()

    def get(self, path: str, *, kind: str) -> Any:
        with self._lock:
            self.paths[path_key(path)] += 1
        return self.inner.get(path, kind=kind)


def write_synth(out: Path) -> Path:
    """The small synthetic tenant (3 subscriptions, 60 endpoints) written to ``out``."""
    write_tenant(generate(SYNTH), out)
    return out


def tenant_folder(name: str, synth_folder: Path) -> Path:
    return synth_folder if name == "synth" else FOLDERS[name]
