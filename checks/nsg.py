"""NSG checks on subnets with private endpoints: rules that are not enforced, or not enforced as written.

Private endpoint traffic honours a subnet's NSG only with privateEndpointNetworkPolicies Enabled or
NetworkSecurityGroupEnabled, and even then some rule shapes behave differently than on VMs (seed:
endpoint overview, NSG limitations).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from plmon.checks.finding import Issue, Severity
from plmon.checks.registry import ISO_27001, NIST_800_53, PCI_DSS, Evidences, Param, check
from plmon.checks.remedy import az, lines
from plmon.checks.units import Index, each_key, lookup, plain
from plmon.monitor.model.snapshot import Nsg, NsgRule, Snapshot, Subnet, lower

PE_LIMITS = "https://learn.microsoft.com/azure/private-link/private-endpoint-overview#network-security-of-private-endpoints"
PE_POLICIES = "https://learn.microsoft.com/azure/private-link/disable-private-endpoint-network-policy"

# What endpoint_subnets reads: the endpoints (through their subnet index) and the subnets.
_ENDPOINT_SUBNETS = ("private_endpoints", "subnets")


def endpoint_subnets(snap: Snapshot) -> list[Subnet]:
    """Subnets some endpoint's properties.subnet.id names, or that list endpoints themselves."""
    keys = set(snap.endpoints_by_subnet)
    keys |= {s.key for s in snap.subnets.values() if s.private_endpoint_ids}
    return [snap.subnets[k] for k in sorted(keys) if k in snap.subnets]


def _nsgs_on_endpoint_subnets(snap: Snapshot) -> list[tuple[Nsg, list[Subnet]]]:
    found: dict[str, tuple[Nsg, list[Subnet]]] = {}
    for subnet in endpoint_subnets(snap):
        nsg = snap.nsgs.get(subnet.nsg_id.key) if subnet.nsg_id else None
        if nsg is not None:
            found.setdefault(nsg.key, (nsg, []))[1].append(subnet)
    return [found[k] for k in sorted(found)]


def _is_endpoint_subnet(snap: Snapshot, subnet: Subnet) -> bool:
    """endpoint_subnets' test for one subnet (its own list first: most endpoint subnets list their endpoints, and
    then the daemon records no read of the endpoints' index for it)."""
    return bool(subnet.private_endpoint_ids) or subnet.key in snap.endpoints_by_subnet


# The endpoint subnets, and the endpoint subnets of each NSG: kept indexes, so the daemon judges again only the
# subnets and NSGs an event touched instead of every NSG check over the tenant (~30 ms an endpoint event at 100k,
# issue 14). A subnet some endpoint names but whose network was not read is in no index, as endpoint_subnets
# leaves it out.
ENDPOINT_SUBNETS = Index("nsg.endpoint_subnets", "subnets",
                         lambda snap, subnet: (subnet.key,) if _is_endpoint_subnet(snap, subnet) else ())
NSG_SUBNETS = Index("nsg.subnets_of_nsg", "subnets",
                    lambda snap, subnet: (subnet.nsg_id.key,) if subnet.nsg_id is not None
                    and _is_endpoint_subnet(snap, subnet) else ())


def _endpoint_subnet_subjects(snap: Snapshot) -> Iterator[Subnet]:
    """endpoint_subnets as subjects: in a plain evaluation the one pass, under the daemon each subnet in its own
    frame (the same subnets in the same key order)."""
    if plain():
        yield from endpoint_subnets(snap)
        return
    for key in each_key(snap, ENDPOINT_SUBNETS):
        yield snap.subnets[str(key)]


def _nsg_subjects(snap: Snapshot) -> Iterator[tuple[Nsg, list[Subnet]]]:
    """_nsgs_on_endpoint_subnets as subjects: each NSG (in key order) with its endpoint subnets (in key order),
    under the daemon each NSG in its own frame."""
    if plain():
        yield from _nsgs_on_endpoint_subnets(snap)
        return
    for key in each_key(snap, NSG_SUBNETS):
        nsg = snap.nsgs.get(str(key))
        if nsg is not None:
            yield nsg, [snap.subnets[k] for k in lookup(snap, NSG_SUBNETS, key)]


def _custom_rules(nsg: Nsg) -> list[NsgRule]:
    return [r for r in nsg.rules if not r.default]


def _ranges(many: tuple[str, ...], one: str | None) -> list[str]:
    return list(many) if many else ([one] if one else [])


