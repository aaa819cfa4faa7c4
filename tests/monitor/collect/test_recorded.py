"""The recorded-tenant folder format (recorded-tenant.md) and the collection plan walked over it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tenantkit import SUB, TENANT, endpoint, net, provider_connection, storage_account, sub_list, write_tenant

from plmon.monitor.collect.builder import build_snapshot
from plmon.monitor.collect.plan import SUBSCRIPTION_LISTS, ReadError, collect
from plmon.monitor.collect.recorded import RecordedTenant, is_collection_path
from plmon.monitor.errors import InputError
from plmon.monitor.model.snapshot import TargetState

SUB2 = "22222222-2222-2222-2222-222222222222"
MG = "providers/Microsoft.Management/managementGroups"
PLA = "providers/Microsoft.Authorization/privateLinkAssociations"


class Logged(RecordedTenant):
    """A recorded tenant that also notes every GET path, to see what the plan reads."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.gets: list[tuple[str, str]] = []

    def get(self, path: str, *, kind: str = "") -> Any:
        self.gets.append((path, kind))
        return super().get(path, kind=kind)


# --- the folder format ---------------------------------------------------------------------------

def test_lookup_is_case_insensitive(tmp_path: Path) -> None:
    """A file stored in one casing answers a GET in any other casing, query string ignored."""
    write_tenant(tmp_path, {"subscriptions/S1/providers/Microsoft.Network/privateEndpoints": {"value": [1]}})
    t = RecordedTenant(tmp_path)
    assert t.get("/SUBSCRIPTIONS/s1/PROVIDERS/microsoft.network/PRIVATEENDPOINTS?api-version=2024-05-01",
                  kind="x") == {"value": [1]}
    assert t.manifest["tenant_id"] == TENANT


def test_error_file_raises_read_error(tmp_path: Path) -> None:
    """An .error.json file fails the GET with its status, ARM code and message."""
    write_tenant(tmp_path, {})
    p = tmp_path / "arm" / "subscriptions" / SUB / "providers" / "Microsoft.Network" / "privateEndpoints.error.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"status": 403, "error": {"code": "AuthorizationFailed", "message": "no"}}))
    with pytest.raises(ReadError) as e:
        RecordedTenant(tmp_path).get(sub_list("privateEndpoints").upper(), kind="privateEndpoints")
    assert (e.value.status, e.value.code, e.value.message) == (403, "AuthorizationFailed", "no")


def test_error_file_without_code_gets_http_code(tmp_path: Path) -> None:
    """An error file with only a status still fails the read, with code Http<status>."""
    write_tenant(tmp_path, {})
    (tmp_path / "arm" / "x.error.json").write_text(json.dumps({"status": 429}))
    with pytest.raises(ReadError) as e:
        RecordedTenant(tmp_path).get("x", kind="")
    assert (e.value.status, e.value.code) == (429, "Http429")


@pytest.mark.parametrize("body", [[1], {"status": 200}, {"status": "403"}, {"error": {}}])
def test_bad_error_file_is_input_error_naming_file(tmp_path: Path, body: Any) -> None:
    """An .error.json that is not {status: 4xx/5xx, error: {...}} is an input error naming the file."""
    write_tenant(tmp_path, {})
    (tmp_path / "arm" / "bad.error.json").write_text(json.dumps(body))
    with pytest.raises(InputError, match=r"bad\.error\.json"):
        RecordedTenant(tmp_path).get("bad", kind="")


@pytest.mark.parametrize("path", [
    "subscriptions", sub_list("privateEndpoints"), sub_list("resourceManagementPrivateLinks",
                                                            provider="Microsoft.Authorization"),
    f"{MG}", f"{MG}/g1/{PLA}",
    f"{net()}/privateEndpoints/pe1/privateDnsZoneGroups".lstrip("/"),
    f"{net()}/privateDnsZones/privatelink.azure.com/CNAME".lstrip("/"),
    f"subscriptions/{SUB}/resourceGroups",
])
def test_missing_collection_is_empty_list(tmp_path: Path, path: str) -> None:
    """A collection path with no file reads as {"value": []}, as ARM answers an empty collection."""
    write_tenant(tmp_path, {}, subscriptions=[])
    assert is_collection_path(path)
    assert RecordedTenant(tmp_path).get(path, kind="") == {"value": []}


