"""The compliance figure's universe: every resource the scan read, whatever collection of the snapshot holds it."""

from __future__ import annotations

import typing
from pathlib import Path

from checkkit import snapshot_of

from plmon.monitor.lifecycle.compliance import evaluated_resources
from plmon.monitor.model.snapshot import Resource, Snapshot

DEMO = Path(__file__).resolve().parents[3] / "monitor" / "demo_tenant"


def test_resources_evaluated_covers_every_collection_of_the_snapshot() -> None:
    """Every resource of every resource collection of the snapshot (found from its type hints) is evaluated and
    counted: a collection added with a row of the kinds table needs no edit here."""
    snap = snapshot_of(DEMO)
    keys: set[str] = set()
    count = 0
    for name, hint in typing.get_type_hints(Snapshot).items():
        args = typing.get_args(hint)
        if len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], Resource):
            collection = getattr(snap, name)
            keys |= set(collection)
            count += len(collection)
    assert count > 0 and set(evaluated_resources(snap)) == keys
    assert snap.resources_evaluated() == count
