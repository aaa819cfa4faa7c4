"""Public network access on private-link targets: an endpoint does not close the public door by itself.

Seed: "private endpoints ... do not necessarily restrict public network access". Each type spells the
setting its own way (checks.md table); the raw values go into the evidence so a reader can see exactly
what plmon judged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

from checks.finding import Issue, Severity
from checks.links import connection_views
from checks.registry import check
from checks.remedy import az, fill
from monitor.snapshot import Snapshot, Target, TargetState, lower

PE_OVERVIEW = "https://learn.microsoft.com/azure/private-link/private-endpoint-overview"

# lower-case type -> the az command that disables public network access ({id} is filled in).
STRING_TYPES: dict[str, str] = {
    "microsoft.storage/storageaccounts": 'az storage account update --ids "{id}" --public-network-access Disabled',
    "microsoft.keyvault/vaults": 'az keyvault update --ids "{id}" --public-network-access Disabled',
    "microsoft.sql/servers": 'az sql server update --ids "{id}" --enable-public-network false',
    "microsoft.documentdb/databaseaccounts":
        'az cosmosdb update --ids "{id}" --public-network-access Disabled',
    "microsoft.containerregistry/registries": 'az acr update --ids "{id}" --public-network-enabled false',
    "microsoft.cognitiveservices/accounts":
        'az resource update --ids "{id}" --set properties.publicNetworkAccess=Disabled',
    "microsoft.eventhub/namespaces": 'az eventhubs namespace update --ids "{id}" --public-network-access Disabled',
    "microsoft.servicebus/namespaces":
        'az servicebus namespace update --ids "{id}" --public-network-access Disabled',
    "microsoft.appconfiguration/configurationstores":
        'az appconfig update --ids "{id}" --enable-public-network false',
    "microsoft.web/sites": 'az resource update --ids "{id}" --set properties.publicNetworkAccess=Disabled',
}
AUTOMATION = "microsoft.automation/automationaccounts"
AUTOMATION_FIX = 'az resource update --ids "{id}" --set properties.publicNetworkAccess=false'
APP_CONFIG = "microsoft.appconfiguration/configurationstores"
# Types whose targets have no public-access notion of their own: not "unknown".
NOT_APPLICABLE = ("microsoft.network/privatelinkservices", "microsoft.authorization/resourcemanagementprivatelinks")


def _approved_targets(snap: Snapshot) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for view in connection_views(snap):
        if view.status_key == "approved" and view.target_id is not None:
            out[view.target_id.key].append(view.endpoint_id.raw)
    return out


def public_access_allowed(t: Target) -> tuple[bool | None, str]:
    """(allowed, why) by the per-type table; None when the type is not in it."""
    type_key = lower(t.type)
    raw = t.public_network_access
    if type_key == AUTOMATION:
        if raw is False or lower(raw) in ("false", "disabled"):
            return False, "publicNetworkAccess is false"
        return True, "publicNetworkAccess is " + ("absent (defaults to allowed)" if not t.has_public_network_access
                                                  or raw is None else f"{raw!r}")
    if type_key not in STRING_TYPES:
        return None, f"type {t.type} is not in plmon's public-access table"
    value = lower(raw)
    if value == "disabled":
        return False, f"publicNetworkAccess is {raw}"
    if value == "securedbyperimeter":
        return False, ("publicNetworkAccess is SecuredByPerimeter: counted as not allowed, public access is "
                       "governed by the network security perimeter")
    if raw is None and type_key == APP_CONFIG:
        return False, ("publicNetworkAccess is null: App Configuration is public only until a private endpoint "
                       "exists, and this store has an Approved one")
    if raw is None:
        return True, "publicNetworkAccess is absent or null (counts as allowed)"
    return True, f"publicNetworkAccess is {raw!r}"


def _evidence(t: Target, endpoints: list[str], why: str) -> dict[str, Any]:
    ev: dict[str, Any] = {"type": t.type, "publicNetworkAccess": t.public_network_access,
                          "publicNetworkAccess_present": t.has_public_network_access, "judgement": why,
                          "approved_private_endpoints": sorted(set(endpoints))}
    if t.network_acls_default_action is not None:
        ev["networkAcls.defaultAction"] = t.network_acls_default_action
    return ev


@check(
    id="public-access.enabled-with-private-endpoint",
    title="Resource with an approved private endpoint still allows public network access",
    severity=Severity.HIGH,
    rationale="A private endpoint adds a private path but does not close the public one: until public network "
              "access is disabled, the resource stays reachable from the internet and exfiltration controls "
              "built on the private path can be bypassed.",
    remediation="Disable public network access on the resource once clients use the private endpoint.",
    # CIS 3.7: CIS Microsoft Azure Foundations v2.1.0 "Ensure that 'Public Network Access' is 'Disabled' for
    # storage accounts" (the storage case of this check).
    references=(PE_OVERVIEW,), controls=("MCSB NS-2", "CIS 3.7"),
)
def enabled_with_private_endpoint(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    approved = _approved_targets(snap)
    for key in sorted(approved):
        t = snap.targets.get(key)
        if t is None or t.state != TargetState.READ:
            continue
        allowed, why = public_access_allowed(t)
        if allowed is not True:
            continue
        fix = AUTOMATION_FIX if lower(t.type) == AUTOMATION else STRING_TYPES[lower(t.type)]
        yield Issue(t.id, f"{t.name} has an Approved private endpoint but still allows public network access "
                    f"({why}).", _evidence(t, approved[key], why), fill(fix, id=t.id.raw))


@check(
    id="public-access.unknown", title="Public network access of a private-link target cannot be judged",
    severity=Severity.INFO,
    rationale="A target plmon cannot read, or whose type it has no rule for, might still be public; it is "
              "listed so that a report never counts it as compliant.",
    remediation="Grant plmon read access to the resource, or check its public network access by hand.",
    references=(PE_OVERVIEW,), controls=("MCSB NS-2",),
)
def unknown(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    approved = _approved_targets(snap)
    for key in sorted(approved):
        t = snap.targets.get(key)
        if t is None or lower(t.type) in NOT_APPLICABLE or t.state == TargetState.NOT_FOUND:
            continue
        if t.state == TargetState.UNREADABLE:
            yield Issue(t.id, f"{t.name} has an Approved private endpoint but cannot be read "
                        f"({t.error_status} {t.error_code}): its public network access is unknown.",
                        {"type": t.type, "error_status": t.error_status, "error_code": t.error_code,
                         "approved_private_endpoints": sorted(set(approved[key]))},
                        az("resource", "show", "--ids", t.id.raw, "--query", "properties.publicNetworkAccess"))
            continue
        allowed, why = public_access_allowed(t)
        if allowed is None:
            yield Issue(t.id, f"{t.name} ({t.type}) has an Approved private endpoint; plmon has no rule for "
                        "this type's public network access.", _evidence(t, approved[key], why),
                        az("resource", "show", "--ids", t.id.raw, "--query", "properties.publicNetworkAccess"))
