"""What a check declares it reads (``@check(reads=...)``) is what it reads: the daemon re-runs checks on it.

The daemon re-runs after an event only the checks that read a collection the re-read kind feeds
(:func:`plmon.monitor.service.reevaluate.checks_for`), so a check reading a collection it did not declare would keep
a stale finding until the next full collection. Here every check runs against a stand-in snapshot that records
each attribute read (the snapshot's own lookups too), on every tenant the repository holds or the tests build.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from checkkit import snapshot_of
from tenant_catalog import TENANTS

from plmon.checks import registry
from plmon.checks.finding import Issue, Severity
from plmon.checks.registry import Check, all_checks, readers_of
from plmon.monitor.model.kinds import RECORDS
from plmon.monitor.model.snapshot import INDEX_SOURCES, Snapshot

DEMO = Path(__file__).resolve().parents[2] / "monitor" / "demo_tenant"
# What a re-read leaves as it was (reevaluate re-reads resources, not the tenant, its clock or its history), so no
# check declares it. A new snapshot field a check reads must be added here, to INDEX_SOURCES or to the kinds table.
CONTEXT = frozenset({"taken_at", "tenant_id", "cloud", "subscriptions", "management_groups", "coverage",
                     "observations"})


class _Recording:
    """A snapshot stand-in that notes the name of every attribute read through it.

    The snapshot's methods (``subnet_of``, ``provider_for``, ...) are bound to the stand-in, so what they read is
    noted as the check's own read.
    """

    __slots__ = ("_snap", "names")

    def __init__(self, snap: Snapshot) -> None:
        self._snap = snap
        self.names: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        self.names.add(name)
        attr = getattr(Snapshot, name, None)
        if inspect.isfunction(attr):
            return types.MethodType(attr, self)
        return getattr(self._snap, name)


def collections_read(chk: Check, snap: Snapshot) -> set[str]:
    """The snapshot collections ``chk`` reads on ``snap``: an index counts as the collections it is resolved from;
    the context (clock, tenant, subscriptions, coverage, observations) is the same before and after a re-read."""
    rec = _Recording(snap)
    list(chk.fn(rec, chk.defaults()))  # type: ignore[arg-type]
    methods = {n for n in rec.names if inspect.isfunction(getattr(Snapshot, n, None))}
    unclassified = rec.names - set(RECORDS) - set(INDEX_SOURCES) - CONTEXT - methods
    assert not unclassified, f"{chk.id} reads snapshot fields neither a collection, an index nor context"
    out = {n for n in rec.names if n in RECORDS}
    for index, sources in INDEX_SOURCES.items():
        if index in rec.names:
            out |= set(sources)
    return out


def _undeclared(snap: Snapshot) -> dict[str, list[str]]:
    return {cid: sorted(extra) for cid, chk in all_checks().items()
            if chk.reads is not None and (extra := collections_read(chk, snap) - chk.reads)}


def test_every_check_declares_what_it_reads() -> None:
    """Every check of the catalogue declares its reads, in collections the kinds table knows."""
    undeclared = [cid for cid, chk in all_checks().items() if chk.reads is None]
    assert undeclared == []
    assert all(chk.reads and chk.reads <= set(RECORDS) for chk in all_checks().values())


def test_every_check_is_seen_reading_the_demo_tenant() -> None:
    """The stand-in sees every check run (each reads at least one collection), and none reads an undeclared one."""
    snap = snapshot_of(DEMO)
    silent = [cid for cid, chk in all_checks().items() if not collections_read(chk, snap)]
    assert silent == []
    assert _undeclared(snap) == {}


@pytest.mark.parametrize("name", sorted(TENANTS))
def test_no_check_reads_a_collection_it_did_not_declare(name: str, tmp_path: Path) -> None:
    """On every tenant, the collections each check reads are among those it declares."""
    snap = snapshot_of(TENANTS[name](tmp_path / "tenant"))
    assert _undeclared(snap) == {}


@pytest.fixture()
def sneaky_check() -> Iterator[str]:
    """A check that declares endpoints but also reads the NICs."""
    cid = "zz-test.sneaky"

    @registry.check(id=cid, title="sneaky", severity=Severity.LOW, rationale="r", remediation="m",
                    references=("https://learn.microsoft.com/x",), reads=("private_endpoints",))
    def sneaky(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
        if snap.private_endpoints and snap.nics:
            return
        yield from ()

    yield cid
    del registry._REGISTRY[cid]


def test_an_undeclared_read_is_caught(sneaky_check: str) -> None:
    """The comparison this file relies on does report a check reading a collection it left out."""
    assert _undeclared(snapshot_of(DEMO)) == {sneaky_check: ["nics"]}


def test_a_misspelt_collection_is_refused() -> None:
    """A name that is not a snapshot collection of the kinds table is refused when the check registers."""
    with pytest.raises(ValueError, match="unknown snapshot collections"):
        registry.check(id="zz-test.typo", title="t", severity=Severity.LOW, rationale="r", remediation="m",
                       references=(), reads=("private_endpoint",))
    assert "zz-test.typo" not in all_checks()


def test_readers_of_follows_the_declarations_and_always_includes_undeclared_checks() -> None:
    """A change to a collection selects its declared readers, plus any check that declares nothing."""
    # (vwan.peering-bypasses-hub-firewall reads the client subnets' UDRs too: issue 18)
    assert readers_of({"route_tables"}) == {c for c in all_checks()
                                            if c.startswith("route.") or c == "vwan.peering-bypasses-hub-firewall"}
    assert readers_of({"bastion_hosts"}) == {"rmpl.bastion-dns-conflict"}
    assert readers_of(()) == set()
    cid = "zz-test.undeclared"
    registry.check(id=cid, title="t", severity=Severity.LOW, rationale="r", remediation="m",
                   references=())(lambda snap, params: iter(()))
    try:
        assert cid in readers_of(()) and cid in readers_of({"bastion_hosts"})
    finally:
        del registry._REGISTRY[cid]
