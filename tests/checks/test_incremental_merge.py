"""Units.update merges only the re-judged units' findings into the last evaluation (issue 14: the per-event merge of
every finding was a floor of each event's cost) and falls back to merging everything whenever the result could
depend on merge order: a key two units produce, two findings tied in the sort, waivers (their expiry moves with
the snapshot's time). The random-event differential test (test_incremental.py) holds the result to a full
evaluation; these prove the cheap path is taken and that its fallbacks trigger.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tenant_catalog import TENANTS

from plmon.checks.engine import Evaluation, evaluate
from plmon.checks.finding import Finding, Severity
from plmon.checks.incremental import Units
from plmon.checks.units import context_changed
from plmon.monitor.collect.builder import link, relink
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.service.reevaluate import reread_into

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _finding(check: str, rid: str, severity: Severity = Severity.HIGH) -> Finding:
    return Finding(check, rid, severity, "t", "m", None, {}, "r")


def _primed(*found: Finding) -> Units:
    units = Units()
    units.merged = {f.key: f for f in found}
    units.order = sorted((((-f.severity.rank, f.check_id, f.resource_id.lower())), f.key) for f in found)
    return units


def test_a_moved_unit_is_merged_in_place() -> None:
    a, b, c = _finding("x", "/s/a"), _finding("x", "/s/b"), _finding("y", "/s/c", Severity.LOW)
    units = _primed(a, b, c)
    b2 = _finding("x", "/s/b", Severity.CRITICAL)
    assert units._merge([([(b.key, b)], [(b2.key, b2)])])
    assert [units.merged[k] for _, k in units.order] == [b2, a, c]  # type: ignore[index]


def test_a_key_two_units_produce_merges_everything() -> None:
    a, b = _finding("x", "/s/a"), _finding("x", "/s/b")
    assert not _primed(a, b)._merge([([], [(a.key, _finding("x", "/s/a"))])])      # a second producer of a's key
    assert not _primed(a, b)._merge([([], [(("x", "/s/a/"), _finding("x", "/S/A"))])])   # ties with a in the order
    assert not _primed(a, b)._merge([([(a.key, _finding("x", "/s/a"))], [])])   # not the finding it holds


def _flip(item: dict[str, Any]) -> bool:
    conns = (item.get("properties") or {}).get("privateLinkServiceConnections") or []
    if not conns:
        return False
    st = conns[0]["properties"].setdefault("privateLinkServiceConnectionState", {})
    st["status"] = "Rejected" if st.get("status") != "Rejected" else "Approved"
    return True


def _shown(ev: Evaluation) -> list[dict[str, Any]]:
    return [f.to_dict() for f in ev.findings]


@pytest.mark.parametrize("name", sorted(TENANTS))
def test_endpoint_events_take_the_cheap_merge_and_equal_a_full_evaluation(name: str, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "work"
    shutil.copytree(TENANTS[name](tmp_path / "built"), folder)
    reader = RecordedTenant(folder)
    inv = collect(reader, manifest=reader.manifest, workers=1)
    snap, links = link(inv, taken_at=AT)
    units = Units()
    units.full(snap)
    if units.merged is None:
        pytest.skip("this tenant's findings tie or repeat: every event merges everything")
    whole: list[int] = []
    merge_all = Units._merge_all
    monkeypatch.setattr(Units, "_merge_all", lambda self, *a: whole.append(1) or merge_all(self, *a))
    events = 0
    for path in sorted((folder / "arm").rglob("*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        items = body.get("value") if isinstance(body, dict) else None
        if not isinstance(items, list) or not any(isinstance(i, dict) and "privateEndpoints/" in str(i.get("id"))
                                                   and _flip(i) for i in items[:1]):
            continue
        path.write_text(json.dumps(body), encoding="utf-8")
        inv, result = reread_into(reader, inv, [parse_id(items[0]["id"])])
        new, links = relink(snap, links, inv, result.touched, taken_at=AT)
        # An event that moves the coverage (a subscription no list covered, read for the first time) is re-judged
        # whole by design: it does not count for or against the cheap merge.
        counts = not context_changed(snap, new)
        before = len(whole)
        got, _ = units.update(snap, new)
        assert _shown(got) == _shown(evaluate(new))
        if not counts:
            del whole[before:]
        snap, events = new, events + counts
        if events == 4:
            break
    if not events:
        pytest.skip("no private endpoint with a connection whose event leaves the coverage as it was")
    assert len(whole) < events, "every event merged everything"


def test_the_findings_kept_in_order_follow_every_merge() -> None:
    """The findings list the evaluation copies stays the merged findings in the order's order after each merge."""
    a, b, c = _finding("x", "/s/a"), _finding("x", "/s/b"), _finding("y", "/s/c", Severity.LOW)
    units = _primed(a, b, c)
    b2, d = _finding("x", "/s/b", Severity.CRITICAL), _finding("z", "/s/d", Severity.MEDIUM)
    assert units._merge([([(b.key, b)], [(b2.key, b2)])])
    assert units._merge([([(c.key, c)], [(d.key, d)])])
    assert units.ordered == [units.merged[k] for _, k in units.order] == [b2, a, d]  # type: ignore[index]
