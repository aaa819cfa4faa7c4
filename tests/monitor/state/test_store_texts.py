"""The SQLite store serialises each object once and writes a large finding read unchanged back as its own text."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from plmon.monitor.state import sqlite as sqlite_mod
from plmon.monitor.state.sqlite import SqliteStore
from plmon.monitor.state.store import ChangeSet, FindingRecord, FindingState, JsonSafe, OutboxRow, same_json

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


def _big(n: int = 9000) -> dict[str, Any]:
    return {"evidence": {"paths": [f"10.0.{i // 250}.{i % 250} -> nva" for i in range(n)]}}


def test_large_finding_is_parsed_once_and_an_equal_one_neither_serialised_nor_rewritten(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An event's reads of a large finding this store wrote or read (its text unchanged) give the dict it knows, and
    writing back an equal finding (a reopen: equal evidence, a new dict) serialises nothing and keeps the row's text;
    a row another writer changed is parsed again."""
    store = SqliteStore(tmp_path / "s.db")
    first = _big()
    store.apply(ChangeSet(findings=[(_rec(first), None)]))
    loads: list[str] = []
    dumps: list[Any] = []
    real_loads, real_dumps = sqlite_mod.json.loads, sqlite_mod.json.dumps
    monkeypatch.setattr(sqlite_mod.json, "loads", lambda text, **kw: (loads.append(text), real_loads(text, **kw))[1])
    monkeypatch.setattr(sqlite_mod.json, "dumps", lambda obj, **kw: (dumps.append(obj), real_dumps(obj, **kw))[1])
    (old,) = store.findings(resource_keys=["/subscriptions/s/x"])
    assert old.finding is first and not [t for t in loads if len(t) > 1000]
    equal = _big()
    assert equal is not first
    store.apply(ChangeSet(findings=[(replace(old, seq=2, finding=equal), 1)]))
    assert not any(isinstance(c, dict) and "evidence" in c for c in dumps), "an equal finding was serialised"
    (again,) = store.findings(resource_keys=["/subscriptions/s/x"])
    assert again.seq == 2 and again.finding == first and not [t for t in loads if len(t) > 1000]
    monkeypatch.undo()
    other = SqliteStore(tmp_path / "s.db")   # another writer changes the evidence
    changed = _big(9001)
    other.apply(ChangeSet(findings=[(replace(again, seq=3, finding=changed), 2)]))
    (now,) = store.findings(resource_keys=["/subscriptions/s/x"])
    assert now.seq == 3 and now.finding == changed


def test_large_finding_text_is_kept_apart_so_a_state_change_leaves_it_and_prune_drops_it(tmp_path: Path) -> None:
    """A large finding's text lives in finding_texts: a resolve rewrites only its small findings row (same token), any
    reader (another process) sees the whole finding, and pruning the finding drops its text."""
    store = SqliteStore(tmp_path / "s.db")
    big = _big()
    store.apply(ChangeSet(findings=[(_rec(big), None)]))
    db = sqlite_mod.connect(str(tmp_path / "s.db"))
    token = db.execute("SELECT token FROM finding_texts").fetchone()[0]
    assert db.execute("SELECT finding FROM findings").fetchone()[0] == ""
    (old,) = store.findings(resource_keys=["/subscriptions/s/x"])
    store.apply(ChangeSet(findings=[(replace(old, state=FindingState.RESOLVED, resolved_at=T0, seq=2), 1)]))
    assert db.execute("SELECT token FROM finding_texts").fetchone()[0] == token
    (seen,) = SqliteStore(tmp_path / "s.db").findings()
    assert seen.state == FindingState.RESOLVED and seen.finding == big
    assert SqliteStore(tmp_path / "s.db").get_finding("c.big", "/subscriptions/s/x").finding == big  # type: ignore[union-attr]
    small = {"evidence": {"paths": ["one"]}}
    store.apply(ChangeSet(findings=[(replace(seen, seq=3, finding=small), 2)]))   # small again: its text inline
    assert db.execute("SELECT COUNT(*) FROM finding_texts").fetchone()[0] == 0
    store.apply(ChangeSet(findings=[(replace(seen, seq=4, finding=big), 3)]))
    assert db.execute("SELECT COUNT(*) FROM finding_texts").fetchone()[0] == 1
    assert store.prune(datetime(2027, 1, 1, tzinfo=UTC)) == 1
    assert db.execute("SELECT COUNT(*) FROM finding_texts").fetchone()[0] == 0


