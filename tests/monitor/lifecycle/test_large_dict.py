"""A large finding's dict made for an event (transitions.large_dict) is its to_dict(), and is marked JSON-safe only
when orjson would write it as json does."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from plmon.alerts.bounds import TEXT_MAX, bounded_finding
from plmon.alerts.outbox import alert_payload
from plmon.checks.finding import Finding, Severity
from plmon.monitor.lifecycle.transitions import LargeDicts, large_dict
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.state.sqlite import _dumps as stored_text
from plmon.monitor.state.store import FindingRecord, FindingState, JsonSafe

RID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/azureFirewalls/fw"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


class Colour(StrEnum):
    RED = "red"


def _finding(evidence: Any) -> Finding:
    return Finding("route.nva-missing-snat", RID, Severity.HIGH, "t", "m", "s", evidence, "az ...", None)


def _same(a: Any, b: Any) -> bool:
    """Equal values of equal types all the way down (json text compares NaN alike)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) and _types(a) == _types(b)


def _types(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _types(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_types(x) for x in v]
    return type(v).__name__


def test_the_paths_of_an_appliance_give_to_dicts_dict_marked_json_safe() -> None:
    """Nested path dicts, tuples, ids, enums and sets: to_dict's values and types, and JSON-safe."""
    evidence = MappingProxyType({
        "appliance": parse_id(RID), "snat_model": Colour.RED, "ranges": frozenset({"10.0.0.0/8"}),
        "paths": tuple({"path": f"p{i}", "route": {"prefix": "0.0.0.0/0", "hops": (1, 2.5, None, True)},
                        "endpoint": parse_id(RID + f"/x/{i}")} for i in range(1200))})
    f = _finding(evidence)
    got = large_dict(f)
    assert type(got) is JsonSafe and got == f.to_dict() and _same(got, f.to_dict())
    assert list(got) == list(f.to_dict())


def test_what_orjson_would_say_otherwise_is_not_marked_json_safe() -> None:
    """NaN (orjson writes null), a key that is no str, a scalar's subclass: equal to to_dict, but a plain dict."""
    for odd in ({"x": float("nan")}, {1: "one"}, {"x": Colour.RED, "y": _Sub("s")}, {"x": float("inf")}):
        f = _finding({"paths": [odd] * 3})
        got = large_dict(f)
        assert type(got) is dict and _same(got, f.to_dict()), odd


class _Sub(str):
    pass


_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5))
_tree = st.recursive(_leaf, lambda kids: st.one_of(st.lists(kids, max_size=4), st.tuples(kids, kids),
                                                   st.dictionaries(st.text(max_size=3), kids, max_size=4)),
                     max_leaves=30)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=4), _tree, max_size=5))
def test_any_evidence_gives_to_dicts_values_and_types(evidence: dict[str, Any]) -> None:
    """Random evidence: the same values and types as to_dict, whether marked JSON-safe or not."""
    f = _finding(evidence)
    assert _same(large_dict(f), f.to_dict())


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=4), _tree, max_size=5))
def test_what_is_marked_json_safe_orjson_writes_as_json_does(evidence: dict[str, Any]) -> None:
    """Random evidence (NaN, infinity, integers past 64 bits included): the store's text of a dict marked JSON-safe
    (orjson, or json where orjson refuses) reads back exactly as json's text; only a non-finite float goes unmarked."""
    got = large_dict(_finding(evidence))
    if type(got) is JsonSafe:
        assert json.loads(stored_text(got)) == json.loads(json.dumps(dict(got), sort_keys=True))
    else:
        assert any((isinstance(x, float) and x != x) or x in (float("inf"), float("-inf"))
                   for x in _leaves(got)), got


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [value]


def test_an_events_large_finding_whose_numbers_changed_type_is_not_given_the_dict_kept_for_it() -> None:
    """The dict kept for a large finding is reused for an equal one only when it writes the same text: 1 -> 1.0."""
    kept = LargeDicts()
    paths = tuple({"path": f"p{i}", "hops": 1} for i in range(1200))
    first = kept.dict_of(_finding({"paths": paths}))
    assert kept.dict_of(_finding({"paths": tuple(dict(p) for p in paths)})) is first   # equal: reused
    assert LargeDicts().dict_of(_finding({"paths": paths})) is not first   # kept per owner, not process-wide
    floats = tuple({"path": f"p{i}", "hops": 1.0} for i in range(1200))
    got = kept.dict_of(_finding({"paths": floats}))
    assert got is not first and type(got["evidence"]["paths"][0]["hops"]) is float


def test_a_route_tables_finding_of_a_few_hundred_endpoints_is_kept_too() -> None:
    """A finding listing 300 items (a route table's udr-bypassed at 100k) gets the dict kept for an equal one."""
    kept = LargeDicts()
    endpoints = tuple({"endpoint": f"pe{i}", "routes": ({"prefix": "0.0.0.0/0"},)} for i in range(300))
    first = kept.dict_of(_finding({"endpoints": endpoints}))
    assert kept.dict_of(_finding({"endpoints": tuple(dict(e) for e in endpoints)})) is first


def test_a_kept_findings_alert_text_is_bounded_once_and_as_bounded_finding_bounds_it() -> None:
    """LargeDicts.bounded is bounded_finding; for a kept dict the same bounded dict again, with fresh cuts each time."""
    kept = LargeDicts()
    paths = tuple({"path": "p" * (TEXT_MAX + 5), "hops": i} for i in range(1200))
    as_dict = kept.dict_of(_finding({"paths": paths}))
    first, cuts = kept.bounded(as_dict)
    assert (first, cuts) == bounded_finding(as_dict) and cuts
    again, cuts_again = kept.bounded(as_dict)
    assert again is first and cuts_again == cuts and cuts_again is not cuts
    other = dict(as_dict)   # equal, but no dict kept here: bounded anew
    assert kept.bounded(other)[0] is not first and kept.bounded(other) == (first, cuts)


def test_an_alert_of_a_json_safe_finding_is_json_safe_and_stored_as_json_would_write_it() -> None:
    """alert_payload of a JsonSafe finding is JsonSafe; the store's orjson text of it reads back as json's text."""
    paths = tuple({"path": f"p{i}\x1b[2J", "hops": (1, 2.5, None, True)} for i in range(150))
    as_dict = large_dict(_finding({"paths": paths, "odd": "é\u2028"}))
    assert type(as_dict) is JsonSafe
    rec = FindingRecord(check_id="c", resource_key="k", resource_id=RID, state=FindingState.OPEN, severity="high",
                        first_seen=T0, last_seen=T0, resolved_at=None, last_alert_at=T0, seq=1, finding=as_dict)
    payload = alert_payload(rec, "opened", T0, "tenant", "low")
    assert type(payload) is JsonSafe and payload["truncated"]
    assert json.loads(stored_text(payload)) == json.loads(json.dumps(dict(payload), sort_keys=True))
    assert type(alert_payload(replace(rec, finding=dict(as_dict)), "opened", T0, "tenant")) is dict
