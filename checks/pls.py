"""Private Link Service checks: who can see and auto-connect, NAT subnet policy and headroom, PROXY v2."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

from plmon.checks.finding import Issue, Severity
from plmon.checks.registry import ISO_27001, NIST_800_53, Evidences, Param, check
from plmon.checks.remedy import az
from plmon.checks.units import Index, each, each_key, lookup, plain
from plmon.monitor.model.arm_id import ArmId
from plmon.monitor.model.snapshot import PrivateLinkService, Snapshot, lower

PLS_DOC = "https://learn.microsoft.com/azure/private-link/private-link-service-overview"
PLS_POLICY = "https://learn.microsoft.com/azure/private-link/disable-private-link-service-network-policy"


def _subs(values: tuple[str, ...]) -> list[str]:
    return [v.strip().lower() for v in values]


def _subs_arg(values: list[str]) -> list[str]:
    return values or ["<subscription-id>", "..."]


@check(
    id="pls.visibility-public", title="Private Link Service visible to every Azure subscription",
    severity=Severity.MEDIUM,
    rationale="With visibility '*', anyone who learns the alias can request a connection; requests "
              "then depend on manual review alone.",
    remediation="Restrict visibility to the subscriptions that should consume the service.",
    references=(PLS_DOC + "#control-service-exposure",), controls=("MCSB NS-2",),
    reads=("private_link_services",), over="private_link_services",
    frameworks=(
        Evidences(NIST_800_53, "CM-7",
                  "CM-7 a: '*' offers the service's connection interface to every subscription, not "
                  "only those that need it"),
    ),
)
def visibility_public(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    for pls in each(snap, "private_link_services"):
        if "*" in _subs(pls.visibility):
            yield Issue(pls.id, f"Private Link Service {pls.name} is visible to all subscriptions ('*').",
                        {"visibility.subscriptions": list(pls.visibility), "alias": pls.alias},
                        az("network", "private-link-service", "update", "--ids", pls.id.raw,
                           "--visibility", "<consumer-subscription-id>", "..."))


@check(
    id="pls.auto-approval-not-subset", title="Auto-approval lists subscriptions outside visibility",
    severity=Severity.MEDIUM,
    rationale="Auto-approval should be a subset of visibility; an entry outside it signals a "
              "misunderstanding of who can connect and is silently ineffective or overly broad.",
    remediation="Remove auto-approval entries that are not in the visibility list, or add them to it.",
    references=(PLS_DOC + "#control-service-exposure",), controls=("MCSB NS-2",),
    reads=("private_link_services",), over="private_link_services",
    frameworks=(
        Evidences(NIST_800_53, "CM-6",
                  "CM-6 b: auto-approval names subscriptions outside visibility, a setting that does "
                  "not say who can connect"),
    ),
)
def auto_approval_not_subset(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    for pls in each(snap, "private_link_services"):
        visible = _subs(pls.visibility)
        if "*" in visible:
            continue
        extra = [a for a, n in zip(pls.auto_approval, _subs(pls.auto_approval), strict=True)
                 if n not in visible]
        if extra:
            keep = [a for a in pls.auto_approval if a not in extra]
            yield Issue(pls.id, f"Private Link Service {pls.name} auto-approves {len(extra)} subscription(s) "
                        "outside its visibility list.",
                        {"autoApproval.subscriptions": list(pls.auto_approval),
                         "visibility.subscriptions": list(pls.visibility), "not_in_visibility": extra},
                        az("network", "private-link-service", "update", "--ids", pls.id.raw,
                           "--auto-approval", _subs_arg(keep)))


@check(
    id="pls.auto-approval-wildcard", title="Private Link Service auto-approves any subscription",
    severity=Severity.HIGH,
    rationale="A '*' auto-approval connects any requester without review: the service's backend is "
              "reachable from networks its owner has never seen.",
    remediation="Replace '*' with the consumer subscriptions that may connect without review.",
    references=(PLS_DOC + "#control-service-exposure",), controls=("MCSB NS-2",),
    reads=("private_link_services",), over="private_link_services",
    frameworks=(
        Evidences(NIST_800_53, "CA-3",
                  "CA-3 a: '*' approves connections from any subscription, so no exchange is approved "
                  "before it starts"),
        Evidences(ISO_27001, "A.5.15",
                  "A.5.15: '*' grants any requester network access to the service's backend, with no "
                  "access rule applied"),
    ),
)
def auto_approval_wildcard(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    for pls in each(snap, "private_link_services"):
        if "*" in _subs(pls.auto_approval):
            yield Issue(pls.id, f"Private Link Service {pls.name} auto-approves every subscription ('*').",
                        {"autoApproval.subscriptions": list(pls.auto_approval),
                         "visibility.subscriptions": list(pls.visibility)},
                        az("network", "private-link-service", "update", "--ids", pls.id.raw,
                           "--auto-approval", "<consumer-subscription-id>", "..."))


def _nat_subnets(pls: PrivateLinkService) -> dict[str, ArmId]:
    return {c.subnet_id.key: c.subnet_id for c in pls.nat_ip_configs if c.subnet_id is not None}


# The services of each NAT subnet: a kept index, so the daemon judges again only the NAT subnets whose services or
# subnet an event touched, instead of both NAT checks over every service (issue 14).
NAT_SUBNETS = Index("pls.nat_subnets", "private_link_services", lambda snap, pls: tuple(_nat_subnets(pls)))


def _nat_users(snap: Snapshot) -> Iterator[tuple[str, list[PrivateLinkService]]]:
    """Each NAT subnet's key with the services that take NAT IPs in it (in service key order, which is the
    collection's order): one pass in a plain evaluation, under the daemon each subnet in its own frame (subnets in
    key order instead of first use: each finding is about its own subnet, and findings are sorted)."""
    if plain():
        users: dict[str, list[PrivateLinkService]] = defaultdict(list)
        for pls in snap.private_link_services.values():
            for key in _nat_subnets(pls):
                users[key].append(pls)
        yield from users.items()
        return
    for subject in each_key(snap, NAT_SUBNETS):
        yield str(subject), [snap.private_link_services[k] for k in lookup(snap, NAT_SUBNETS, subject)]


@check(
    id="pls.nat-subnet-policy", title="Private Link Service NAT subnet keeps network policies enabled",
    severity=Severity.MEDIUM,
    rationale="A Private Link Service can only take NAT IPs from a subnet whose "
              "privateLinkServiceNetworkPolicies is Disabled; otherwise changes to the service fail.",
    remediation="Disable privateLinkServiceNetworkPolicies on the NAT subnet.",
    references=(PLS_POLICY,),
    controls=("MCSB NS-1", "MCSB PV-2"),
    reads=("private_link_services", "subnets"), over=NAT_SUBNETS.name,
    frameworks=(
        Evidences(NIST_800_53, "CM-6",
                  "CM-6 b: the NAT subnet keeps a network policy setting that makes changes to the "
                  "service fail"),
    ),
)
def nat_subnet_policy(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    for key, users in _nat_users(snap):
        services = [pls.id.raw for pls in users]
        subnet = snap.subnets.get(key)
        if subnet is None:
            continue  # not readable: its network's list gap is in coverage
        value = subnet.private_link_service_network_policies
        if lower(value) != "disabled":
            yield Issue(subnet.id, f"Subnet {subnet.name} hosts Private Link Service NAT IPs but "
                        f"privateLinkServiceNetworkPolicies is {value or 'absent'}.",
                        {"privateLinkServiceNetworkPolicies": value, "private_link_services": services},
                        az("network", "vnet", "subnet", "update", "--ids", subnet.id.raw,
                           "--private-link-service-network-policies", "Disabled"))


@check(
    id="pls.nat-ip-headroom", title="Private Link Service NAT subnet is nearly full",
    severity=Severity.LOW,
    rationale="Each NAT IP serves a bounded number of connections; without free addresses in the NAT "
              "subnet the service cannot add NAT IPs as consumers grow (at least eight are advised).",
    remediation="Enlarge the NAT subnet or move NAT IP configurations to a larger one.",
    references=(PLS_DOC + "#nat-network-address-translation",),
    params={"min_free": Param.integer(8, "minimum free addresses in a NAT subnet")},
    controls=("MCSB PV-2",),
    reads=("private_link_services", "subnets"), over=NAT_SUBNETS.name,
    frameworks=(
        Evidences(NIST_800_53, "SC-6",
                  "SC-6: free NAT addresses are the resource that bounds consumer connections; none "
                  "are left to allocate"),
    ),
)
def nat_ip_headroom(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    for key, users in _nat_users(snap):
        configs: set[str] = set()
        services: list[str] = []
        for pls in users:
            for i, c in enumerate(pls.nat_ip_configs):
                if c.subnet_id is not None and c.subnet_id.key == key:
                    configs.add(c.id.key if c.id else f"{pls.id.key}#{i}")
                    if pls.id.raw not in services:
                        services.append(pls.id.raw)
        subnet = snap.subnets.get(key)
        if subnet is None:
            continue
        size = 0
        prefixes = []
        for prefix in subnet.address_prefixes:
            try:
                net = ipaddress.ip_network(prefix, strict=False)
            except ValueError:
                continue
            if net.version == 4:
                size += 2 ** (32 - net.prefixlen)
                prefixes.append(prefix)
        if not prefixes:
            continue
        used = configs | {i.key for i in subnet.ip_configuration_ids}
        free = size - 5 * len(prefixes) - len(used)
        if free < params["min_free"]:
            yield Issue(subnet.id, f"NAT subnet {subnet.name} has {free} free address(es); "
                        f"at least {params['min_free']} are advised.",
                        {"address_prefixes": prefixes, "addresses": size, "reserved": 5 * len(prefixes),
                         "ip_configurations": len(used), "free": free,
                         "private_link_services": services},
                        az("network", "vnet", "subnet", "update", "--ids", subnet.id.raw,
                           "--address-prefixes", "<larger-prefix>", comment="or add NAT IPs in a larger subnet"))


@check(
    id="pls.proxy-protocol", title="Private Link Service uses PROXY protocol v2",
    severity=Severity.INFO,
    rationale="With PROXY v2 on, every backend must parse the PROXY header or connections break; "
              "record the backend owner's attestation as a waiver.",
    remediation="Confirm the backend parses PROXY v2 and record it as a waiver, or turn it off.",
    references=(PLS_DOC + "#getting-connection-information-using-tcp-proxy-v2",),
    controls=("MCSB PV-2",),
    reads=("private_link_services",), over="private_link_services",
    frameworks=(
        Evidences(NIST_800_53, "CM-6",
                  "CM-6 c: PROXY v2 relies on every backend parsing it; the check asks that this "
                  "deviation be recorded as approved"),
    ),
)
def proxy_protocol(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    for pls in each(snap, "private_link_services"):
        if pls.enable_proxy_protocol is True:
            yield Issue(pls.id, f"Private Link Service {pls.name} has enableProxyProtocol true.",
                        {"enableProxyProtocol": True},
                        az("network", "private-link-service", "update", "--ids", pls.id.raw,
                           "--enable-proxy-protocol", "false",
                           comment="or waive with the backend owner's attestation"))
