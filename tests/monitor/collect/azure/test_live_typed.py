"""The live reader's typed decoding (``LiveReader.decode_typed``): a one-shot scan's bulk answers decoded straight
from their bytes, and everything the typed decoder does not take read the generic way, as before."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from live_tenants import PAAS, rich_tenant
from tenantkit import sub_list

from plmon.monitor.collect.azure.credentials import StaticTokenCredential
from plmon.monitor.collect.azure.live import LiveReader, LiveSettings
from plmon.monitor.collect.inventory import ListUnit, Prebuilt, TargetUnit
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import load_config
from plmon.monitor.replay.server import ReplayServer
from plmon.monitor.scan import ScanResult, run_scan

FAST = {"retry_backoff_factor": 0.01, "retry_backoff_max": 0.05, "read_timeout": 60.0}
STORAGE = f"{PAAS}/Microsoft.Storage/storageAccounts/st1"


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rich_tenant(tmp_path_factory.mktemp("rich"), endpoints=30)


def reader_for(server: ReplayServer, *, typed: bool = True) -> LiveReader:
    reader = LiveReader(StaticTokenCredential("test-token"),
                        LiveSettings(arm_endpoint=server.base_url, ca_bundle=server.ca_bundle, **FAST))
    if typed:
        reader.decode_typed()
    return reader


def scan_of(reader: Any, folder: Path) -> ScanResult:
    return run_scan(reader, load_config(None), manifest=RecordedTenant(folder).manifest)


def outcome(result: ScanResult) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    return ([f.to_dict() for f in result.evaluation.findings],
            sorted((g.scope, g.type, g.code, g.status) for g in result.gaps))


def test_a_typed_live_scan_gives_the_offline_findings_and_gaps(tenant: Path) -> None:
    """Proves: with the bulk answers decoded typed (one page each), a live scan finds what scan --from finds."""
    offline = scan_of(RecordedTenant(tenant), tenant)
    with ReplayServer(tenant, page_size=1000) as server, reader_for(server) as reader:
        live = scan_of(reader, tenant)
    assert len(offline.evaluation.findings) >= 15
    assert outcome(live) == outcome(offline)


def test_a_paged_typed_live_scan_gives_the_offline_findings_and_gaps(tenant: Path) -> None:
    """Proves: lists answered over several pages (decoded the generic way and merged) still give scan --from's
    findings when the reader decodes typed."""
    offline = scan_of(RecordedTenant(tenant), tenant)
    with ReplayServer(tenant, page_size=2) as server, reader_for(server) as reader:
        live = scan_of(reader, tenant)
    assert outcome(live) == outcome(offline)


def test_a_one_page_bulk_list_is_handed_over_as_its_typed_unit(tenant: Path) -> None:
    """Proves: a bulk list answered on one page comes back as the unit the typed decoder built (no raw items)."""
    with ReplayServer(tenant, page_size=1000) as server, reader_for(server) as reader:
        body = reader.get(sub_list("privateEndpoints"), kind="privateEndpoints")
    assert set(body) == {"value"}
    assert isinstance(body["value"], Prebuilt) and isinstance(body["value"].unit, ListUnit)


def test_a_list_on_several_pages_is_merged_from_plain_pages(tenant: Path) -> None:
    """Proves: a list whose answer names a next page is not decoded typed (that page alone would be a partial
    unit): its pages are merged as plain items, equal to the recorded list."""
    want = RecordedTenant(tenant).get(sub_list("privateEndpoints"), kind="privateEndpoints")
    with ReplayServer(tenant, page_size=2) as server, reader_for(server) as reader:
        body = reader.get(sub_list("privateEndpoints"), kind="privateEndpoints")
    assert body == want
    assert not isinstance(body["value"], Prebuilt) and len(body["value"]) > 2


def test_a_target_read_by_id_is_handed_over_as_its_typed_unit(tenant: Path) -> None:
    """Proves: a private-link target read by id comes back as the typed decoder's target unit."""
    with ReplayServer(tenant) as server, reader_for(server) as reader:
        body = reader.get(STORAGE.strip("/"), kind="target")
    assert isinstance(body, Prebuilt) and isinstance(body.unit, TargetUnit)


def test_without_decode_typed_every_answer_is_plain_json(tenant: Path) -> None:
    """Proves: a reader not told to decode typed (a recording, the daemon) gets the plain documents, as before."""
    recorded = RecordedTenant(tenant)
    with ReplayServer(tenant, page_size=1000) as server, reader_for(server, typed=False) as reader:
        body = reader.get(sub_list("privateEndpoints"), kind="privateEndpoints")
        target = reader.get(STORAGE.strip("/"), kind="target")
    assert body == recorded.get(sub_list("privateEndpoints"), kind="privateEndpoints")
    assert not isinstance(body["value"], Prebuilt)
    assert target == recorded.get(STORAGE, kind="target") and isinstance(target, dict)


def test_an_answer_the_typed_decoder_refuses_is_read_the_generic_way(tmp_path: Path) -> None:
    """Proves: an answer holding an escape (which the typed decoder refuses) is decoded as plain JSON, unchanged."""
    folder = rich_tenant(tmp_path)
    lst = folder / "arm" / (sub_list("privateEndpoints").strip("/") + ".json")
    text = lst.read_text(encoding="utf-8")
    assert '"pe-' in text
    lst.write_text(text.replace('"pe-', '"p\\u0065-', 1), encoding="utf-8")
    want = RecordedTenant(folder).get(sub_list("privateEndpoints"), kind="privateEndpoints")
    with ReplayServer(folder, page_size=1000) as server, reader_for(server) as reader:
        body = reader.get(sub_list("privateEndpoints"), kind="privateEndpoints")
    assert body == want and not isinstance(body["value"], Prebuilt)
