"""One scan: collect -> build -> evaluate, and the scan JSON document of contracts.md.

The same function serves ``plmon scan``, ``plmon report``, the daemon's scheduled collection and the
Azure Function's timer, so there is one definition of what a scan is.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from plmon.checks.engine import CheckRun, CheckSettings, Evaluation, combine, planned, run_check
from plmon.checks.passed import PassedResult
from plmon.checks.waivers import Waiver
from plmon.monitor import __version__
from plmon.monitor.collect.builder import build_snapshot, paused_gc
from plmon.monitor.collect.plan import ArmReader, CollectionStats, collect, young_gc
from plmon.monitor.logs import get_logger
from plmon.monitor.model.arm_id import interning
from plmon.monitor.model.clock import Clock, WallClock, source_clock
from plmon.monitor.model.snapshot import CoverageGap, Snapshot

if TYPE_CHECKING:
    from plmon.monitor.config import Config

__all__ = ["DEFAULTS", "ScanConfig", "ScanResult", "evaluate_scan", "run_scan", "scan_document"]

log = get_logger(__name__)  # structlog is imported when a line is written (plmon.monitor.logs)


class ScanConfig(Protocol):
    """What a scan reads of its configuration: a :class:`~plmon.monitor.config.Config`, or :data:`DEFAULTS`."""

    def check_settings(self) -> dict[str, CheckSettings]: ...

    def waiver_list(self) -> tuple[Waiver, ...]: ...


class _Defaults:
    """What ``load_config(None)`` validates to, as far as a scan reads it: every check at its defaults, no waiver.

    A command run without ``--config`` uses this instead, so it never imports the validator (pydantic: ~0.1 s of
    every ``plmon scan``'s start-up) to check an empty file that cannot be wrong (tests/monitor/test_scan.py
    holds the two equal)."""

    def check_settings(self) -> dict[str, CheckSettings]:
        return {}

    def waiver_list(self) -> tuple[Waiver, ...]:
        return ()


DEFAULTS: ScanConfig = _Defaults()


@dataclass(frozen=True)
class ScanResult:
    snapshot: Snapshot
    evaluation: Evaluation
    stats: CollectionStats
    clock: Clock = field(default_factory=WallClock)  # the source's: snapshot.taken_at is its "now"
    # Each (check, resource) evaluated and found compliant: only when asked for (--include-passed), since it judges
    # the per-subject checks again on a recording view (plmon.checks.passed); None = not asked.
    passed: tuple[PassedResult, ...] | None = None

    @property
    def gaps(self) -> tuple[CoverageGap, ...]:
        return self.snapshot.coverage.gaps + self.evaluation.check_errors


def run_scan(reader: ArmReader, config: Config | ScanConfig, *, manifest: dict[str, Any] | None = None,
             subscriptions: Iterable[str] | None = None, workers: int | None = None,
             observations: Callable[[Snapshot], Snapshot] | None = None,
             on_progress: Callable[[str], None] | None = None,
             taken_at: datetime | None = None, clock: Clock | None = None,
             after_collect: Callable[[], None] | None = None) -> ScanResult:
    """Collect through ``reader`` and evaluate every enabled check.

    ``observations`` lets the caller (the state store) attach what it has seen before, such as when
    each connection was first Pending, before the pure checks run. ``clock`` is the source's
    (:mod:`plmon.monitor.model.clock`; by default the one ``manifest`` implies): the snapshot is taken at its "now",
    so observations, the lifecycle and every age of this scan are on it. ``after_collect`` runs once the
    collection is read, before the build: a one-shot caller lets its reader's caches go there, so the evaluation's
    peak of memory does not sit on top of them.
    """
    clock = clock or source_clock(manifest)
    # One interning scope over collection and build: the collection parses most of the ids the build meets
    # again (266k parses at 100k resources), and the reads that run on this thread share the build's table.
    # The cyclic GC waits for the build and the evaluation, and for a collection on this one thread (a recorded
    # folder): its passes over a heap of parsed JSON found nothing to free and were half of that collection's
    # CPU at 100k resources (8.7 -> 4.5 s). A concurrent (live) collection keeps its young passes (young_gc): its
    # requests wait on the network and leave the SDK's cyclic garbage behind.
    with paused_gc():
        with interning():
            with paused_gc() if workers == 1 else young_gc():
                inv = collect(reader, subscriptions=subscriptions, manifest=manifest, workers=workers,
                              on_progress=on_progress)
            if after_collect is not None:
                after_collect()
            snapshot = build_snapshot(inv, taken_at=taken_at or clock.now())
        stats = inv.stats
        del inv  # the raw JSON is freed before the evaluation allocates its paths
        if observations is not None:
            snapshot = observations(snapshot)
        ev = evaluate_scan(snapshot, config.check_settings(), config.waiver_list())
    return ScanResult(snapshot, ev, stats, clock)


# The checks a forked evaluation hands to its child: the ones that walk the route engine's paths, which they build
# once per snapshot and share (at 100k resources about half the evaluation's CPU), so the two halves build no
# shared work twice. Every other check runs in the parent.
_FORKED_FAMILIES = ("route.", "vwan.")
# A fork copies the heap's page tables, then every page either process writes (reference counts): ~0.2 s of system
# time at 100k resources for ~0.5 s of evaluation moved to the other core. The size below which that stops paying
# was chosen, not measured: a 10k tenant's whole evaluation takes ~0.1 s.
_FORK_MIN_RESOURCES = 20_000
# How long the parent waits for the child after finishing its own checks: at least this, and at least a few times
# its own checks' time (the two halves are about even), so a very large tenant's child is not killed for being slow.
_CHILD_DEADLINE_S = 120.0
_CHILD_DEADLINE_FACTOR = 4.0


def evaluate_scan(snapshot: Snapshot, settings: dict[str, CheckSettings], waivers: tuple[Waiver, ...]) -> Evaluation:
    """:func:`~plmon.checks.engine.evaluate` of a one-shot scan, on two cores when it is worth it and safe.

    After the build the second core is idle (the read-ahead helper is gone) while the checks run for ~1.3 s at
    100k resources: a forked child runs the route checks while this process runs the others, and the child's runs
    come back pickled and combine in the checks' order, so the evaluation is the one a single process makes
    (tests/monitor/test_scan_fork.py). Only from a process with one thread (``plmon scan``/``report`` from the
    command line: a fork copies no other thread, and a lock one held would stay held in the child), on two usable
    CPUs, for a large snapshot. A child that fails, or sends nothing within its deadline, costs only time: its
    checks are run here instead."""
    checks = planned(settings)
    theirs = [c for c in checks if c.id.startswith(_FORKED_FAMILIES)]
    if not theirs or len(theirs) == len(checks) or not _may_fork(snapshot):
        return combine(snapshot, [run_check(snapshot, c, settings) for c in checks], waivers)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: its runs down the pipe, then leave without running the parent's exit handlers
        code = 1
        try:
            os.close(read_fd)
            data = pickle.dumps([run_check(snapshot, c, settings) for c in theirs], protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_fd, "wb") as out:
                out.write(data)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    started = time.monotonic()
    forked = {c.id for c in theirs}
    runs = {c.id: run_check(snapshot, c, settings) for c in checks if c.id not in forked}
    mine_s = time.monotonic() - started
    got = _child_runs(pid, read_fd, [c.id for c in theirs],
                      started + mine_s + max(_CHILD_DEADLINE_S, _CHILD_DEADLINE_FACTOR * mine_s))
    if got is None:
        log.warning("scan_evaluation_child_failed", checks=len(theirs))
        got = [run_check(snapshot, c, settings) for c in theirs]
    runs.update((r.check_id, r) for r in got)
    return combine(snapshot, [runs[c.id] for c in checks], waivers)


def _may_fork(snapshot: Snapshot) -> bool:
    if not hasattr(os, "fork") or threading.active_count() > 1 or \
            snapshot.resources_evaluated() < _FORK_MIN_RESOURCES:
        return False
    # ahead loads msgspec: imported only for a scan this large
    from plmon.monitor.collect.ahead import usable_cpus

    return usable_cpus() >= 2


def _child_runs(pid: int, fd: int, ids: list[str], deadline: float) -> list[CheckRun] | None:
    """The child's runs of the checks ``ids``, in that order; None if it failed, sent something else, or did not
    finish by ``deadline`` (then it is killed)."""
    chunks: list[bytes] = []
    ok = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                ok = True
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
        if not ok:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        status = os.waitpid(pid, 0)[1]
    if not ok or status != 0:
        return None
    try:
        runs = pickle.loads(b"".join(chunks))
    except Exception:
        return None
    if not isinstance(runs, list) or [getattr(r, "check_id", None) for r in runs] != ids or \
            not all(isinstance(r, CheckRun) for r in runs):
        return None
    return runs


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def scan_document(result: ScanResult) -> dict[str, Any]:
    """The ``scan --format json`` document, exactly as contracts.md specifies."""
    snap, ev = result.snapshot, result.evaluation
    by_sev = Counter(f.severity.value for f in ev.findings)
    return {
        "tool": {"name": "plmon", "version": __version__},
        "scanned_at": _iso(snap.taken_at),
        "tenant_id": snap.tenant_id,
        "findings": [f.to_dict() for f in ev.findings],
        "waived": [w.to_dict() for w in ev.waived],
        "coverage": {"subscriptions_scanned": snap.coverage.subscriptions_scanned,
                     "gaps": [g.as_dict() for g in result.gaps]},
        "summary": {"by_severity": dict(sorted(by_sev.items(), key=lambda kv: kv[0])),
                    "by_check": dict(sorted(Counter(f.check_id for f in ev.findings).items())),
                    "resources_evaluated": snap.resources_evaluated(),
                    "checks_run": len(ev.checks_run)},
        **({"passed": [p.to_dict() for p in result.passed]} if result.passed is not None else {}),
    }