@pytest.mark.parametrize("path", [
    f"subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Storage/storageAccounts/st1",
    f"{net()}/privateEndpoints/pe1".lstrip("/"), f"subscriptions/{SUB}", f"{MG}/g1",
])
def test_missing_resource_is_404(tmp_path: Path, path: str) -> None:
    """A resource path with no file is a 404 ResourceNotFound."""
    write_tenant(tmp_path, {})
    assert not is_collection_path(path)
    with pytest.raises(ReadError) as e:
        RecordedTenant(tmp_path).get(path, kind="target")
    assert (e.value.status, e.value.code) == (404, "ResourceNotFound")


def test_malformed_json_is_input_error_naming_file(tmp_path: Path) -> None:
    """A file that is not JSON gives an InputError that names the file and the position."""
    write_tenant(tmp_path, {})
    bad = tmp_path / "arm" / "subscriptions" / SUB / "providers" / "Microsoft.Network" / "privateEndpoints.json"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text('{"value": [')
    with pytest.raises(InputError, match=r"privateEndpoints\.json: malformed JSON at line 1"):
        RecordedTenant(tmp_path).get(sub_list("privateEndpoints"), kind="privateEndpoints")
    # ... and through the whole collection too: an input error, not a gap.
    with pytest.raises(InputError, match=r"privateEndpoints\.json"):
        collect(RecordedTenant(tmp_path), manifest={})


