"""``plmon what-if``: the findings a deployment would introduce and resolve, judged before it runs.

One collection (through :class:`~plmon.monitor.collect.whatif.CachingReader`) gives the "before" snapshot; the same
plan walked again through :class:`~plmon.monitor.collect.whatif.WhatIfReader` gives the "after" one, with what the
deployment changes applied to the raw answers and whatever else it needs read by id. Every check runs on both, with
the same settings and waivers; findings are compared by their identity (check id and subject, as the lifecycle keys
them), so a finding whose message or evidence changes is unchanged, not resolved and introduced again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from plmon.checks.engine import evaluate
from plmon.checks.finding import Finding
from plmon.monitor import __version__
from plmon.monitor.collect.builder import build_snapshot, paused_gc
from plmon.monitor.collect.plan import ArmReader, collect
from plmon.monitor.collect.whatif import CachingReader, Change, WhatIf, WhatIfReader
from plmon.monitor.model.arm_id import interning
from plmon.monitor.model.clock import Clock, source_clock
from plmon.monitor.model.snapshot import CoverageGap
from plmon.monitor.scan import ScanConfig, ScanResult

__all__ = ["WhatIfResult", "run_what_if", "what_if_document"]


@dataclass(frozen=True)
class WhatIfResult:
    before: ScanResult
    after: ScanResult                 # its coverage gaps include what the what-if could not apply
    introduced: tuple[Finding, ...]
    resolved: tuple[Finding, ...]
    unchanged: int
    applied: int
    ignored: tuple[Change, ...]
    unsupported: tuple[Change, ...]


def run_what_if(reader: ArmReader, config: ScanConfig, what_if: WhatIf, *, manifest: dict[str, Any] | None = None,
                subscriptions: Iterable[str] | None = None, workers: int | None = None,
                clock: Clock | None = None) -> WhatIfResult:
    """Collect once, judge the tenant as it is and as the deployment would leave it, and compare."""
    clock = clock or source_clock(manifest)
    taken_at = clock.now()
    cached = CachingReader(reader)
    subs = list(subscriptions) if subscriptions is not None else None
    settings, waivers = config.check_settings(), config.waiver_list()
    with paused_gc(), interning():
        inv = collect(cached, subscriptions=subs, manifest=manifest, workers=workers)
        before_snap = build_snapshot(inv, taken_at=taken_at)
        before = ScanResult(before_snap, evaluate(before_snap, settings, waivers), inv.stats, clock)
        overlay = WhatIfReader(cached, what_if)
        inv = collect(overlay, subscriptions=subs, manifest=manifest, workers=workers)
        gaps = [*what_if.problems, *_not_applied(overlay.unapplied()), *_unsupported(what_if.unsupported)]
        inv.gaps.extend(gaps)
        after_snap = build_snapshot(inv, taken_at=taken_at)
        after = ScanResult(after_snap, evaluate(after_snap, settings, waivers), inv.stats, clock)
    was = {f.key: f for f in before.evaluation.findings}
    now = {f.key: f for f in after.evaluation.findings}
    introduced = tuple(f for k, f in now.items() if k not in was)
    resolved = tuple(f for k, f in was.items() if k not in now)
    unapplied = {c.key for c in overlay.unapplied()}
    applied = sum(1 for c in what_if.applicable if c.key not in unapplied)
    return WhatIfResult(before, after, introduced, resolved, sum(1 for k in now if k in was), applied,
                        what_if.ignored, what_if.unsupported)


def _not_applied(changes: Iterable[Change]) -> list[CoverageGap]:
    return [CoverageGap(c.resource_id, "what-if", "WhatIfNotApplied", None,
                        f"{c.change_type} not applied: its subscription's list or its parent was not read")
            for c in changes]


def _unsupported(changes: Iterable[Change]) -> list[CoverageGap]:
    return [CoverageGap(c.resource_id, "what-if", "WhatIfUnsupported", None,
                        f"what-if could not predict this change: {c.unsupported_reason or 'no reason given'}")
            for c in changes]


def introduced_result(result: WhatIfResult) -> ScanResult:
    """The "after" scan with only the introduced findings: what SARIF annotates on a pull request."""
    ev = replace(result.after.evaluation, findings=result.introduced, waived=())
    return replace(result.after, evaluation=ev)


def what_if_document(result: WhatIfResult) -> dict[str, Any]:
    """The ``what-if --format json`` document, with exactly the keys of the issue's contract."""
    return {
        "tool": {"name": "plmon", "version": __version__},
        "introduced": [f.to_dict() for f in result.introduced],
        "resolved": [f.to_dict() for f in result.resolved],
        "unchanged": result.unchanged,
        "changes": {
            "applied": result.applied,
            "ignored": [{"resource_id": c.resource_id, "change_type": c.change_type} for c in result.ignored],
            "unsupported": [{"resource_id": c.resource_id, "reason": c.unsupported_reason or ""}
                            for c in result.unsupported],
        },
    }
