"""A recorded tenant for scoping and pass results: two resource groups told apart by tags, an endpoint whose target
sits in a resource group outside any tag scope, and one whose target is in a subscription plmon cannot read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tenantkit import SUB, endpoint, provider_connection, storage_account, sub_list, write_tenant

SUB_DENIED = "33333333-3333-3333-3333-333333333333"


def _tagged(body: dict[str, Any], **tags: str) -> dict[str, Any]:
    return {**body, "tags": tags}


def rid(body: dict[str, Any]) -> str:
    return str(body["id"])


def scope_tenant(folder: Path) -> Path:
    """pe-prod -> st-prod (public access on: a high finding on st-prod); pe-sandbox (tag owner=partner-team) is
    Rejected by st-prod (a medium finding); pe-cross (prod) -> st-out (rg-out, env=sandbox, private only: no
    finding); pe-gap (prod) -> a storage account in a subscription that answers 403."""
    st_prod_id = f"/subscriptions/{SUB}/resourceGroups/rg-prod/providers/Microsoft.Storage/storageAccounts/stprod"
    st_out_id = f"/subscriptions/{SUB}/resourceGroups/rg-out/providers/Microsoft.Storage/storageAccounts/stout"
    st_gap_id = f"/subscriptions/{SUB_DENIED}/resourceGroups/rg-x/providers/Microsoft.Storage/storageAccounts/stgap"
    pe_prod = _tagged(endpoint("pe-prod", st_prod_id, rg="rg-prod"), env="prod")
    pe_sandbox = _tagged(endpoint("pe-sandbox", st_prod_id, rg="rg-sandbox", status="Rejected"),
                         env="sandbox", owner="partner-team")
    pe_cross = _tagged(endpoint("pe-cross", st_out_id, rg="rg-prod"), env="prod")
    pe_gap = _tagged(endpoint("pe-gap", st_gap_id, rg="rg-prod"), env="prod")
    st_prod = _tagged(storage_account("stprod", rg="rg-prod", connections=[
        provider_connection(st_prod_id, rid(pe_prod)),
        provider_connection(st_prod_id, rid(pe_sandbox), status="Rejected")]), env="prod")
    st_out = _tagged(storage_account("stout", rg="rg-out", public="Disabled", connections=[
        provider_connection(st_out_id, rid(pe_cross))]), env="sandbox")
    denied = {"status": 403, "error": {"code": "AuthorizationFailed", "message": "no read on this subscription"}}
    return write_tenant(folder, {
        sub_list("privateEndpoints"): {"value": [pe_prod, pe_sandbox, pe_cross, pe_gap]},
        st_prod_id.strip("/"): st_prod, st_out_id.strip("/"): st_out,
        f"subscriptions/{SUB_DENIED}.error": denied,
    }, subscriptions=[SUB, SUB_DENIED])