def test_non_utf8_file_is_input_error(tmp_path: Path) -> None:
    """A binary file in arm/ is an InputError naming the file."""
    write_tenant(tmp_path, {})
    (tmp_path / "arm" / "subscriptions.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match=r"subscriptions\.json: not UTF-8"):
        RecordedTenant(tmp_path).get("subscriptions", kind="subscriptions")


def test_missing_folder_and_non_tenant_folder(tmp_path: Path) -> None:
    """A missing folder, or one with neither manifest.json nor arm/, is an InputError."""
    with pytest.raises(InputError, match="not found"):
        RecordedTenant(tmp_path / "nope")
    with pytest.raises(InputError, match="not a recorded tenant"):
        RecordedTenant(tmp_path)


@pytest.mark.parametrize("manifest", ["[1, 2]", "{", '"text"'])
def test_bad_manifest_is_input_error(tmp_path: Path, manifest: str) -> None:
    """A manifest that is not a JSON object is an InputError naming manifest.json."""
    (tmp_path / "manifest.json").write_text(manifest)
    with pytest.raises(InputError, match=r"manifest\.json"):
        RecordedTenant(tmp_path)


@pytest.mark.parametrize(("body", "key"), [
    ({"tenant_id": 1}, "tenant_id"), ({"recorded_at": "yesterday"}, "recorded_at"),
    ({"cloud": ["AzureCloud"]}, "cloud"), ({"recorded_at": None}, "recorded_at")])
def test_bad_manifest_field_is_input_error_naming_it(tmp_path: Path, body: dict[str, Any], key: str) -> None:
    """A manifest field of the wrong type, or an unparseable recorded_at, is an InputError naming the field."""
    (tmp_path / "manifest.json").write_text(json.dumps(body))
    with pytest.raises(InputError, match=key):
        RecordedTenant(tmp_path)


def test_arm_folder_without_manifest_is_accepted(tmp_path: Path) -> None:
    """A folder with arm/ but no manifest.json is still a tenant (empty manifest)."""
    (tmp_path / "arm").mkdir()
    assert RecordedTenant(tmp_path).manifest == {}


# --- the collection plan -------------------------------------------------------------------------

def _pe_id(name: str) -> str:
    return f"{net()}/privateEndpoints/{name}"


def test_plan_reads_everything_in_recorded_tenant_md(tmp_path: Path) -> None:
    """The plan reads subscriptions, groups, root and listed groups' associations, every per-subscription
    list, each endpoint's zone groups, each zone's links and CNAMEs, and unlisted targets by id."""
    st = storage_account("st1")
    zone = f"{net()}/privateDnsZones/privatelink.blob.core.windows.net"
    write_tenant(tmp_path, {
        MG: {"value": [{"id": f"/{MG}/{TENANT}", "name": TENANT}, {"id": f"/{MG}/Child", "name": "Child"}]},
        sub_list("privateEndpoints"): {"value": [endpoint("pe1", st["id"])]},
        sub_list("privateDnsZones"): {"value": [{"id": zone, "name": "privatelink.blob.core.windows.net"}]},
        st["id"]: st,
    })
    reader = Logged(tmp_path)
    inv = collect(reader, manifest=reader.manifest, workers=1)
    got = {p.lower() for p, _ in reader.gets}
    want = {"subscriptions", MG.lower(), f"{MG}/{TENANT}/{PLA}".lower(), f"{MG}/child/{PLA}".lower(),
            f"{_pe_id('pe1')}/privateDnsZoneGroups".strip("/").lower(),
            f"{zone}/virtualNetworkLinks".strip("/").lower(), f"{zone}/CNAME".strip("/").lower(),
            st["id"].strip("/").lower()}
    want |= {f"subscriptions/{SUB}/providers/{t}".lower() for _, t in SUBSCRIPTION_LISTS}
    assert got == want
    assert len(reader.gets) == len(want)  # nothing read twice
    assert inv.gaps == []
    assert inv.manifest["tenant_id"] == TENANT


def test_listed_pls_target_is_not_read_by_id(tmp_path: Path) -> None:
    """A PLS target in a scanned subscription comes from its list, never a GET by id; absent = missing."""
    pls_id = f"{net()}/privateLinkServices/gone"
    write_tenant(tmp_path, {sub_list("privateEndpoints"): {"value": [endpoint("pe1", pls_id)]}})
    reader = Logged(tmp_path)
    snap = build_snapshot(collect(reader, manifest=reader.manifest, workers=1))
    assert all(p.lower() != pls_id.strip("/").lower() for p, _ in reader.gets)
    assert snap.coverage.covers(f"/subscriptions/{SUB}", "Microsoft.Network/privateLinkServices")


def test_pls_in_unscanned_subscription_is_read_by_id(tmp_path: Path) -> None:
    """A PLS in another subscription (the provider's) is read by id, as a target."""
    pls_id = f"{net(SUB2)}/privateLinkServices/theirs"
    write_tenant(tmp_path, {sub_list("privateEndpoints"): {"value": [endpoint("pe1", pls_id)]},
                            pls_id: {"id": pls_id, "name": "theirs", "properties": {}}})
    reader = Logged(tmp_path)
    snap = build_snapshot(collect(reader, manifest=reader.manifest, workers=1))
    assert (pls_id.strip("/"), "target") in reader.gets
    assert snap.targets[pls_id.lower()].state == TargetState.READ


def _error(status: int, code: str) -> dict[str, Any]:
    return {"status": status, "error": {"code": code, "message": f"{code} for test"}}


def _write_error(folder: Path, path: str, status: int, code: str) -> None:
    f = folder / "arm" / (path.strip("/") + ".error.json")
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(_error(status, code)))


def _gaps(folder: Path) -> set[tuple[str, str, str]]:
    reader = RecordedTenant(folder)
    snap = build_snapshot(collect(reader, manifest=reader.manifest, workers=2))
    return {(g.scope, g.type, g.code) for g in snap.coverage.gaps}


