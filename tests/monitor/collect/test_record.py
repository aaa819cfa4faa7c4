"""plmon record: a live collection written as a recorded tenant, plain and redacted, scans as the original."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from live_tenants import rich_tenant
from tenantkit import SUB, TENANT

from plmon.monitor.collect.azure.credentials import StaticTokenCredential
from plmon.monitor.collect.azure.live import LiveReader, LiveSettings
from plmon.monitor.collect.record import record
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.collect.redact import Redactor
from plmon.monitor.collect.sources import Source
from plmon.monitor.config import load_config
from plmon.monitor.errors import InputError
from plmon.monitor.replay.server import ReplayServer
from plmon.monitor.scan import ScanResult, run_scan


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rich_tenant(tmp_path_factory.mktemp("rich"))


def offline(folder: Path) -> ScanResult:
    recorded = RecordedTenant(folder)
    return run_scan(recorded, load_config(None), manifest=recorded.manifest)


def record_from_replay(tenant: Path, out: Path, **kwargs: Any) -> Redactor | None:
    with ReplayServer(tenant, page_size=2, throttle_every=9, retry_after=0.01) as server:
        reader = LiveReader(StaticTokenCredential("t"), LiveSettings(
            arm_endpoint=server.base_url, ca_bundle=server.ca_bundle, retry_backoff_factor=0.01))
        with Source(reader, {"cloud": "Custom"}, live=reader) as source:
            _, redactor = record(source, out, **kwargs)
        assert set(server.methods) == {"GET"}
    return redactor


def keyed(result: ScanResult, rename: Any = lambda s: s) -> list[tuple[str, str, str]]:
    return sorted((f.check_id, rename(f.resource_id).lower(), f.severity.value) for f in result.evaluation.findings)


def test_round_trip_gives_identical_findings(tenant: Path, tmp_path: Path) -> None:
    """Proves: recording through the SDKs and scanning the recording offline gives the original's findings."""
    out = tmp_path / "rec"
    record_from_replay(tenant, out)
    original, replayed = offline(tenant), offline(out)
    assert [f.to_dict() for f in replayed.evaluation.findings] == [f.to_dict() for f in original.evaluation.findings]
    assert sorted(g.as_dict().items().__repr__() for g in replayed.gaps) == \
        sorted(g.as_dict().items().__repr__() for g in original.gaps)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tenant_id"] == TENANT and manifest["recorded_at"].endswith("Z") and manifest["cloud"]
    nics = out / "arm" / "subscriptions" / SUB / "providers" / "Microsoft.Network" / "networkInterfaces.error.json"
    assert json.loads(nics.read_text())["status"] == 403
    body = json.loads((out / "arm" / "subscriptions" / SUB / "providers" / "Microsoft.Network" /
                       "privateEndpoints.json").read_text())
    assert "nextLink" not in body and len(body["value"]) > 2


def test_redacted_recording_scans_to_the_same_findings_renamed(tenant: Path, tmp_path: Path) -> None:
    """Proves: --redact renames ids, names and tenant consistently and the findings survive, modulo renaming."""
    out = tmp_path / "red"
    redactor = record_from_replay(tenant, out, redact=True, salt=b"fixed")
    assert redactor is not None
    original, redacted = offline(tenant), offline(out)
    assert keyed(redacted) == keyed(original, redactor.path)
    assert len(keyed(original)) >= 15
    text = "\n".join(p.read_text() for p in out.rglob("*.json")) + "\n".join(str(p) for p in out.rglob("*"))
    for secret in (SUB, TENANT, "pe-st1", "/rg1/", "kv1"):
        assert secret.lower() not in text.lower(), secret
    assert "privatelink.blob.core.windows.net" in text   # zone names are kept: DNS checks need them
    assert "kv1" not in redactor.text("https://kv1.vault.azure.net/")
    assert redactor.path(f"/subscriptions/{SUB}/resourceGroups/RG1") == \
        redactor.path(f"/subscriptions/{SUB.upper()}/resourceGroups/rg1")


def test_record_refuses_a_folder_with_content(tenant: Path, tmp_path: Path) -> None:
    """Proves: a recording is never written over or into an existing one."""
    (tmp_path / "x.txt").write_text("keep")
    with pytest.raises(InputError, match="new or empty"):
        record(Source(RecordedTenant(tenant), {}), tmp_path)
