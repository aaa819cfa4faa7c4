"""A recorded tenant folder that changes while it is read: files added after start are found (any case,
new directories too), deleted ones read as missing, and a running daemon alerts on a resource whose
file appeared after it started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from daemonkit import ACCOUNT_ID, PUBLIC_CHECK, config, event, receiver, serving, tenant
from tenantkit import SUB, endpoint, provider_connection, storage_account, sub_list, write_tenant

from plmon.monitor.collect.plan import ReadError
from plmon.monitor.collect.recorded import RecordedTenant

SUB9 = "99999999-9999-9999-9999-999999999999"


def _write(folder: Path, rel: str, body: object) -> None:
    path = folder / "arm" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))


def test_files_added_after_start_are_found_case_insensitively(tmp_path):
    """A list in a new subscription directory and an error file, both written after indexing, answer reads
    made in another casing; a path still absent is an empty list or a 404 as before."""
    folder = write_tenant(tmp_path / "t", {sub_list("privateEndpoints"): {"value": []}})
    reader = RecordedTenant(folder)
    lower_path = f"subscriptions/{SUB9}/providers/microsoft.network/routetables"
    assert reader.get(lower_path, kind="routeTables") == {"value": []}
    _write(folder, f"subscriptions/{SUB9}/providers/Microsoft.Network/routeTables.json", {"value": [{"id": "rt"}]})
    assert reader.get(lower_path, kind="routeTables") == {"value": [{"id": "rt"}]}
    _write(folder, f"subscriptions/{SUB9}/providers/Microsoft.Network/virtualNetworks.error.json",
           {"status": 403, "error": {"code": "AuthorizationFailed", "message": "no"}})
    with pytest.raises(ReadError) as err:
        reader.get(f"/SUBSCRIPTIONS/{SUB9}/providers/Microsoft.Network/virtualNetworks", kind="virtualNetworks")
    assert err.value.status == 403
    with pytest.raises(ReadError) as missing:
        reader.get(f"subscriptions/{SUB9}/resourceGroups/rg/providers/Microsoft.Network/routeTables/nope", kind="x")
    assert missing.value.status == 404


def test_file_deleted_after_start_reads_as_missing(tmp_path):
    """A file removed after indexing is an empty collection, not a read error."""
    folder = write_tenant(tmp_path / "t", {sub_list("routeTables"): {"value": [{"id": "rt"}]}})
    reader = RecordedTenant(folder)
    (folder / "arm" / f"{sub_list('routeTables')}.json").unlink()
    assert reader.get(sub_list("routeTables"), kind="routeTables") == {"value": []}


def test_daemon_alerts_on_a_resource_whose_file_appeared_after_start(tmp_path):
    """A new endpoint to a new, publicly open storage account, both written while the daemon runs, plus the
    endpoint's write event, give the public-access alert for the new account."""
    folder = tenant(tmp_path / "t")
    with receiver() as rec, serving(folder, config(rec.url), tmp_path / "state.db") as srv:
        st2_path = f"subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Storage/storageAccounts/st2"
        st2_id, pe2_id = "/" + st2_path, f"/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.Network/" \
                                         "privateEndpoints/pe2"
        _write(folder, f"{st2_path}.json", storage_account("st2", public="Enabled",
                                                           connections=[provider_connection(st2_id, pe2_id)]))
        pe1 = endpoint("pe1", ACCOUNT_ID)
        _write(folder, f"{sub_list('privateEndpoints')}.json", {"value": [pe1, endpoint("pe2", st2_id)]})
        assert srv.post([event(pe2_id, op="Microsoft.Network/privateEndpoints/write")]).status_code == 200
        hits = rec.wait_for(lambda r: r.event["data"]["check_id"] == PUBLIC_CHECK
                            and r.event["data"]["resource_id"].lower() == st2_id.lower())
        assert hits, "no alert for the account whose file was added at run time"