def test_403_subscription_list_is_a_gap_with_scope_type_code(tmp_path: Path) -> None:
    """A 403 on one per-subscription list is a gap (subscription, type, code); the rest is still read."""
    write_tenant(tmp_path, {sub_list("privateLinkServices"): {"value": []}})
    _write_error(tmp_path, sub_list("privateEndpoints"), 403, "AuthorizationFailed")
    reader = RecordedTenant(tmp_path)
    inv = collect(reader, manifest=reader.manifest)
    snap = build_snapshot(inv)
    assert {(g.scope, g.type, g.code, g.status) for g in snap.coverage.gaps} == {
        (f"/subscriptions/{SUB}", "Microsoft.Network/privateEndpoints", "AuthorizationFailed", 403)}
    assert not snap.coverage.covers(f"/subscriptions/{SUB}", "Microsoft.Network/privateEndpoints")
    assert snap.coverage.covers(f"/subscriptions/{SUB}", "Microsoft.Network/privateLinkServices")
    assert snap.coverage.subscriptions_scanned == 1


def test_403_on_the_subscriptions_list_is_a_tenant_gap(tmp_path: Path) -> None:
    """A 403 on 'subscriptions' is a gap at scope '/' and nothing per subscription is read."""
    write_tenant(tmp_path, {}, subscriptions=[])
    _write_error(tmp_path, "subscriptions", 403, "AuthorizationFailed")
    assert _gaps(tmp_path) == {("/", "Microsoft.Resources/subscriptions", "AuthorizationFailed")}


def test_403_management_group_is_a_gap(tmp_path: Path) -> None:
    """A 403 on the group list and on one group's associations are gaps naming the group scope."""
    write_tenant(tmp_path, {})
    _write_error(tmp_path, MG, 403, "AuthorizationFailed")
    _write_error(tmp_path, f"{MG}/{TENANT}/{PLA}", 403, "AuthorizationFailed")
    assert _gaps(tmp_path) == {
        (f"/{MG}", "Microsoft.Management/managementGroups", "AuthorizationFailed"),
        (f"/{MG}/{TENANT}", "Microsoft.Authorization/privateLinkAssociations", "AuthorizationFailed"),
    }


def test_403_target_is_a_gap_and_404_target_is_not_found(tmp_path: Path) -> None:
    """A 403 target is a gap (its id, its type, the code); a 404 target is NOT_FOUND and no gap."""
    st_forbidden = storage_account("locked", sub=SUB2)["id"]
    st_gone = storage_account("gone")["id"]
    write_tenant(tmp_path, {sub_list("privateEndpoints"): {"value": [endpoint("pe1", st_forbidden),
                                                                     endpoint("pe2", st_gone)]}})
    _write_error(tmp_path, st_forbidden, 403, "AuthorizationFailed")
    reader = RecordedTenant(tmp_path)
    snap = build_snapshot(collect(reader, manifest=reader.manifest))
    assert {(g.scope, g.type, g.code) for g in snap.coverage.gaps} == {
        (st_forbidden, "Microsoft.Storage/storageAccounts", "AuthorizationFailed")}
    assert snap.targets[st_forbidden.lower()].state == TargetState.UNREADABLE
    assert snap.targets[st_gone.lower()].state == TargetState.NOT_FOUND
    assert snap.targets[st_gone.lower()].error_status == 404


def test_malformed_list_body_is_a_gap(tmp_path: Path) -> None:
    """A list file without a 'value' array is a MalformedResponse gap, not a crash."""
    write_tenant(tmp_path, {sub_list("routeTables"): {"values": []}})
    assert _gaps(tmp_path) == {(f"/subscriptions/{SUB}", "Microsoft.Network/routeTables", "MalformedResponse")}


def test_subscription_filter_is_case_insensitive(tmp_path: Path) -> None:
    """collect(subscriptions=...) reads only the named subscriptions, compared case-insensitively."""
    upper = "AAAAAAAA-0000-0000-0000-000000000000"
    write_tenant(tmp_path, {}, subscriptions=[SUB, upper.lower()])
    reader = Logged(tmp_path)
    inv = collect(reader, subscriptions=[upper], manifest=reader.manifest, workers=1)
    assert [s["subscriptionId"] for s in inv.subscriptions] == [upper.lower()]
    assert not any(SUB in p for p, _ in reader.gets)


