"""Run checks over a recorded tenant folder for tests: the real reader, plan, builder and engine."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tenantkit import write_tenant

from plmon.checks.engine import CheckSettings, Evaluation, evaluate
from plmon.monitor.collect.builder import build_snapshot
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.model.snapshot import Snapshot


def snapshot_of(folder: Path, files: dict[str, Any] | None = None, **kw: Any) -> Snapshot:
    """Write ``files`` as a tenant (when given) and build its snapshot through the real plan."""
    if files is not None:
        write_tenant(folder, files, **kw)
    reader = RecordedTenant(folder)
    return build_snapshot(collect(reader, manifest=reader.manifest, workers=2))


def with_observations(snap: Snapshot, seen: Mapping[tuple[str, str], datetime]) -> Snapshot:
    """The snapshot with the monitor's history attached, as the state store does."""
    return dataclasses.replace(snap, observations=MappingProxyType(dict(seen)))


def run(snap: Snapshot, check_id: str, **settings: Any) -> Evaluation:
    """Evaluate one check (with optional CheckSettings fields)."""
    conf = {check_id: CheckSettings(**settings)} if settings else {}
    return evaluate(snap, conf, (), only={check_id})


def subjects(ev: Evaluation, check_id: str | None = None) -> list[str]:
    """The lower-cased resource ids of the findings (of one check), sorted, duplicates kept."""
    return sorted(f.resource_id.lower() for f in ev.findings if check_id is None or f.check_id == check_id)
