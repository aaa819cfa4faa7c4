"""The scoped-scan invariant (issue 12): what a scan scoped to some subscriptions finds, the full scan finds.

A scoped scan sees less; what it cannot see it must read by id (checks.md) or leave as out of scope or a
coverage gap, never turn into a finding. So, by check id and resource id, the findings of a scan scoped to
any one subscription are a subset of the findings of the full scan. The tenants are discovered
(tests/kit/tenant_catalog.py), so a new one is covered without editing this file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tenant_catalog import TENANTS

from plmon.checks.engine import Evaluation, evaluate
from plmon.monitor.collect.builder import build_snapshot
from plmon.monitor.collect.plan import ReadError, collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.model.snapshot import Snapshot
from plmon.monitor.replay import synth
from plmon.monitor.replay.server import ReplayServer

ROOT = Path(__file__).resolve().parents[2]


def _scan(folder: Path, subscriptions: list[str] | None = None) -> tuple[Snapshot, Evaluation]:
    reader = RecordedTenant(folder)
    snap = build_snapshot(collect(reader, manifest=reader.manifest, workers=2, subscriptions=subscriptions))
    return snap, evaluate(snap)


def _keys(ev: Evaluation) -> set[tuple[str, str]]:
    return {(f.check_id, f.resource_id.lower()) for f in ev.findings}


def _subscription_ids(folder: Path) -> tuple[list[str], bool]:
    """The tenant's subscriptions (those it lists, plus any it holds lists for without listing them), and
    whether it lists them all (else the full scan names them, as a user of such a recording must)."""
    reader = RecordedTenant(folder)
    try:
        body = reader.get("subscriptions", kind="subscriptions")
    except ReadError:
        body = {}  # the list refused: the subscriptions are those the tenant holds lists for
    listed = body.get("value", []) if isinstance(body, dict) else []
    ids = {s["subscriptionId"].lower() for s in listed if isinstance(s, dict) and s.get("subscriptionId")}
    held = {p.split("/")[1] for p in reader.paths() if p.startswith("subscriptions/") and p.count("/") > 1}
    return sorted(ids | held), held <= ids


def test_discovery_finds_every_kind_of_tenant() -> None:
    """The discovery keeps finding the demo tenant, the Microsoft-example tenant, kit tenants and synth specs."""
    names = set(TENANTS)
    assert {"folder:monitor/demo_tenant", "folder:tests/fixtures/replay/ms-examples"} <= names
    assert {"kit:live_tenants.rich_tenant", "kit:netkit.hub_and_spokes", "kit:reportkit.hostile_tenant"} <= names
    assert sum(n.startswith("synth:") for n in names) >= 3


@pytest.mark.parametrize("name", sorted(TENANTS))
def test_scoped_findings_are_a_subset_of_the_full_scan(name: str, tmp_path: Path) -> None:
    """For every subscription of the tenant, the findings of a scan scoped to it are among the full scan's."""
    folder = TENANTS[name](tmp_path / "tenant")
    subs, all_listed = _subscription_ids(folder)
    _, full = _scan(folder, None if all_listed else subs)
    assert full.check_errors == ()
    assert subs, f"{name}: no subscription to scope to"
    for sub in subs:
        _, scoped = _scan(folder, [sub])
        assert scoped.check_errors == ()
        extra = _keys(scoped) - _keys(full)
        assert not extra, f"{name} scoped to {sub} claims what the full scan does not: {sorted(extra)}"


def test_demo_scope_of_issue_12_reads_other_subscriptions_by_id(tmp_path: Path) -> None:
    """`plmon scan --from monitor/demo_tenant --subscription <application subscription>` (issue 12) claims no
    dangling association and no missing target: the RMPL and the partner PLS elsewhere are read by id."""
    run = subprocess.run([str(Path(sys.executable).with_name("plmon")), "scan", "--from",
                          str(ROOT / "monitor" / "demo_tenant"), "--subscription",
                          "aaaaaaaa-0000-4000-8000-000000000002", "--format", "json"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    ids = {(f["check_id"], f["resource_id"].rsplit("/", 1)[-1]) for f in json.loads(run.stdout)["findings"]}
    assert not any(c == "rmpl.association-dangling" for c, _ in ids)
    # only the endpoint whose storage account answers 404 (on evidence, as in the full scan)
    assert {r for c, r in ids if c == "connection.target-missing"} == {"pe-st-old"}
    assert ("connection.pending", "pe-partner-api.conn") in ids  # judged on the provider side, as in the full scan


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 100_000), bad_share=st.sampled_from([0.3, 0.7, 1.0]), pls=st.integers(0, 3))
def test_scoped_subset_holds_on_random_synth_tenants(tmp_path_factory: pytest.TempPathFactory, seed: int,
                                                     bad_share: float, pls: int) -> None:
    """The invariant holds on synthetic tenants of random seeds and defect shares, beyond the specs tests write."""
    result = synth.generate(synth.SynthSpec(subscriptions=3, endpoints=30, seed=seed, bad_share=bad_share, pls=pls))
    folder = tmp_path_factory.mktemp("synth")
    synth.write_tenant(result, folder, force=True)
    _, full = _scan(folder)
    for sub in _subscription_ids(folder)[0]:
        extra = _keys(_scan(folder, [sub])[1]) - _keys(full)
        assert not extra, f"seed {seed} scoped to {sub}: {sorted(extra)}"