def test_tenant_id_from_subscriptions_when_manifest_lacks_it(tmp_path: Path) -> None:
    """Without a manifest tenant id, the tenant is the subscriptions' tenantId (root group read)."""
    write_tenant(tmp_path, {})
    (tmp_path / "manifest.json").unlink()
    reader = Logged(tmp_path)
    inv = collect(reader, manifest=reader.manifest, workers=1)
    assert inv.manifest["tenant_id"] == TENANT
    assert (f"{MG}/{TENANT}/{PLA}", "privateLinkAssociations") in reader.gets


def test_provider_connection_links_to_endpoint(tmp_path: Path) -> None:
    """The builder indexes provider connections by endpoint key, across id casing."""
    st = storage_account("st1", connections=[provider_connection(
        storage_account("st1")["id"], _pe_id("PE1").upper(), status="Pending", storage_spelling=True,
        actions_required="Recreate")])
    write_tenant(tmp_path, {sub_list("privateEndpoints"): {"value": [endpoint("pe1", st["id"])]},
                            st["id"]: st})
    reader = RecordedTenant(tmp_path)
    snap = build_snapshot(collect(reader, manifest=reader.manifest))
    conns = snap.provider_connections_by_endpoint[_pe_id("pe1").lower()]
    assert len(conns) == 1 and conns[0].status == "Pending"
    assert conns[0].actions_required == "Recreate"  # Storage's actionRequired spelling
    assert snap.endpoints_by_subnet[f"{net()}/virtualNetworks/vnet1/subnets/pe".lower()] == (_pe_id("pe1").lower(),)


def test_get_by_id_answers_the_item_of_the_list_that_holds_it(tmp_path: Path) -> None:
    """A resource with no file of its own is read by id from its subscription's or resource group's list
    (recorded-tenant.md), an edited list is seen on the next read, and an id no list holds stays a 404."""
    pls = f"{net(SUB2, 'rg-p')}/privateLinkServices/pls1"
    rg_list = f"subscriptions/{SUB2}/resourceGroups/rg-p/providers/Microsoft.Network/privateLinkServices"
    link = f"{net(SUB2, 'rg-p')}/privateDnsZones/z.net/virtualNetworkLinks/l1"
    write_tenant(tmp_path, {
        sub_list("privateLinkServices", SUB2): {"value": [{"id": pls.upper(), "name": "pls1"}]},
        rg_list: {"value": [{"id": f"{net(SUB2, 'rg-p')}/privateLinkServices/pls2", "name": "pls2"}]},
        link.rsplit("/", 1)[0].lstrip("/"): {"value": [{"id": link, "name": "l1"}]},
    })
    t = RecordedTenant(tmp_path)
    assert t.get(pls, kind="target") == {"id": pls.upper(), "name": "pls1"}
    assert t.get(f"{net(SUB2, 'rg-p')}/privateLinkServices/PLS2", kind="target")["name"] == "pls2"
    assert t.get(link.lower(), kind="x")["name"] == "l1"
    with pytest.raises(ReadError) as e:
        t.get(f"{net(SUB2, 'rg-p')}/privateLinkServices/pls9", kind="target")
    assert e.value.status == 404
    listed = tmp_path / "arm" / f"{sub_list('privateLinkServices', SUB2)}.json"
    listed.write_text(json.dumps({"value": []}))
    os.utime(listed, ns=(1, 1))
    with pytest.raises(ReadError):
        t.get(pls, kind="target")


def test_get_by_id_under_a_refused_list_answers_its_error(tmp_path: Path) -> None:
    """A resource whose only list is recorded as an error (403) is refused by id with that error, not a 404:
    'the subscription answers 403' must stay a coverage gap, never become evidence of absence."""
    write_tenant(tmp_path, {
        sub_list("privateLinkServices", SUB2) + ".error": {"status": 403, "error": {"code": "AuthorizationFailed"}},
    })
    with pytest.raises(ReadError) as e:
        RecordedTenant(tmp_path).get(f"{net(SUB2, 'rg-p')}/privateLinkServices/pls1", kind="target")
    assert (e.value.status, e.value.code) == (403, "AuthorizationFailed")


