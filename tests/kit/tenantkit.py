"""Build recorded tenants (recorded-tenant.md) in a folder from Python data, for tests.

Tests describe a tenant as ARM bodies keyed by request path, exactly as the folder stores them, so a
test reads like the payloads it replays. Helpers fill the ids ARM would, nothing more.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SUB = "11111111-1111-1111-1111-111111111111"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
RECORDED_AT = "2026-11-01T12:00:00Z"


def example(name: str) -> Any:
    """The 200 body of a Microsoft example copied into tests/fixtures/azure-examples/."""
    data = json.loads((Path(__file__).parents[1] / "fixtures" / "azure-examples" / name).read_text())
    responses = data.get("responses", {})
    for status in ("200", "201"):
        if status in responses:
            return responses[status]["body"]
    return data


def write_tenant(folder: Path, files: dict[str, Any], *, tenant_id: str = TENANT,
                 recorded_at: str = RECORDED_AT, subscriptions: list[str] | None = None) -> Path:
    """Write ``files`` ({request path: body}) plus a manifest and a subscriptions list.

    A path ending in ``.error`` becomes an ``.error.json`` file. ``subscriptions`` defaults to
    [SUB]; pass [] to leave the subscriptions list to ``files``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(
        {"tenant_id": tenant_id, "recorded_at": recorded_at, "cloud": "AzureCloud"}))
    subs = [SUB] if subscriptions is None else subscriptions
    if subs and "subscriptions" not in files:
        files = {"subscriptions": {"value": [{"subscriptionId": s, "tenantId": tenant_id,
                                              "displayName": f"sub-{s[:4]}", "state": "Enabled"}
                                             for s in subs]}, **files}
    for path, body in files.items():
        rel = path.strip("/")
        target = folder / "arm" / (rel + ".json")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(body, indent=1))
    return folder


def net(sub: str = SUB, rg: str = "rg1") -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network"


def sub_list(kind: str, sub: str = SUB, provider: str = "Microsoft.Network") -> str:
    """The request path of a per-subscription list, e.g. sub_list("privateEndpoints")."""
    return f"subscriptions/{sub}/providers/{provider}/{kind}"


def endpoint(name: str, target: str, *, status: str = "Approved", manual: bool = False,
             group_ids: tuple[str, ...] = ("blob",), subnet: str | None = None, ip: str = "10.0.1.4",
             rg: str = "rg1", sub: str = SUB, actions_required: str = "None",
             provisioning_state: str = "Succeeded", request_message: str | None = None) -> dict[str, Any]:
    pe_id = f"{net(sub, rg)}/privateEndpoints/{name}"
    conn = {"id": f"{pe_id}/{'manualP' if manual else 'p'}rivateLinkServiceConnections/{name}-conn",
            "name": f"{name}-conn",
            "properties": {"privateLinkServiceId": target, "groupIds": list(group_ids),
                           "privateLinkServiceConnectionState": {
                               "status": status, "description": "", "actionsRequired": actions_required}}}
    if request_message is not None:
        conn["properties"]["requestMessage"] = request_message
    return {"id": pe_id, "name": name, "type": "Microsoft.Network/privateEndpoints", "location": "westeurope",
            "properties": {
                "provisioningState": provisioning_state,
                "subnet": {"id": subnet or f"{net(sub, rg)}/virtualNetworks/vnet1/subnets/pe"},
                "privateLinkServiceConnections": [] if manual else [conn],
                "manualPrivateLinkServiceConnections": [conn] if manual else [],
                "ipConfigurations": [{"name": "ipc", "properties": {"privateIPAddress": ip}}],
                "customDnsConfigs": []}}


def provider_connection(owner_id: str, endpoint_id: str, *, status: str = "Approved", name: str | None = None,
                        actions_required: str = "None", storage_spelling: bool = False) -> dict[str, Any]:
    key = "actionRequired" if storage_spelling else "actionsRequired"
    cname = name or endpoint_id.rsplit("/", 1)[-1] + ".conn"
    return {"id": f"{owner_id}/privateEndpointConnections/{cname}", "name": cname,
            "type": owner_id.split("/providers/", 1)[-1].rsplit("/", 1)[0] + "/privateEndpointConnections",
            "properties": {"privateEndpoint": {"id": endpoint_id},
                           "privateLinkServiceConnectionState": {"status": status, "description": "",
                                                                 key: actions_required},
                           "provisioningState": "Succeeded"}}


def storage_account(name: str, *, public: str | None = "Enabled", connections: list[dict[str, Any]] | None = None,
                    rg: str = "rg1", sub: str = SUB) -> dict[str, Any]:
    sid = f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{name}"
    props: dict[str, Any] = {"privateEndpointConnections": connections or [],
                             "networkAcls": {"defaultAction": "Allow"}}
    if public is not None:
        props["publicNetworkAccess"] = public
    return {"id": sid, "name": name, "type": "Microsoft.Storage/storageAccounts", "properties": props}
