"""Property-based fuzzing of the recorded-tenant source and the snapshot builder with mutated real payloads.

Whatever the payloads hold, a scan produces findings, coverage gaps or an InputError: never another
exception. The payloads start from the Microsoft examples and a hand-made tenant, then hypothesis
deletes keys, swaps types, nulls lists, changes casing, inflates strings and breaks ids.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tenantkit import SUB, TENANT, endpoint, example, net, provider_connection, storage_account, sub_list, write_tenant

from plmon.monitor.collect.builder import build_snapshot
from plmon.monitor.collect.plan import RawInventory
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import parse_config
from plmon.monitor.errors import InputError
from plmon.monitor.scan import run_scan, scan_document

MG = "providers/Microsoft.Management/managementGroups"
PLA = "providers/Microsoft.Authorization/privateLinkAssociations"
ST = storage_account("st1", connections=[provider_connection(
    storage_account("st1")["id"], f"{net()}/privateEndpoints/pe1", status="Pending", storage_spelling=True)])


def _base_files() -> dict[str, Any]:
    """A tenant that exercises every family of the foundation: real example bodies plus hand-made ones."""
    pe_list = example("network/PrivateEndpointList.json")
    pe_list["value"].append(endpoint("pe1", ST["id"], status="Pending"))
    return {
        sub_list("privateEndpoints"): pe_list,
        sub_list("privateLinkServices"): example("network/PrivateLinkServiceList.json"),
        sub_list("virtualNetworks"): {"value": [example("network/VirtualNetworkGet.json")]},
        sub_list("resourceManagementPrivateLinks", provider="Microsoft.Authorization"):
            example("authorization/ListResourceManagementPrivateLink.json"),
        f"{MG}/{TENANT}/{PLA}": example("authorization/GetPrivateLinkAssociation.json"),
        ST["id"]: ST,
    }


BASE = _base_files()
CONFIG = parse_config({}, env={})

_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                  st.text(max_size=20), st.just("x" * 200_000), st.just("/provders/x/y"),
                  st.just("00000000-0000-0000-0000-000000000000"), st.just("/subscriptions//resourceGroups/"))
_junk = st.recursive(_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                    st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                     max_leaves=6)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document."""
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


@st.composite
def mutation(draw: st.DrawFn, doc: Any) -> Any:
    """One mutation of ``doc``: delete, replace with junk/null, recase, inflate, or break an id."""
    doc = copy.deepcopy(doc)
    paths = _paths(doc)
    path = draw(st.sampled_from(paths))
    op = draw(st.sampled_from(["delete", "junk", "null", "case", "huge", "badid", "nondict", "empty",
                               "surrogate"]))
    if not path:
        return draw(_junk) if op in ("junk", "null") else doc
    parent, key = _get(doc, path[:-1]), path[-1]
    value = parent[key]
    if op == "delete":
        del parent[key]
    elif op == "junk":
        parent[key] = draw(_junk)
    elif op == "null":
        parent[key] = None
    elif op == "case" and isinstance(value, str):
        parent[key] = draw(st.sampled_from([value.upper(), value.lower(), value.swapcase()]))
    elif op == "huge":
        parent[key] = ("A" * 100_000) if not isinstance(value, list) else value * 10
    elif op == "badid" and isinstance(value, str):
        parent[key] = draw(st.sampled_from(["", "/", value.replace("providers", "provders"), "not-an-id",
                                            value + "/extra", value.replace("/", "//")]))
    elif op == "nondict" and isinstance(value, list):
        parent[key] = [*value, draw(_leaf)]
    elif op == "empty":
        parent[key] = {} if isinstance(value, dict) else []
    elif op == "surrogate" and isinstance(value, str):
        # Half of a UTF-16 pair, as JSON can spell it ("\ud83d"): no UTF-8 output can encode it raw.
        parent[key] = value + draw(st.sampled_from(["\ud83d", "\udc00", "\udfff\ud800"]))
    return doc