def test_reads_under_a_refused_subscription_are_refused(tmp_path: Path) -> None:
    """`subscriptions/<s>.error.json` (a subscription the identity cannot read) refuses every list and resource
    below it with its 403, never an empty list or a 404; the association naming an RMPL there is a gap."""
    rmpl = f"/subscriptions/{SUB2}/resourceGroups/rg/providers/Microsoft.Authorization/resourceManagementPrivateLinks/r"
    write_tenant(tmp_path, {
        f"subscriptions/{SUB2}.error": {"status": 403, "error": {"code": "AuthorizationFailed", "message": "no"}},
        f"{MG}/{TENANT}/{PLA}": {"value": [{"id": f"/{MG}/{TENANT}/{PLA}/a1", "name": "a1",
                                            "properties": {"privateLink": rmpl, "scope": f"/{MG}/{TENANT}"}}]},
    }, subscriptions=[SUB, SUB2])
    t = RecordedTenant(tmp_path)
    for path in (sub_list("privateEndpoints", SUB2), rmpl):
        with pytest.raises(ReadError) as e:
            t.get(path, kind="x")
        assert (e.value.status, e.value.code) == (403, "AuthorizationFailed")
    assert t.get(sub_list("privateEndpoints"), kind="x") == {"value": []}  # a readable subscription: as before
    snap = build_snapshot(collect(t, manifest=t.manifest, workers=1))
    from plmon.checks.engine import evaluate
    assert not [f for f in evaluate(snap).findings if f.check_id == "rmpl.association-dangling"]
    assert any(g.status == 403 and g.scope.lower() == rmpl.lower() for g in snap.coverage.gaps)


def _answer(t: RecordedTenant, path: str) -> Any:
    try:
        return t.get(path, kind="x")
    except ReadError as err:
        return (err.status, err.code, err.message)


def test_a_trusted_index_answers_every_read_as_the_walk_on_disk_does(tmp_path: Path) -> None:
    """trust_index (a one-shot scan) answers a path the index lacks without looking on disk: the same answer as
    the walk, for hits, missing lists, 404s, refused scopes and lists, and items held only in a list."""
    pls = f"{net(SUB2, 'rg-p')}/privateLinkServices/pls1"
    write_tenant(tmp_path, {
        sub_list("privateLinkServices", SUB2): {"value": [{"id": pls, "name": "pls1"}]},
        sub_list("loadBalancers", SUB2) + ".error": {"status": 403, "error": {"code": "AuthorizationFailed"}},
        f"subscriptions/{SUB2}/resourceGroups/rg-x.error": {"status": 403, "error": {"code": "Denied"}},
    }, subscriptions=[SUB, SUB2])
    paths = [pls, pls.upper(), f"{net(SUB2, 'rg-p')}/privateLinkServices/pls9", sub_list("privateEndpoints"),
             sub_list("privateEndpoints", SUB2), f"{net(SUB2, 'rg-p')}/loadBalancers/lb1",
             f"{net(SUB2, 'rg-x')}/privateEndpoints", f"{net(SUB2, 'rg-x')}/privateEndpoints/pe1",
             f"{net()}/privateEndpoints/pe1/privateDnsZoneGroups", f"subscriptions/{SUB}", "subscriptions"]
    walking, trusting = RecordedTenant(tmp_path), RecordedTenant(tmp_path)
    trusting.trust_index()
    assert trusting._trusted
    for path in paths:
        assert _answer(trusting, path.lstrip("/")) == _answer(walking, path.lstrip("/")), path


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks")
def test_a_symlinked_folder_keeps_the_walk_on_disk(tmp_path: Path) -> None:
    """The index does not follow a symlinked folder, but a lookup on disk does: with one, trust_index leaves the
    walk in place, so the files below it are still read."""
    elsewhere = tmp_path / "elsewhere"
    write_tenant(elsewhere, {sub_list("privateEndpoints"): {"value": [{"id": f"{net()}/privateEndpoints/pe1"}]}})
    tenant = tmp_path / "tenant"
    write_tenant(tenant, {})
    (tenant / "arm" / "subscriptions" / SUB).mkdir(parents=True, exist_ok=True)
    (tenant / "arm" / "subscriptions" / SUB / "providers").symlink_to(elsewhere / "arm" / "subscriptions" / SUB /
                                                                      "providers")
    t = RecordedTenant(tenant)
    t.trust_index()
    assert not t._trusted
    assert t.get(sub_list("privateEndpoints"), kind="x")["value"][0]["id"].endswith("/pe1")