@check(
    id="nsg.not-enforced-on-endpoints", title="Subnet NSG does not filter private endpoint traffic",
    severity=Severity.HIGH,
    rationale="With privateEndpointNetworkPolicies Disabled (the default) or RouteTableEnabled, the subnet's "
              "NSG is not applied to private endpoints: the rules look protective but filter nothing.",
    remediation="Set privateEndpointNetworkPolicies to Enabled (or NetworkSecurityGroupEnabled) on the subnet.",
    references=(PE_POLICIES, PE_LIMITS), controls=("MCSB NS-1",),
    reads=_ENDPOINT_SUBNETS, over=ENDPOINT_SUBNETS.name,
    frameworks=(
        Evidences(NIST_800_53, "SC-7",
                  "SC-7 a: the subnet's NSG does not control communications to the private endpoints "
                  "behind it"),
        Evidences(NIST_800_53, "AC-4",
                  "AC-4: the NSG's flow rules are not enforced for private endpoint traffic at all"),
        Evidences(ISO_27001, "A.8.20",
                  "A.8.20: the NSG meant to control traffic to the endpoints' subnet filters none of "
                  "it"),
        Evidences(PCI_DSS, "1.3.1",
                  "1.3.1: the NSG rules that restrict inbound traffic do not apply to the endpoints "
                  "(when they are in the CDE)"),
    ),
)
def not_enforced(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    for subnet in _endpoint_subnet_subjects(snap):
        if subnet.nsg_id is None or lower(subnet.pe_policies) not in ("disabled", "routetableenabled"):
            continue
        target = "Enabled" if lower(subnet.pe_policies) == "routetableenabled" else "NetworkSecurityGroupEnabled"
        yield Issue(subnet.id, f"Subnet {subnet.name} has NSG {subnet.nsg_id.name} and private endpoints, but "
                    f"privateEndpointNetworkPolicies is {subnet.pe_policies}: the NSG does not filter traffic "
                    "to the endpoints.",
                    {"networkSecurityGroup": subnet.nsg_id.raw,
                     "privateEndpointNetworkPolicies": subnet.private_endpoint_network_policies,
                     "effective_policy": subnet.pe_policies,
                     "private_endpoints": list(snap.endpoints_by_subnet.get(subnet.key, ()))
                     or [i.raw for i in subnet.private_endpoint_ids]},
                    az("network", "vnet", "subnet", "update", "--ids", subnet.id.raw,
                       "--private-endpoint-network-policies", target))


def effective_action(rule: NsgRule) -> str:
    """The seed's table: how a private endpoint honours a rule with several port ranges."""
    src = _ranges(rule.source_port_ranges, rule.source_port_range)
    dst = _ranges(rule.destination_port_ranges, rule.destination_port_range)
    action = lower(rule.access)
    if action == "deny":
        if len(src) > 1 and len(dst) > 1:
            return ("Deny with several source and destination port ranges: traffic from all source ports is "
                    "denied to all destination ports")
        if len(src) > 1:
            return (f"Deny with several source port ranges: traffic from all source ports is denied to "
                    f"destination ports {dst[0] if dst else '*'}")
        return (f"Deny with several destination port ranges: traffic from source ports {src[0] if src else '*'} "
                "is denied to all destination ports")
    return (f"{rule.access or 'Allow'}: only the first ranges are honoured: source ports {src[0] if src else '*'}"
            f", destination ports {dst[0] if dst else '*'}; the other ranges are ignored")


@check(
    id="nsg.multi-port-range-rule", title="NSG rule with several port ranges on a private endpoint subnet",
    severity=Severity.LOW,
    rationale="For private endpoint traffic only the first port range of a rule is honoured, and a Deny with "
              "several ranges denies more than written: the rule does not do what it says.",
    remediation="Split the rule into one rule per port range.",
    references=(PE_LIMITS,), controls=("MCSB NS-1",),
    reads=(*_ENDPOINT_SUBNETS, "nsgs"), over=NSG_SUBNETS.name,
    frameworks=(
        Evidences(NIST_800_53, "AC-4",
                  "AC-4: for endpoint traffic the rule enforces only its first port range, not the "
                  "flow policy it states"),
    ),
)
def multi_port_range(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    for nsg, subnets in _nsg_subjects(snap):
        bad = [r for r in _custom_rules(nsg)
               if len(r.source_port_ranges) > 1 or len(r.destination_port_ranges) > 1]
        if not bad:
            continue
        rg = nsg.id.resource_group or "<resource-group>"
        fixes = [az("network", "nsg", "rule", "update", "--resource-group", rg, "--nsg-name", nsg.name,
                    "--name", r.name,
                    "--source-port-ranges", (_ranges(r.source_port_ranges, r.source_port_range) or ["*"])[0],
                    "--destination-port-ranges",
                    (_ranges(r.destination_port_ranges, r.destination_port_range) or ["*"])[0],
                    comment="then add one rule per remaining range") for r in bad]
        yield Issue(nsg.id, f"NSG {nsg.name} on private endpoint subnet(s) {', '.join(s.name for s in subnets)} "
                    f"has {len(bad)} rule(s) with several port ranges.",
                    {"subnets": [s.id.raw for s in subnets],
                     "rules": [{"name": r.name, "access": r.access, "direction": r.direction,
                                "priority": r.priority,
                                "sourcePortRanges": _ranges(r.source_port_ranges, r.source_port_range),
                                "destinationPortRanges": _ranges(r.destination_port_ranges,
                                                                 r.destination_port_range),
                                "effective_action": effective_action(r)} for r in bad]},
                    lines(*fixes))


def _count(many: tuple[str, ...], one: str | None) -> int:
    return len(many) if many else 1


@check(
    id="nsg.rule-prefix-limit", title="NSG rule too large for private endpoint subnets",
    severity=Severity.LOW,
    rationale="Private endpoints support at most 500 address prefixes per side of a rule and a product of "
              "source prefixes, destination prefixes and destination port ranges of 250 000; beyond that "
              "the rule is not applied as written.",
    remediation="Split the rule, or use service tags or application security groups.",
    references=(PE_LIMITS,), controls=("MCSB NS-1",),
    params={"max_prefixes": Param.integer(500, "address prefixes per side of a rule"),
            "max_product": Param.integer(250_000, "source x destination prefixes x destination port ranges")},
    reads=(*_ENDPOINT_SUBNETS, "nsgs"), over=NSG_SUBNETS.name,
    frameworks=(
        Evidences(NIST_800_53, "AC-4",
                  "AC-4: past the private endpoint limits the rule is not applied as written, so its "
                  "flow policy is not enforced"),
    ),
)
def rule_prefix_limit(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    for nsg, subnets in _nsg_subjects(snap):
        bad = []
        for r in _custom_rules(nsg):
            src = _count(r.source_address_prefixes, r.source_address_prefix)
            dst = _count(r.destination_address_prefixes, r.destination_address_prefix)
            ports = _count(r.destination_port_ranges, r.destination_port_range)
            product = src * dst * ports
            if len(r.source_address_prefixes) > params["max_prefixes"] or \
                    len(r.destination_address_prefixes) > params["max_prefixes"] or product > params["max_product"]:
                bad.append({"name": r.name, "sourceAddressPrefixes": src, "destinationAddressPrefixes": dst,
                            "destinationPortRanges": ports, "product": product})
        if bad:
            yield Issue(nsg.id, f"NSG {nsg.name} on private endpoint subnet(s) "
                        f"{', '.join(s.name for s in subnets)} has {len(bad)} rule(s) beyond the private "
                        "endpoint limits.",
                        {"subnets": [s.id.raw for s in subnets], "rules": bad,
                         "limits": {"prefixes_per_side": params["max_prefixes"], "product": params["max_product"]}},
                        lines(*(az("network", "nsg", "rule", "update", "--resource-group",
                                   nsg.id.resource_group or "<resource-group>", "--nsg-name", nsg.name,
                                   "--name", str(b["name"]), "--source-address-prefixes", "<fewer>",
                                   comment="or split the rule") for b in bad)))


def _uses_vnet_tag(rule: NsgRule) -> bool:
    values = [*rule.source_address_prefixes, rule.source_address_prefix or "",
              *rule.destination_address_prefixes, rule.destination_address_prefix or ""]
    return any(lower(v) == "virtualnetwork" for v in values)


@check(
    id="nsg.virtual-network-tag-peering", title="Deny rule with VirtualNetwork tag cannot deny a peer",
    severity=Severity.LOW,
    rationale="On private endpoint subnets the VirtualNetwork tag does not cover a peered network whose "
              "peering has allowVirtualNetworkAccess false, so a Deny meant for it does not apply.",
    remediation="Use the peer's address prefixes explicitly in the Deny rule.",
    references=(PE_LIMITS,), controls=("MCSB NS-1",),
    reads=(*_ENDPOINT_SUBNETS, "nsgs", "virtual_networks"), over=NSG_SUBNETS.name,
    frameworks=(
        Evidences(NIST_800_53, "AC-4",
                  "AC-4: a Deny meant for a peered network does not apply to it, so that flow is not "
                  "controlled"),
        Evidences(ISO_27001, "A.8.22",
                  "A.8.22: the Deny meant to segregate a peered network from the endpoints does not "
                  "apply to it"),
    ),
)
def vnet_tag_peering(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    for nsg, subnets in _nsg_subjects(snap):
        rules = [r for r in _custom_rules(nsg) if lower(r.access) == "deny" and _uses_vnet_tag(r)]
        if not rules:
            continue
        peers: list[dict[str, Any]] = []
        for subnet in subnets:
            vnet = snap.vnet_of_subnet(subnet)
            if vnet is None:
                continue
            for p in vnet.peerings:
                if not p.allow_virtual_network_access:
                    peers.append({"vnet": vnet.id.raw, "peering": p.id.raw,
                                  "remote": p.remote_vnet_id.raw if p.remote_vnet_id else None,
                                  "remote_address_prefixes": list(p.remote_address_prefixes)})
        if not peers:
            continue
        rg = nsg.id.resource_group or "<resource-group>"
        yield Issue(nsg.id, f"NSG {nsg.name} denies with the VirtualNetwork tag, which does not include the "
                    f"peer(s) reached with allowVirtualNetworkAccess false.",
                    {"rules": [r.name for r in rules], "peerings": peers,
                     "subnets": [s.id.raw for s in subnets]},
                    lines(*(az("network", "nsg", "rule", "update", "--resource-group", rg, "--nsg-name", nsg.name,
                               "--name", r.name, "--source-address-prefixes",
                               sorted({x for p in peers for x in p["remote_address_prefixes"]})
                               or ["<peer-prefixes>"]) for r in rules)))