@st.composite
def mutated_tenant(draw: st.DrawFn) -> dict[str, Any]:
    files = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from(sorted(files)))
        files[name] = draw(mutation(files[name]))
    return files


def _scan(folder: Path) -> dict[str, Any]:
    reader = RecordedTenant(folder)
    result = run_scan(reader, CONFIG, manifest=reader.manifest, workers=1)
    doc = scan_document(result)
    json.dumps(doc, ensure_ascii=False).encode("utf-8")  # the document must serialise, as UTF-8 too
    return doc


def test_unmutated_base_tenant_scans() -> None:
    """The fuzzing base itself scans and finds something (so mutations start from a meaningful tenant)."""
    with tempfile.TemporaryDirectory() as d:
        doc = _scan(write_tenant(Path(d), copy.deepcopy(BASE)))
    assert doc["findings"]


# Each example writes a tenant folder (real files) and runs the real plan, builder and engine.
# Bounded so the suite stays fast on a 2-core machine: 60 examples, and list inflation x10 (x50 compounded
# over four mutations made single examples take tens of seconds without finding anything new).
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=mutated_tenant())
def test_mutated_payloads_never_raise(files: dict[str, Any]) -> None:
    """Mutated payloads produce findings and gaps, never an exception (InputError is not expected here:
    every file is valid JSON)."""
    d = tempfile.mkdtemp()
    try:
        write_tenant(Path(d), files)
        doc = _scan(Path(d))
        assert isinstance(doc["findings"], list) and isinstance(doc["coverage"]["gaps"], list)
    finally:
        shutil.rmtree(d)


@settings(max_examples=60, deadline=None)
@given(manifest=_junk, extra=st.dictionaries(st.sampled_from(["tenant_id", "recorded_at", "cloud"]), _junk))
def test_mutated_manifest_scans_or_input_error(manifest: Any, extra: dict[str, Any]) -> None:
    """Any JSON manifest gives a scan or a clear InputError."""
    d = Path(tempfile.mkdtemp())
    try:
        write_tenant(d, {sub_list("privateEndpoints"): {"value": [endpoint("pe1", ST["id"])]}})
        body = {**manifest, **extra} if isinstance(manifest, dict) else manifest
        (d / "manifest.json").write_text(json.dumps(body))
        try:
            _scan(d)
        except InputError as err:
            assert "manifest" in str(err)
    finally:
        shutil.rmtree(d)


@settings(max_examples=60, deadline=None)
@given(text=st.one_of(st.text(max_size=40), st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
                      st.sampled_from(['{"value": [', "[]", "null", '{"status": 200}', "NaN", "1e999",
                                       "[" * 100_000, '{"value": ' * 50_000, '{"value": [' + "[" * 100_000,
                                       '{"value": [{"id": "/subscriptions/x\\ud83d", "name": "\\udc00"}]}',
                                       '{"\\ud800": "\\udfff", "value": []}'])),
       name=st.sampled_from([sub_list("privateEndpoints"), "subscriptions", f"{MG}",
                             sub_list("privateEndpoints") + ".error"]))
def test_garbage_files_scan_or_input_error(text: str, name: str) -> None:
    """A file of arbitrary text gives a scan (with gaps) or an InputError, never anything else."""
    d = Path(tempfile.mkdtemp())
    try:
        write_tenant(d, {})
        f = d / "arm" / (name + ".json")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text, encoding="utf-8", errors="surrogateescape")
        with contextlib.suppress(InputError):
            _scan(d)
    finally:
        shutil.rmtree(d)


@settings(max_examples=150, deadline=None)
@given(items=st.lists(_junk, max_size=4), kind=st.sampled_from([
    "privateEndpoints", "privateLinkServices", "virtualNetworks", "routeTables", "networkSecurityGroups",
    "azureFirewalls", "firewallPolicies", "loadBalancers", "networkInterfaces", "bastionHosts",
    "privateDnsZones", "resourceManagementPrivateLinks"]))