def test_a_trusted_miss_walks_the_scopes_only_below_an_error_file(tmp_path: Path) -> None:
    """Proves: with the index trusted, a path no file answers skips the walk of its scopes unless an error file
    names one of them; below one it is still that scope's refusal, and the answers are the walk's."""
    write_tenant(tmp_path, {
        f"subscriptions/{SUB2}/resourceGroups/rg-x.error": {"status": 403, "error": {"code": "Denied"}},
    }, subscriptions=[SUB, SUB2])
    walking, trusting = RecordedTenant(tmp_path), RecordedTenant(tmp_path)
    trusting.trust_index()
    walked: list[str] = []
    walk = trusting._list_items.refused_scope
    trusting._list_items.refused_scope = lambda path: walked.append(path) or walk(path)  # type: ignore[method-assign]
    free = [f"{net()}/privateEndpoints/pe1/privateDnsZoneGroups", f"{net()}/privateEndpoints/pe1",
            f"{net(SUB2, 'rg-y')}/privateEndpoints", sub_list("privateEndpoints", SUB2)]
    refused = [f"{net(SUB2, 'rg-x')}/privateEndpoints", f"{net(SUB2, 'rg-X')}/privateEndpoints/pe1",
               f"subscriptions/{SUB2}//resourceGroups/rg-y/providers/Microsoft.Network/privateEndpoints"]
    for path in free + refused:
        assert _answer(trusting, path.lstrip("/")) == _answer(walking, path.lstrip("/")), path
    assert _answer(trusting, refused[0].lstrip("/"))[:2] == (403, "Denied")
    assert walked == [p.lstrip("/") for p in refused] + [refused[0].lstrip("/")]


def test_typed_decoder_is_imported_only_for_a_trusted_folder() -> None:
    """Proves: the CLI and a recorded folder's collection load neither the typed decoder nor msgspec until
    trust_index() asks for them (a by-id read of an item held only in a list imports msgspec when it first splits
    one)."""
    demo = Path(__file__).resolve().parents[3] / "monitor" / "demo_tenant"
    code = ("import sys\n"
            "from plmon.monitor.cli.root import cli\n"
            "from plmon.monitor.collect.plan import collect\n"
            "from plmon.monitor.collect.recorded import RecordedTenant\n"
            f"t = RecordedTenant({str(demo)!r})\n"
            "collect(t, manifest=t.manifest, workers=1)\n"
            "print('@@', sorted(m for m in sys.modules if m.startswith('msgspec') or m.endswith('.typed'))[:1])\n"
            "t.trust_index()\n"
            "print('@@', 'msgspec' in sys.modules and 'plmon.monitor.collect.typed' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert [line for line in out.splitlines() if line.startswith("@@")] == ["@@ []", "@@ True"]


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 8 * 3 + 5])
def test_read_bytes_gives_a_file_whole_at_any_size_against_the_read_size(tmp_path: Path, size: int,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Proves: a file read through the descriptor comes back byte for byte whether it is empty, shorter than one
    read, exactly one read or several, and a directory fails as open().read() fails on one."""
    from plmon.monitor.collect import recorded

    monkeypatch.setattr(recorded, "_CHUNK", 8)
    data = bytes(range(256))[:size] if size <= 256 else os.urandom(size)
    (tmp_path / "f.json").write_bytes(data)
    assert recorded._read_bytes(str(tmp_path / "f.json")) == data
    with pytest.raises(IsADirectoryError):
        recorded._read_bytes(str(tmp_path))
