"""The SQLite store serialises each object once and writes a large finding read unchanged back as its own text."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from plmon.monitor.state import sqlite as sqlite_mod
from plmon.monitor.state.sqlite import SqliteStore
from plmon.monitor.state.store import ChangeSet, FindingRecord, FindingState, OutboxRow

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _rec(finding: dict[str, Any]) -> FindingRecord:
    return FindingRecord(check_id="c.big", resource_key="/subscriptions/s/x", resource_id="/SUBSCRIPTIONS/S/X",
                         state=FindingState.OPEN, severity="high", first_seen=T0, last_seen=T0, resolved_at=None,
                         last_alert_at=T0, seq=1, finding=finding, channels=("a", "b"))


def test_large_finding_resolved_is_written_back_without_serialising_it(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    big = {"evidence": {"paths": [f"10.0.{i // 250}.{i % 250} -> nva" for i in range(9000)], "nan": float("nan")}}
    store = SqliteStore(tmp_path / "s.db")
    store.apply(ChangeSet(findings=[(_rec(big), None)]))
    (old,) = store.findings(resource_keys=["/subscriptions/s/x"])
    assert json.dumps(old.finding, sort_keys=True) == json.dumps(big, sort_keys=True)  # NaN kept (json's fallback)
    calls: list[Any] = []
    real = sqlite_mod.json.dumps

    def counting(obj: Any, **kw: Any) -> str:
        calls.append(obj)
        return real(obj, **kw)

    monkeypatch.setattr(sqlite_mod.json, "dumps", counting)
    payload = {"kind": "resolved", "finding": {"x": 1}}
    rows = [OutboxRow(alert_id="a1", channel=ch, check_id="c.big", resource_key="/subscriptions/s/x", seq=2,
                      kind="resolved", created_at=T0, payload=payload, next_attempt_at=T0) for ch in ("a", "b")]
    resolved = replace(old, state=FindingState.RESOLVED, resolved_at=T0, seq=2, channels=())
    store.apply(ChangeSet(findings=[(resolved, 1)], outbox=rows))
    monkeypatch.undo()
    assert not any(isinstance(c, dict) and "evidence" in c for c in calls), "the finding was serialised again"
    assert sum(1 for c in calls if isinstance(c, dict) and c.get("kind") == "resolved") == 1
    (after,) = store.findings(resource_keys=["/subscriptions/s/x"])
    assert after.state == FindingState.RESOLVED
    assert json.dumps(after.finding, sort_keys=True) == json.dumps(big, sort_keys=True)
    assert [r.payload for r in store.outbox()] == [payload, payload]