def test_a_json_safe_finding_is_written_by_orjson_and_reads_back_equal(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A JsonSafe finding is not serialised by json (orjson says it) and parses back to the same dict; one orjson
    refuses (an int beyond 64 bits) falls back to json."""
    store = SqliteStore(tmp_path / "s.db")
    calls: list[Any] = []
    real = sqlite_mod.json.dumps
    monkeypatch.setattr(sqlite_mod.json, "dumps", lambda obj, **kw: (calls.append(obj), real(obj, **kw))[1])
    safe = JsonSafe(_big())
    store.apply(ChangeSet(findings=[(_rec(safe), None)]))
    assert not any(isinstance(c, dict) and "evidence" in c for c in calls), "json serialised a JsonSafe finding"
    huge = JsonSafe({"evidence": {"n": 2 ** 70, "paths": _big()["evidence"]["paths"]}})
    store.apply(ChangeSet(findings=[(replace(_rec(huge), resource_key="/subscriptions/s/y"), None)]))
    assert any(isinstance(c, dict) and c.get("evidence", {}).get("n") == 2 ** 70 for c in calls)
    monkeypatch.undo()
    keys = ["/subscriptions/s/x", "/subscriptions/s/y"]
    got = {r.resource_key: r.finding for r in store.findings(resource_keys=keys)}
    assert got == {"/subscriptions/s/x": safe, "/subscriptions/s/y": huge}


def test_an_equal_large_finding_whose_numbers_changed_type_is_written_as_its_own_text(tmp_path: Path) -> None:
    """Evidence that changed only from 1 to 1.0 or True (equal by ==) gets its own text, not the known one's."""
    store = SqliteStore(tmp_path / "s.db")
    first = {"evidence": {"paths": [f"p{i}" for i in range(9000)], "n": 1}}
    store.apply(ChangeSet(findings=[(_rec(first), None)]))
    (old,) = store.findings(resource_keys=["/subscriptions/s/x"])
    seq = old.seq
    for value, text in ((1.0, '"n": 1.0'), (True, '"n": true'), (1, '"n": 1')):
        changed = {"evidence": {**first["evidence"], "n": value}}
        assert changed == first
        store.apply(ChangeSet(findings=[(replace(old, seq=seq + 1, finding=changed), seq)]))
        seq += 1
        (old,) = SqliteStore(tmp_path / "s.db").findings(resource_keys=["/subscriptions/s/x"])
        assert type(old.finding["evidence"]["n"]) is type(value) and text in json.dumps(old.finding)


def test_same_json_tells_apart_what_equal_values_would_write_differently() -> None:
    """1, 1.0 and True, 0.0 and -0.0 differ; dicts and read-only views of them are alike."""
    assert not same_json({"a": [1]}, {"a": [1.0]}) and not same_json({"a": [1]}, {"a": [True]})
    assert not same_json([0.0], [-0.0]) and not same_json({1: "x"}, {True: "x"})
    assert same_json({"a": (1, "x", None)}, {"a": (1, "x", None)})
    assert same_json(MappingProxyType({"a": {"b": 2.5}}), JsonSafe({"a": {"b": 2.5}}))
    assert not same_json({"a": 1}, {"a": 2}) and not same_json([1, 2], [1])


def test_a_json_safe_large_finding_equal_but_spelled_otherwise_gets_its_own_text(tmp_path: Path) -> None:
    """A finding marked JSON-safe (orjson text) that equals the known one by == but not in text (1 -> 1.0) is written
    as its own text; one spelled alike keeps the row's."""
    store = SqliteStore(tmp_path / "s.db")
    first = JsonSafe({"evidence": {"paths": [f"p{i}" for i in range(9000)], "n": 1}})
    store.apply(ChangeSet(findings=[(_rec(first), None)]))
    (old,) = store.findings(resource_keys=["/subscriptions/s/x"])
    store.apply(ChangeSet(findings=[(replace(old, seq=2, finding=JsonSafe({"evidence": {**first["evidence"]}})), 1)]))
    store.apply(ChangeSet(findings=[(replace(old, seq=3, finding=JsonSafe(
        {"evidence": {**first["evidence"], "n": 1.0}})), 2)]))
    (now,) = SqliteStore(tmp_path / "s.db").findings(resource_keys=["/subscriptions/s/x"])
    assert now.seq == 3 and type(now.finding["evidence"]["n"]) is float
