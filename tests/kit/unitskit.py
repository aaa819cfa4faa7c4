"""A synth tenant evaluated under the daemon's units and changed one resource at a time on disk, each change
checked against a full evaluation: the route tests' shared harness (test_route_kept, test_route_grain)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from plmon.checks.engine import Evaluation, evaluate
from plmon.checks.incremental import Units
from plmon.monitor.collect.builder import link, relink
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.replay.synth import SynthSpec, generate, write_tenant
from plmon.monitor.service.reevaluate import reread_into

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def shown(ev: Evaluation) -> list[dict[str, Any]]:
    return [f.to_dict() for f in ev.findings]


class UnitsTenant:
    """A synth tenant under the daemon's units, changed one resource at a time on disk."""

    def __init__(self, folder: Path) -> None:
        # a hub firewall that leaves 150+ paths untranslated, and route tables bypassed (seed chosen for both)
        write_tenant(generate(SynthSpec(subscriptions=4, endpoints=80, seed=6, bad_share=0.3, hub_endpoints=6)),
                     folder)
        self.folder = folder
        self.reader = RecordedTenant(folder)
        self.inv = collect(self.reader, manifest=self.reader.manifest, workers=1)
        self.snap, self.links = link(self.inv, taken_at=AT)
        self.units = Units()
        assert shown(self.units.full(self.snap)) == shown(evaluate(self.snap))

    def event(self, path: Path, body: dict[str, Any], rid: str) -> None:
        path.write_text(json.dumps(body), encoding="utf-8")
        self.inv, result = reread_into(self.reader, self.inv, [parse_id(rid)])
        new, self.links = relink(self.snap, self.links, self.inv, result.touched, taken_at=AT)
        got, _report = self.units.update(self.snap, new, self.links.changed)
        assert shown(got) == shown(evaluate(new))
        self.snap = new
