"""Resources held only in list files, found by id (monitor/collect/list_items.py): which lists, and how often parsed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from plmon.monitor.collect.list_items import ListItems, _key, _split, lists_holding
from plmon.monitor.collect.recorded import RecordedTenant
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


_ODD_ITEMS = [
    {"id": f"/{PLS}/plain", "properties": {"n": 1, "f": 1.5, "b": True, "x": None}},
    {"id": f"/{PLS}/Dup", "name": "first"}, {"id": f"/{PLS}/dup", "name": "second"},   # the first of an id wins
    {"id": f"/{PLS}/long", "properties": {"big": 12345678901234567890123}},           # json keeps it exact
    {"id": f"/{PLS}/lone\\ud83d", "name": "x"},                                          # a surrogate escape
    {"id": f"/{PLS}/deep", "p": [[[[[[1]]]]]] * 3},
    3, "text", None, [{"id": f"/{PLS}/inner"}], {"name": "no id"}, {"id": 7}, {"id": "  "},
]


@settings(deadline=None)
@given(st.lists(st.sampled_from(_ODD_ITEMS), max_size=8), st.sampled_from(["", "\ufeff", " ", "\n"]))
def test_a_list_split_by_item_finds_what_a_whole_parse_finds(items: list[Any], lead: str) -> None:
    """Indexed by its items' bytes (only the one asked for parsed), a list answers every id as the whole parse of
    it does, odd items included (duplicates, a surrogate escape, long numbers, non-objects, a byte-order mark);
    a file it cannot read the same way is parsed whole."""
    data = (lead + json.dumps({"value": items}).replace("\\\\ud83d", "\\ud83d")).encode()
    whole = ListItems(lambda _: (Path("f.json"), False), lambda _: RecordedTenant._decode(data, "f.json"))
    split = ListItems(lambda _: (Path("f.json"), False), lambda _: RecordedTenant._decode(data, "f.json"),
                      RecordedTenant._decode)
    whole._index = lambda file: _whole(data)  # type: ignore[method-assign]
    split._index = lambda file: _split_or_whole(data)  # type: ignore[method-assign]
    for name in ("plain", "dup", "long", "lone\\ud83d", "deep", "inner", "missing"):
        path = f"{PLS}/{name}"
        try:
            want: Any = whole.find(path)
        except Exception as err:   # the same failure either way
            want = type(err)
        try:
            got: Any = split.find(path)
        except Exception as err:
            got = type(err)
        assert got == want, name


def _split_or_whole(data: bytes) -> dict[str, Any]:
    """ListItems._index without the file, given a decode: the split of ``data``, else its whole parse's index."""
    got = _split(data)
    return dict(got) if got is not None else _whole(data)


def _whole(data: bytes) -> dict[str, Any]:
    """ListItems._index without the file and without a decode: the whole parse's index."""
    body = RecordedTenant._decode(data, "f.json")
    out: dict[str, Any] = {}
    for item in body.get("value") if isinstance(body, dict) and isinstance(body.get("value"), list) else []:
        rid = item.get("id") if isinstance(item, dict) else None
        if isinstance(rid, str) and rid.strip():
            out.setdefault(_key(rid), item)
    return out


def test_forget_drops_the_lists_indexes_and_a_later_find_indexes_again(tmp_path: Path) -> None:
    """What a daemon drops after its collection (RecordedTenant.forget): the items of every list indexed so far; a
    later find reads the list again and answers as before."""
    file = tmp_path / "list.json"
    file.write_text(json.dumps({"value": [{"id": f"/{PLS}/p1", "name": "p1"}]}))
    old = time.time_ns() - 10_000_000_000
    os.utime(file, ns=(old, old))
    items = ListItems(lambda _: (file, False), lambda f: json.loads(Path(f).read_text()), RecordedTenant._decode)
    assert items.find(f"{PLS}/p1") == ({"id": f"/{PLS}/p1", "name": "p1"}, None) and items._indexes
    items.forget()
    assert not items._indexes
    assert items.find(f"{PLS}/p1") == ({"id": f"/{PLS}/p1", "name": "p1"}, None)
