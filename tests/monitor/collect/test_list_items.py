"""Resources held only in list files, found by id (monitor/collect/list_items.py): which lists, and how often parsed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from plmon.monitor.collect.list_items import ListItems, _key, lists_holding
from plmon.monitor.model.arm_id import normalise

S = "11111111-1111-1111-1111-111111111111"
PLS = f"subscriptions/{S}/resourceGroups/rg1/providers/Microsoft.Network/privateLinkServices"


def test_lists_holding_a_resource() -> None:
    """A top-level resource is held by its resource group's and its subscription's list; a child by its parent's
    child list; a collection or a path without a provider resource by none."""
    assert lists_holding(f"/{PLS}/p1?api-version=1") == [PLS, f"subscriptions/{S}/providers/Microsoft.Network/"
                                                                 "privateLinkServices"]
    zone = f"subscriptions/{S}/resourceGroups/rg1/providers/Microsoft.Network/privateDnsZones/z.net"
    assert lists_holding(f"{zone}/virtualNetworkLinks/l1") == [f"{zone}/virtualNetworkLinks"]
    assert lists_holding(PLS) == [] and lists_holding(f"subscriptions/{S}/resourceGroups/rg1") == []
    assert lists_holding(f"subscriptions/{S}/providers/Microsoft.Network") == []


def test_a_list_is_parsed_once_until_it_changes(tmp_path: Path) -> None:
    """Lookups reuse a list's index while its stat is unchanged (one parse for many reads), and see an edit."""
    file = tmp_path / "list.json"
    items = [{"id": f"/{PLS}/p{i}", "name": f"p{i}"} for i in range(2000)]
    file.write_text(json.dumps({"value": items}))
    old = time.time_ns() - 10_000_000_000
    os.utime(file, ns=(old, old))
    loads: list[Path] = []

    def load(f: Path) -> Any:
        loads.append(f)
        return json.loads(f.read_text())

    finder = ListItems(lambda rel: (file, False) if rel == PLS.lower() else (None, False), load)
    assert [finder.find(f"/{PLS}/P{i}")[0]["name"] for i in (1, 1999, 5)] == ["p1", "p1999", "p5"]
    assert finder.find(f"/{PLS}/p2000") is None
    assert len(loads) == 1
    file.write_text(json.dumps({"value": items[:1]}))
    os.utime(file, ns=(old + 1, old + 1))
    assert finder.find(f"/{PLS}/p5") is None and len(loads) == 2
    # the item is a copy: a caller that edits it does not change what the next read answers
    finder.find(f"/{PLS}/p0")[0]["name"] = "edited"
    assert finder.find(f"/{PLS}/p0")[0]["name"] == "p0"


@given(st.text(alphabet="/ \tabAB\u00a0", max_size=12))
def test_index_key_is_normalise(rid: str) -> None:
    """The list index's fast key is exactly normalise() for any spelling (slashes, spaces, case)."""
    if rid.strip():
        assert _key(rid) == normalise(rid)
