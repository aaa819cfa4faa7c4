"""One scan: collect -> build -> evaluate, and the scan JSON document of contracts.md.

The same function serves ``plmon scan``, ``plmon report``, the daemon's scheduled collection and the
Azure Function's timer, so there is one definition of what a scan is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from plmon.checks.engine import CheckSettings, Evaluation, evaluate
from plmon.checks.passed import PassedResult
from plmon.checks.waivers import Waiver
from plmon.monitor import __version__
from plmon.monitor.collect.builder import build_snapshot, paused_gc
from plmon.monitor.collect.plan import ArmReader, CollectionStats, collect, young_gc
from plmon.monitor.model.arm_id import interning
from plmon.monitor.model.clock import Clock, WallClock, source_clock
from plmon.monitor.model.snapshot import CoverageGap, Snapshot

if TYPE_CHECKING:
    from plmon.monitor.config import Config

__all__ = ["DEFAULTS", "ScanConfig", "ScanResult", "run_scan", "scan_document"]


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
        ev = evaluate(snapshot, config.check_settings(), config.waiver_list())
    return ScanResult(snapshot, ev, stats, clock)


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
