"""Resource Management Private Link checks: associations, their scope and public access, endpoints, DNS."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

from plmon.checks.finding import Issue, Severity
from plmon.checks.registry import ISO_27001, NIST_800_53, Evidences, check
from plmon.checks.remedy import az, chain
from plmon.checks.units import each
from plmon.monitor.model.arm_id import ArmId, normalise
from plmon.monitor.model.snapshot import Association, Rmpl, Snapshot, TargetState, lower

RMPL_DOC = "https://learn.microsoft.com/azure/azure-resource-manager/management/create-private-link-access-portal"
RMPL_REST = "https://learn.microsoft.com/azure/azure-resource-manager/management/create-private-link-access-rest"
BASTION_FAQ = "https://learn.microsoft.com/azure/bastion/bastion-faq"
RMPL_TYPE = "microsoft.authorization/resourcemanagementprivatelinks"


def _rmpl_for(snap: Snapshot, ref: ArmId | None) -> Rmpl | None:
    """The RMPL an association names. Real payloads sometimes give a bare GUID or short id instead of
    the full ARM id, so an opaque reference also matches an RMPL by its id or name."""
    if ref is None:
        return None
    found = snap.rmpls.get(ref.key)
    if found is not None or not ref.opaque:
        return found
    wanted = ref.raw.strip().strip("/").lower()
    for rmpl in snap.rmpls.values():
        if rmpl.id.key.strip("/") == wanted or rmpl.name.lower() == wanted:
            return rmpl
    return None


def _mg_of(a: Association) -> str:
    return a.id.management_group or a.listed_under or "<management-group-id>"


def _association_gaps(snap: Snapshot) -> bool:
    return any(g.type.lower() == "microsoft.authorization/privatelinkassociations" or
               g.type.lower() == "microsoft.management/managementgroups" for g in snap.coverage.gaps)


@check(
    id="rmpl.association-public-access-enabled",
    title="Resource management private link association keeps public access", severity=Severity.MEDIUM,
    rationale="With publicNetworkAccess Enabled, management operations over the public ARM endpoint "
              "remain possible for the scope, which defeats the private link.",
    remediation="Recreate the association with publicNetworkAccess Disabled. Note: current Azure docs "
                "do not let every tenant disable it yet; if yours cannot, record a waiver.",
    references=(RMPL_REST, RMPL_DOC), controls=("MCSB NS-2",),
    reads=("associations",),
    frameworks=(
        Evidences(NIST_800_53, "AC-17(3)",
                  "AC-17(3): management over the public ARM endpoint stays possible, not only through "
                  "the private link"),
        Evidences(ISO_27001, "A.8.20",
                  "A.8.20: the management plane stays reachable over the public network the private "
                  "link was meant to close"),
    ),
)
def association_public(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    for a in snap.associations.values():
        if lower(a.public_network_access) == "enabled":
            yield Issue(a.id, f"Association {a.name} allows public network access to management.",
                        {"publicNetworkAccess": a.public_network_access, "scope": a.scope,
                         "privateLink": a.private_link.raw if a.private_link else None},
                        az("private-link", "association", "create", "--management-group-id", _mg_of(a),
                           "--name", a.name, "--privatelink", a.private_link.raw if a.private_link else "<rmpl-id>",
                           "--public-network-access", "disabled",
                           comment="current Azure docs do not let every tenant disable public access; if yours "
                                   "cannot, waive this finding"))


@check(
    id="rmpl.association-not-root", title="Resource management private link associated below the root group",
    severity=Severity.HIGH,
    rationale="Associations apply to the whole tenant and are supported at the root management group "
              "only; one at another scope does not do what its owner expects.",
    remediation="Delete the association and create it at the root management group (the tenant id).",
    references=(RMPL_REST,),
    controls=("MCSB NS-2", "MCSB PV-2"),
    reads=("associations",),
    frameworks=(
        Evidences(NIST_800_53, "CM-6",
                  "CM-6 b: an association below the root group is unsupported and does not apply as "
                  "configured"),
    ),
)
def association_not_root(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    for a in snap.associations.values():
        tenant = snap.tenant_id or a.tenant_id
        if not tenant:
            continue  # root unknown: nothing to compare against
        root = f"/providers/Microsoft.Management/managementGroups/{tenant}"
        if normalise(a.scope or "") != normalise(root):
            yield Issue(a.id, f"Association {a.name} is scoped to {a.scope or 'nothing'}, not the root "
                        "management group.", {"scope": a.scope, "expected_scope": root},
                        chain(az("private-link", "association", "delete", "--management-group-id", _mg_of(a),
                                 "--name", a.name),
                              az("private-link", "association", "create", "--management-group-id", tenant,
                                 "--name", a.name, "--privatelink",
                                 a.private_link.raw if a.private_link else "<rmpl-id>",
                                 "--public-network-access", "disabled")))


@check(
    id="rmpl.association-dangling", title="Association names a resource management private link that is gone",
    severity=Severity.HIGH,
    rationale="An association whose private link does not exist (a 404 on its id, or absent from a list "
              "that covered its subscription) restricts nothing and may block a correct association for the "
              "scope. An RMPL plmon could not read is a coverage gap, not this finding.",
    remediation="Delete the dangling association, or recreate the private link it names.",
    references=(RMPL_REST,),
    controls=("MCSB AM-1", "MCSB PV-2"),
    reads=("associations", "rmpls", "targets"),
    frameworks=(
        Evidences(NIST_800_53, "CM-6",
                  "CM-6 b: the association names a private link that does not exist, so the setting "
                  "restricts nothing"),
    ),
)
def association_dangling(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    for a in snap.associations.values():
        how = _absence(snap, a.private_link)
        if how is None:
            continue
        yield Issue(a.id, f"Association {a.name} names private link "
                    f"{a.private_link.raw if a.private_link else '(none)'}, which does not exist ({how}).",
                    {"privateLink": a.private_link.raw if a.private_link else None,
                     "absence_established_by": how, "rmpls_known": len(snap.rmpls)},
                    az("private-link", "association", "delete", "--management-group-id", _mg_of(a),
                       "--name", a.name))


def _absence(snap: Snapshot, ref: ArmId | None) -> str | None:
    """How the absence of the RMPL an association names is established, or None when it exists or plmon
    cannot know (checks.md: only a 404 on its id, or absence from a list that covered its subscription).

    The finding's remediation deletes the association, which lifts the management-plane restriction:
    an RMPL that could not be read (403, outside the scan's scope, a timeout) is a coverage gap, never this.
    """
    if ref is None:
        return "the association names no private link"
    if _rmpl_for(snap, ref) is not None:
        return None
    if ref.opaque:
        # A bare GUID or short name names no subscription: absent only when every subscription's list was read.
        lists = [f"/subscriptions/{s}" for s in snap.subscriptions]
        if snap.coverage.scoped or not lists or not all(snap.coverage.covers(s, RMPL_TYPE) for s in lists):
            return None
        return f"no RMPL with that id or name in the resourceManagementPrivateLinks lists of all {len(lists)} " \
               "subscriptions"
    target = snap.targets.get(ref.key)
    if target is not None:
        if target.state == TargetState.NOT_FOUND:
            return f"{target.error_status} {target.error_code} on a read of its id"
        return None  # read (it exists), or unreadable: the plan recorded the coverage gap
    sub = (ref.subscription or "").lower()
    if sub and ref.type_key == RMPL_TYPE and snap.coverage.covers(f"/subscriptions/{sub}", RMPL_TYPE):
        return f"absent from the resourceManagementPrivateLinks list of subscription {ref.subscription}"
    return None


@check(
    id="rmpl.unassociated", title="Resource management private link is not associated",
    severity=Severity.MEDIUM,
    rationale="An RMPL takes effect only through an association; without one it restricts nothing.",
    remediation="Associate the private link with the root management group, or delete it.",
    references=(RMPL_REST,),
    controls=("MCSB NS-2", "MCSB AM-1"),
    reads=("associations", "rmpls"),
    frameworks=(
        Evidences(NIST_800_53, "CM-6", "CM-6 b: a private link without an association restricts nothing"),
    ),
)
def unassociated(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    if _association_gaps(snap):
        return  # associations not fully read: the coverage gap says so; never a false finding
    referenced = {r.key for r in (_rmpl_for(snap, a.private_link) for a in snap.associations.values()) if r}
    for rmpl in snap.rmpls.values():
        if rmpl.key not in referenced:
            yield Issue(rmpl.id, f"Resource management private link {rmpl.name} has no association.",
                        {"associations_read": len(snap.associations)},
                        az("private-link", "association", "create", "--management-group-id",
                           snap.tenant_id or "<tenant-id>", "--name", "<new-guid>", "--privatelink", rmpl.id.raw,
                           "--public-network-access", "disabled"))


@check(
    id="rmpl.no-endpoint", title="Resource management private link has no approved endpoint",
    severity=Severity.LOW,
    rationale="Without an approved private endpoint nobody can reach management privately through "
              "this link.",
    remediation="Create a private endpoint with group id ResourceManagement and approve it.",
    references=(RMPL_DOC,),
    controls=("MCSB NS-2",),
    reads=("rmpls",),
    frameworks=(
        Evidences(NIST_800_53, "CM-6",
                  "CM-6 b: a private link with no approved endpoint provides no private management "
                  "path"),
    ),
)
def no_endpoint(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    for rmpl in snap.rmpls.values():
        if not any(c.approved for c in rmpl.connections):
            yield Issue(rmpl.id, f"Resource management private link {rmpl.name} has no Approved endpoint "
                        "connection.", {"connections": [{"name": c.name, "status": c.status}
                                                        for c in rmpl.connections]},
                        az("network", "private-endpoint", "create", "--name", "<pe-name>", "--resource-group", "<rg>",
                           "--vnet-name", "<vnet>", "--subnet", "<subnet>", "--private-connection-resource-id",
                           rmpl.id.raw, "--group-id", "ResourceManagement", "--connection-name", "<name>"))


@check(
    id="rmpl.multi-tenant", title="Resource management private link associated from several tenants",
    severity=Severity.HIGH,
    rationale="One RMPL referenced by associations of more than one tenant is unsupported.",
    remediation="Give each tenant its own resource management private link.",
    references=(RMPL_REST,),
    controls=("MCSB PV-2",),
    reads=("associations", "rmpls"),
    frameworks=(
        Evidences(NIST_800_53, "CM-6",
                  "CM-6 b: one private link associated from several tenants is an unsupported "
                  "configuration"),
    ),
)
def multi_tenant(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    tenants: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for a in snap.associations.values():
        rmpl = _rmpl_for(snap, a.private_link)
        tenant = a.tenant_id or snap.tenant_id
        if rmpl is not None and tenant:
            tenants[rmpl.key][tenant.lower()].append(a.id.raw)
    for key, by_tenant in tenants.items():
        if len(by_tenant) > 1:
            rmpl = snap.rmpls[key]
            yield Issue(rmpl.id, f"Resource management private link {rmpl.name} is associated from "
                        f"{len(by_tenant)} tenants.", {"associations_by_tenant": dict(by_tenant)},
                        az("private-link", "association", "delete", "--management-group-id", "<other-tenant-root>",
                           "--name", "<association>", comment="then create a separate RMPL for that tenant"))


@check(
    id="rmpl.endpoint-group-id", title="Private endpoint to an RMPL lacks group id ResourceManagement",
    severity=Severity.HIGH,
    rationale="Endpoints to a resource management private link must use the ResourceManagement group "
              "id; any other does not carry management traffic.",
    remediation="Recreate the private endpoint with group id ResourceManagement.",
    references=(RMPL_DOC,),
    controls=("MCSB NS-2", "MCSB PV-2"),
    reads=("private_endpoints", "rmpls"), over="private_endpoints",
    frameworks=(
        Evidences(NIST_800_53, "CM-6",
                  "CM-6 b: an endpoint to the link with another group id carries no management traffic"),
    ),
)
def endpoint_group_id(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    for pe in each(snap, "private_endpoints"):
        for conn in pe.connections:
            tid = conn.target_id
            if tid is None or not (tid.type_key == RMPL_TYPE or tid.key in snap.rmpls):
                continue
            if "resourcemanagement" not in {g.lower() for g in conn.group_ids}:
                subnet = pe.subnet_id.raw if pe.subnet_id else "<subnet-id>"
                yield Issue(pe.id, f"Private endpoint {pe.name} connects to RMPL {tid.name} with group ids "
                            f"{list(conn.group_ids) or '(none)'}.",
                            {"groupIds": list(conn.group_ids), "target": tid.raw},
                            chain(az("network", "private-endpoint", "delete", "--ids", pe.id.raw),
                                  az("network", "private-endpoint", "create", "--name", pe.name, "--resource-group",
                                     pe.id.resource_group or "<rg>", "--subnet", subnet,
                                     "--private-connection-resource-id", tid.raw,
                                     "--group-id", "ResourceManagement", "--connection-name", "<name>")))
                break


@check(
    id="rmpl.bastion-dns-conflict", title="Bastion network linked to privatelink.azure.com without management record",
    severity=Severity.HIGH,
    rationale="Azure Bastion resolves management.azure.com; a privatelink.azure.com zone linked to its "
              "network without a 'management' CNAME breaks Bastion.",
    remediation="Add a CNAME 'management' to the zone, or unlink the zone from the Bastion network.",
    references=(BASTION_FAQ, RMPL_DOC),
    controls=("MCSB NS-10",),
    reads=("bastion_hosts", "dns_zones"),
    frameworks=(
        Evidences(NIST_800_53, "CM-6",
                  "CM-6 b: a privatelink.azure.com zone without a management record breaks Bastion's "
                  "name resolution"),
    ),
)
def bastion_dns_conflict(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    bastion_vnets: dict[str, list[str]] = defaultdict(list)
    for b in snap.bastion_hosts.values():
        for sn in b.subnet_ids:
            vnet = sn.parent
            if vnet is not None:
                bastion_vnets[vnet.key].append(b.id.raw)
    for zone in snap.dns_zones.values():
        if zone.name.lower() != "privatelink.azure.com" or zone.vnet_links is None:
            continue
        if zone.cname_records is None or "management" in zone.cname_records:
            continue  # records not readable (coverage gap) or the record exists
        for link in zone.vnet_links:
            if link.vnet_id is not None and link.vnet_id.key in bastion_vnets:
                yield Issue(link.id, f"Zone privatelink.azure.com is linked to Bastion network "
                            f"{link.vnet_id.name} and has no 'management' CNAME record.",
                            {"zone": zone.id.raw, "virtual_network": link.vnet_id.raw,
                             "bastion_hosts": bastion_vnets[link.vnet_id.key],
                             "cname_records": sorted(zone.cname_records)},
                            az("network", "private-dns", "record-set", "cname", "set-record", "--resource-group",
                               zone.id.resource_group or "<rg>", "--zone-name", "privatelink.azure.com",
                               "--record-set-name", "management", "--cname", "arm-frontdoor-prod.trafficmanager.net"))