def test_a_scoped_scan_reports_what_it_leaves_out() -> None:
    """Scoped to the application subscription of the demo tenant, the hub network it peers with is reported as
    a coverage gap (OutOfScope), not silently passed; the full scan has no such gap."""
    demo = ROOT / "monitor" / "demo_tenant"
    snap, _ = _scan(demo, ["aaaaaaaa-0000-4000-8000-000000000002"])
    out = [g for g in snap.coverage.gaps if g.code == "OutOfScope"]
    assert [g.scope.rsplit("/", 1)[-1] for g in out] == ["vnet-hub"]
    assert "not judged" in (out[0].message or "")
    assert not [g for g in _scan(demo)[0].coverage.gaps if g.code == "OutOfScope"]


def test_live_scoped_scan_reads_out_of_scope_resources_by_id(tmp_path: Path) -> None:
    """Through the real SDKs and the replay server, a scan scoped to the demo's application subscription reads
    the RMPL and the partner PLS by id (each held only in its subscription's list) and finds what --from finds."""
    plmon = str(Path(sys.executable).with_name("plmon"))
    demo = ROOT / "monitor" / "demo_tenant"
    scope = ["--subscription", "aaaaaaaa-0000-4000-8000-000000000002", "--format", "json"]
    env = {**os.environ, "PLMON_ARM_TOKEN": "replay"}

    def keys(stdout: str) -> set[tuple[str, str]]:
        return {(f["check_id"], f["resource_id"].lower()) for f in json.loads(stdout)["findings"]}

    offline = subprocess.run([plmon, "scan", "--from", str(demo), *scope], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60, check=True)
    with ReplayServer(demo, page_size=3) as server:
        live = subprocess.run([plmon, "scan", "--arm-endpoint", server.base_url, "--ca-bundle", server.ca_bundle,
                               *scope], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True)
        by_id = {r.path.lower() for r in server.requests if r.status == 200 and "/resourcegroups/" in r.path.lower()}
    assert keys(live.stdout) == keys(offline.stdout)
    assert any(p.endswith("/resourcemanagementprivatelinks/rmpl-contoso") for p in by_id)
    assert any(p.endswith("/privatelinkservices/pls-partner-api") for p in by_id)


DEMO_FILES = sorted(p.relative_to(ROOT / "monitor" / "demo_tenant" / "arm").as_posix()
                    for p in (ROOT / "monitor" / "demo_tenant" / "arm").rglob("*.json")
                    if not p.name.endswith(".error.json") and p.name != "subscriptions.json")


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(refused=st.sets(st.sampled_from(DEMO_FILES), min_size=1, max_size=4))
def test_scoped_subset_holds_when_reads_are_refused(tmp_path_factory: pytest.TempPathFactory,
                                                    refused: set[str]) -> None:
    """The invariant holds on the demo tenant with any few of its reads answering 403 instead."""
    folder = tmp_path_factory.mktemp("refused") / "demo"
    shutil.copytree(ROOT / "monitor" / "demo_tenant", folder)
    for rel in refused:
        (folder / "arm" / rel).unlink()
        (folder / "arm" / rel.replace(".json", ".error.json")).write_text(
            json.dumps({"status": 403, "error": {"code": "AuthorizationFailed", "message": "refused"}}))
    _, full = _scan(folder)
    for sub in _subscription_ids(folder)[0]:
        extra = _keys(_scan(folder, [sub])[1]) - _keys(full)
        assert not extra, f"{sorted(refused)} scoped to {sub}: {sorted(extra)}"
