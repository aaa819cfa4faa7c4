"""The SNAT checks' kept walk of an appliance's endpoints (checks/route.py ``_walked``): after an event only the
endpoints between the first and the last whose rows moved are judged again, and what the walk gives is what a
walk from scratch gives (issue 14, sixth round)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from netkit import Net

import plmon.checks.route as route


def _entry(ips: tuple[str, ...]) -> Any:
    """Rows of one endpoint, as the walk reads them: no firewall, and what the check made of them is the stub's."""
    rows = tuple((None, SimpleNamespace(destination=ip), None) for ip in ips)
    return SimpleNamespace(firewalls={}, tagged=frozenset(), rows=rows)


def _result(seen: list[Any]) -> Any:
    def result(entry: Any, token: object) -> Any:
        seen.append(entry)
        return (token, entry.rows, tuple({"ip": r[1].destination} for r in entry.rows)) if entry.rows else token
    return result


def _fresh(entries: list[Any]) -> Any:
    route._walks.pop((False, "fresh"), None)
    return route._walked(None, False, "fresh", None, entries, _result([]))   # type: ignore[arg-type]


def test_a_walk_judges_only_the_endpoints_that_moved_and_equals_a_fresh_one() -> None:
    """Replacing, dropping and adding endpoints in the middle visits only that span; rows, evidence, counts and
    the sorted IPs equal a walk from scratch."""
    route._walks.pop((False, "fw"), None)
    entries = [_entry((f"10.0.0.{i}", f"10.0.0.{i}")) if i % 3 else _entry(()) for i in range(1, 21)]
    seen: list[Any] = []
    first = route._walked(None, False, "fw", None, entries, _result(seen))   # type: ignore[arg-type]
    assert len(seen) == 20 and first.ips() == sorted({f"10.0.0.{i}" for i in range(1, 21) if i % 3})
    moved = [*entries[:5], _entry(("10.9.9.9",)), *entries[6:9], *entries[10:], _entry(("10.0.0.1",))]
    seen.clear()
    again = route._walked(None, False, "fw", None, moved, _result(seen))   # type: ignore[arg-type]
    assert seen == moved[5:]   # from the first moved endpoint on; the ones before it are passed over
    fresh = _fresh(moved)
    assert [r[1].destination for r in again.rows] == [r[1].destination for r in fresh.rows]
    assert again.parts == fresh.parts and again.counts == fresh.counts and again.ips() == fresh.ips()
    seen.clear()
    inner = [*moved[:7], _entry(("10.7.7.7",)), *moved[8:]]
    last = route._walked(None, False, "fw", None, inner, _result(seen))   # type: ignore[arg-type]
    assert seen == [inner[7]]   # one endpoint replaced: it alone is judged
    assert last.ips() == _fresh(inner).ips() and last.parts == _fresh(inner).parts
    assert route._walked(None, False, "fw", None, list(inner), _result(seen)) is last   # nothing moved


def test_a_firewall_that_snats_every_destination_alike_is_not_walked(tmp_path: Path) -> None:
    """A policy that always SNATs answers the missing-SNAT check for all of a firewall's endpoints at once: none is
    judged one by one, and the walk reports nothing."""
    n = Net()
    n.firewall("fw", "10.0.1.4", policy="pol-always")
    n.firewall_policy("pol-always", ["255.255.255.255/32"])
    snap = n.snapshot(tmp_path)
    fw = next(iter(snap.firewalls.values()))
    seen: list[Any] = []
    entries = [SimpleNamespace(firewalls={(fw.key, f"10.0.0.{i}"): (fw, f"10.0.0.{i}")}, tagged=frozenset(), rows=())
               for i in range(1, 6)]
    route._walks.pop((False, fw.key), None)
    walk = route._walked(snap, False, fw.key, fw, entries, _result(seen))
    assert seen == [] and walk.rows == [] and walk.counts == [0] * 5


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=12), st.lists(st.integers(0, 3), max_size=12))
def test_the_shared_ends_are_what_a_step_by_step_walk_finds(a: list[int], b: list[int]) -> None:
    """_same_ends counts the entries two lists share by identity in front, then behind, as the old loops did."""
    objs = [object() for _ in range(4)]
    new, old = [objs[x] for x in a], [objs[x] for x in b]
    n, m = len(new), len(old)
    top = min(n, m)
    i = 0
    while i < top and new[i] is old[i]:
        i += 1
    j = 0
    while j < top - i and new[n - 1 - j] is old[m - 1 - j]:
        j += 1
    assert route._same_ends(new, old, top) == (i, j)