def test_builder_survives_arbitrary_list_items(items: list[Any], kind: str) -> None:
    """build_snapshot on lists of arbitrary JSON values never raises; bad items become gaps."""
    inv = RawInventory(manifest={"tenant_id": TENANT}, subscriptions=[{"subscriptionId": SUB}])
    inv.lists[kind] = items
    inv.associations = [("g", i) for i in items]
    inv.targets = {f"/x/{i}": v for i, v in enumerate(items)}
    snap = build_snapshot(inv)
    assert snap.coverage.subscriptions_scanned == 1


def test_huge_and_deep_payload_is_handled() -> None:
    """A large list and a deeply nested body do not break the scan."""
    d = Path(tempfile.mkdtemp())
    try:
        deep: Any = []
        for _ in range(500):
            deep = [deep]
        pes = [endpoint(f"pe{i}", ST["id"]) for i in range(300)]
        pes.append({"id": f"{net()}/privateEndpoints/deep", "properties": {"privateLinkServiceConnections": deep}})
        write_tenant(d, {sub_list("privateEndpoints"): {"value": pes}, ST["id"]: ST})
        doc = _scan(d)
        assert doc["summary"]["resources_evaluated"] >= 301
    finally:
        shutil.rmtree(d)


@settings(max_examples=12, deadline=None)
@given(depth=st.sampled_from([10, 900, 1_000, 5_000, 100_000]), opener=st.sampled_from(["[", '{"a": ', '[{"v": ']),
       name=st.sampled_from([sub_list("privateEndpoints"), sub_list("virtualNetworks"), "subscriptions",
                             ST["id"]]))
def test_nesting_of_any_depth_scans_or_is_input_error(depth: int, opener: str, name: str) -> None:
    """A recorded file nested to any depth (up to 100,000) gives a scan or an InputError saying so, never a
    RecursionError."""
    d = Path(tempfile.mkdtemp())
    try:
        write_tenant(d, {ST["id"]: ST})
        f = d / "arm" / (name.strip("/") + ".json")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(opener * depth + "1" + {"[": "]", '{"a": ': "}", '[{"v": ': "}]"}[opener] * depth)
        try:
            _scan(d)
        except InputError as err:
            assert "nested too deeply" in str(err)
    finally:
        shutil.rmtree(d)


# st.characters never yields surrogates (category Cs), so they are drawn as code points; at least one per text.
_surrogate = st.integers(0xD800, 0xDFFF).map(chr)
_hostile = st.tuples(st.text(st.one_of(_surrogate, st.characters(codec="utf-8"),
                                       st.sampled_from("<>&'\"=+-@|*_[]`\x1b")), max_size=10),
                     _surrogate).map(lambda parts: parts[0] + parts[1])


@settings(max_examples=15, deadline=None)
@given(name=_hostile, message=_hostile)
def test_lone_surrogates_render_in_every_report_format(name: str, message: str) -> None:
    """Names and request messages holding lone surrogates (anywhere, any number) render in every report format
    as UTF-8: the recorded source makes them visible escapes before anything prints them."""
    from plmon.monitor.reports import FORMATS, build_report, render

    d = Path(tempfile.mkdtemp())
    try:
        pe = endpoint("pe-" + name, ST["id"], status="Pending")
        pe["properties"]["privateLinkServiceConnections"][0]["properties"]["privateLinkServiceConnectionState"][
            "description"] = message
        write_tenant(d, {sub_list("privateEndpoints"): {"value": [pe]}, ST["id"]: ST})
        reader = RecordedTenant(d)
        result = run_scan(reader, CONFIG, manifest=reader.manifest, workers=1)
        assert result.evaluation.findings
        report = build_report(result)
        for fmt in FORMATS:
            render(report, fmt).encode("utf-8")
    finally:
        shutil.rmtree(d)
