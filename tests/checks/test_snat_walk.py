"""The SNAT checks' kept walk of an appliance's endpoints (checks/route.py ``_walked``): after an event only the
endpoints between the first and the last whose rows moved are judged again, and what the walk gives is what a
walk from scratch gives (issue 14, sixth round)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import plmon.checks.route as route


def _entry(ips: tuple[str, ...]) -> Any:
    """Rows of one endpoint, as the walk reads them: no firewall, and what the check made of them is the stub's."""
    rows = tuple((None, SimpleNamespace(destination=ip), None) for ip in ips)
    return SimpleNamespace(firewalls={}, rows=rows)


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
