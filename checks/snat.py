"""SNAT models: does the appliance on a UDR path translate the source of traffic to a private endpoint?

Without SNAT the endpoint's reply skips the appliance (the endpoint's /32 route wins on the way
back), so stateful appliances drop the flow: an asymmetric path. Azure Firewall decides by its
"private ranges" (destinations inside them are not translated); third-party appliances cannot be read,
so their owners declare it with the ``plmon-snat`` tag, and no tag is an unknown, never a pass.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from plmon.monitor.model.snapshot import Firewall, FirewallPolicy, LoadBalancer, Nic, Snapshot, lower

__all__ = [
    "CLASSIC_KEY", "IANA_PRIVATE_RANGES", "MIXED", "SNAT_TAG", "FirewallVerdicts", "SnatVerdict", "expand_ranges",
    "firewall_ranges", "firewall_snat", "firewall_verdicts", "snats_for", "snats_within", "tagged_snat",
]

CLASSIC_KEY = "Network.SNAT.PrivateRanges"
SNAT_TAG = "plmon-snat"
KEYWORD = "IANAPrivateRanges"
# RFC 1918 + RFC 6598 (shared address space): what Azure Firewall treats as private by default.
IANA_PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
ALWAYS = "255.255.255.255/32"
NEVER = "0.0.0.0/0"
APPLICATION_RULES_NOTE = ("Azure Firewall application rules always SNAT; this verdict judges traffic "
                          "allowed by network rules")


@dataclass(frozen=True, slots=True)
class SnatVerdict:
    """``snats``: True / False, or None when unknown. ``source`` says where the setting was read."""

    snats: bool | None
    model: str  # "firewall-classic" | "firewall-policy" | "tag"
    source: str
    private_ranges: tuple[str, ...] = ()
    reason: str = ""
    warnings: tuple[str, ...] = ()
    raw: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"snat": {True: "yes", False: "no", None: "unknown"}[self.snats], "model": self.model,
             "read_from": self.source, "reason": self.reason}
        if self.private_ranges:
            d["private_ranges"] = list(self.private_ranges)
        if self.raw is not None:
            d["raw_setting"] = self.raw
        if self.warnings:
            d["warnings"] = list(self.warnings)
        d.update(self.extra)
        return d


def expand_ranges(values: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Split comma lists and expand the ``IANAPrivateRanges`` keyword; keep CIDRs as written."""
    out: list[str] = []
    for value in values:
        for part in str(value).split(","):
            item = part.strip()
            if not item:
                continue
            if item.lower() == KEYWORD.lower():
                out.extend(IANA_PRIVATE_RANGES)
            else:
                out.append(item)
    return tuple(dict.fromkeys(out))


@functools.lru_cache(maxsize=256)
def _expanded(values: tuple[str, ...]) -> tuple[str, ...]:
    """:func:`expand_ranges` once per policy setting, not once per destination judged."""
    return expand_ranges(values)


@functools.lru_cache(maxsize=256)
def _parsed(ranges: tuple[str, ...]) -> tuple[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network | None], ...]:
    """Each private range with its network (None when unparseable): parsed once per firewall setting, not once
    per destination judged."""
    out: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network | None]] = []
    for r in ranges:
        try:
            out.append((r, ipaddress.ip_network(r, strict=False)))
        except ValueError:
            out.append((r, None))
    return tuple(out)


@functools.lru_cache(maxsize=1 << 15)
def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A destination's address (None: not one), parsed once and not once per firewall setting: a policy event
    brings new private ranges, and a hub firewall's ~4.5k destinations were parsed again for them (issue 14)."""
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        return None


@functools.lru_cache(maxsize=1 << 15)
def _verdict_for(ranges: tuple[str, ...], ip: str) -> tuple[bool | None, str]:
    """No SNAT for destinations inside the private ranges; the two sentinels override. Kept per (ranges, IP): the
    daemon judges a hub firewall's ~4.5k destinations again on each event that touches its paths or policy."""
    if ALWAYS in ranges:
        return True, f"private ranges contain {ALWAYS}: the firewall always SNATs"
    if NEVER in ranges:
        return False, f"private ranges contain {NEVER}: the firewall never SNATs"
    addr = _address(ip)
    if addr is None:
        return None, f"{ip} is not an IP address"
    bad = []
    for r, net in _parsed(ranges):
        if net is None:
            bad.append(r)
            continue
        if net.version == addr.version and addr in net:
            return False, f"{ip} is inside private range {r}: not translated"
    note = f" (ignored unparseable entries: {', '.join(bad)})" if bad else ""
    return True, f"{ip} is outside every private range: translated{note}"


def _classic_value(fw: Firewall) -> str | None:
    for k, v in fw.additional_properties.items():
        if k.lower() == CLASSIC_KEY.lower():
            return v
    return None


def firewall_snat(snap: Snapshot, fw: Firewall, ip: str) -> SnatVerdict:
    """Azure Firewall: the attached policy's snat.privateRanges, else the classic additional property."""
    return firewall_verdicts(snap, fw).of(ip)


# What a firewall's verdicts share whatever the destination: model, source, ranges, warnings, raw setting, policy
# details and the reason's suffix (or the one verdict of a firewall whose policy is not in scope). Never mutated.
_Parts = tuple[str, str, tuple[str, ...], tuple[str, ...], Any, dict[str, Any], str]


class FirewallVerdicts:
    """One firewall's verdicts per destination, kept while the firewall and its attached policy are the very records
    (a snapshot's untouched records stay the same objects across the daemon's events): a hub firewall is judged for
    ~4.5k destinations on every event that judges its appliance again, and each verdict held its own copy of its
    source, warnings, raw setting and policy details (issue 14). The one place a firewall's verdict is looked up:
    both SNAT checks, the route rows and a plain evaluation share it. Its identity says that the verdicts are the
    same (what a SNAT check made of an endpoint's rows holds while it is)."""

    __slots__ = ("_by_ip", "firewall", "parts", "policy")

    def __init__(self, fw: Firewall, policy: FirewallPolicy | None) -> None:
        self.firewall, self.policy = fw, policy
        self.parts: _Parts | SnatVerdict = _parts_of(fw, policy)
        self._by_ip: dict[str, SnatVerdict] = {}

    @property
    def ranges(self) -> tuple[str, ...] | None:
        """The private ranges the destinations are judged by; None: the attached policy is not in scope."""
        return None if isinstance(self.parts, SnatVerdict) else self.parts[2]

    def uniform(self) -> bool | str | None:
        """The verdict's ``snats`` for every destination when it does not depend on the destination (a policy that
        always or never SNATs, or one not in scope), else :data:`MIXED`."""
        parts = self.parts
        if isinstance(parts, SnatVerdict):
            return parts.snats
        if ALWAYS in parts[2]:
            return True
        if NEVER in parts[2]:
            return False
        return MIXED

    def snats(self, ip: str) -> bool | None:
        """``self.of(ip).snats`` without building the verdict: a check asks it of every destination to learn
        whether there is anything to report, and a policy that always (or never) SNATs answers it for all of them
        (a hub firewall's ~4.5k verdicts were built on each policy event only to be found "SNATs")."""
        found = self._by_ip.get(ip)
        if found is not None:
            return found.snats
        parts = self.parts
        if isinstance(parts, SnatVerdict):
            return parts.snats
        ranges = parts[2]
        if ALWAYS in ranges:
            return True
        if NEVER in ranges:
            return False
        return _verdict_for(ranges, ip)[0]

    def of(self, ip: str) -> SnatVerdict:
        """The verdict for destination ``ip`` (judged once while this is kept)."""
        found = self._by_ip.get(ip)
        if found is None:
            parts = self.parts
            if isinstance(parts, SnatVerdict):
                found = parts   # the same for every destination
            else:
                model, source, ranges, warnings, raw, extra, suffix = parts
                snats, why = _verdict_for(ranges, ip)
                found = SnatVerdict(snats, model, source, ranges, why + suffix if suffix else why, warnings, raw,
                                    extra)
            self._by_ip[ip] = found
        return found


# The kept verdicts per firewall key (:class:`FirewallVerdicts`), bounded.
_PARTS: dict[str, FirewallVerdicts] = {}


def firewall_verdicts(snap: Snapshot, fw: Firewall) -> FirewallVerdicts:
    """``fw``'s kept verdicts for ``snap``: the same object while ``fw`` and its policy are the same records. Reads the
    attached policy from ``snap`` every time, so a caller recording reads notes it whether or not a verdict is new."""
    policy: FirewallPolicy | None = snap.firewall_policies.get(fw.firewall_policy_id.key) \
        if fw.firewall_policy_id is not None else None
    held = _PARTS.get(fw.key)
    if held is None or held.firewall is not fw or held.policy is not policy:
        if len(_PARTS) >= 4096:
            _PARTS.clear()
        held = _PARTS[fw.key] = FirewallVerdicts(fw, policy)
    return held


def _parts_of(fw: Firewall, policy: FirewallPolicy | None) -> _Parts | SnatVerdict:
    warnings = [APPLICATION_RULES_NOTE]
    if fw.firewall_policy_id is not None:
        classic = _classic_value(fw)
        if classic is not None:
            warnings.append(f"the classic {CLASSIC_KEY} ({classic}) is ignored because a firewall policy "
                            "is attached")
        if policy is None:
            return SnatVerdict(None, "firewall-policy", fw.firewall_policy_id.raw,
                               reason="the attached firewall policy is not in scope: its SNAT setting is "
                                      "unknown", warnings=tuple(warnings))
        raw = policy.snat_private_ranges
        ranges = _expanded(tuple(raw)) if raw else IANA_PRIVATE_RANGES
        if lower(policy.snat_auto_learn) == "enabled":
            warnings.append("autoLearnPrivateRanges is Enabled: the firewall may add learned ranges to the "
                            "private ranges, so destinations here may stop being translated")
        return ("firewall-policy", f"{policy.id.raw} snat.privateRanges", ranges, tuple(warnings),
                list(raw) if raw is not None else None, {"autoLearnPrivateRanges": policy.snat_auto_learn},
                "" if raw else f" (snat.privateRanges not set: defaults to {KEYWORD})")
    classic = _classic_value(fw)
    ranges = expand_ranges([classic]) if classic is not None else IANA_PRIVATE_RANGES
    return ("firewall-classic", f'{fw.id.raw} additionalProperties["{CLASSIC_KEY}"]', ranges, tuple(warnings),
            classic, {}, "" if classic is not None else f" ({CLASSIC_KEY} not set: defaults to {KEYWORD})")


def firewall_ranges(snap: Snapshot, fw: Firewall) -> tuple[str, ...] | None:
    """The private ranges :func:`firewall_snat` judges ``fw``'s destinations by (None: the attached policy is not
    in scope, so every verdict is unknown), for callers that only need ``snats``: the ranges are the firewall's,
    and only the comparison with each destination is per IP."""
    return firewall_verdicts(snap, fw).ranges


def snats_for(ranges: tuple[str, ...] | None, ip: str) -> bool | None:
    """``firewall_snat(snap, fw, ip).snats`` given ``firewall_ranges(snap, fw)``, without the verdict's text."""
    return None if ranges is None else _verdict_for(ranges, ip)[0]


MIXED = "mixed"   # snats_within: the verdict depends on the destination


def snats_within(ranges: tuple[str, ...] | None, network: ipaddress.IPv4Network | ipaddress.IPv6Network
                 ) -> bool | str | None:
    """``snats_for(ranges, ip)`` for every ``ip`` of ``network`` when it is the same for all of them, else
    :data:`MIXED`: a private range holding the whole network leaves all of it untranslated, ranges disjoint from it
    none, and only a range strictly inside it makes the verdict depend on the address. At 100k resources the SNAT
    checks judged ~21k endpoint addresses one by one for ~220 endpoint subnets."""
    if ranges is None:
        return None
    if ALWAYS in ranges:
        return True
    if NEVER in ranges:
        return False
    mixed = False
    for _r, net in _parsed(ranges):
        if net is None or net.version != network.version:
            continue
        if network.subnet_of(net):   # type: ignore[arg-type]
            return False
        mixed = mixed or net.overlaps(network)
    return MIXED if mixed else True


def tagged_snat(nic: Nic | None, lb: LoadBalancer | None = None) -> SnatVerdict:
    """Third-party appliance: the ``plmon-snat`` tag on the NIC, else on the load balancer in front."""
    for owner, what in ((nic, "network interface"), (lb, "load balancer")):
        if owner is None:
            continue
        value = owner.tag(SNAT_TAG)
        if value is None:
            continue
        v = value.strip().lower()
        if v in ("always", "never"):
            return SnatVerdict(v == "always", "tag", f"{what} {owner.id.raw} tag {SNAT_TAG}", raw=value,
                               reason=f"the {what} declares {SNAT_TAG}={value}")
        return SnatVerdict(None, "tag", f"{what} {owner.id.raw} tag {SNAT_TAG}", raw=value,
                           reason=f"{SNAT_TAG}={value!r} is neither 'always' nor 'never'")
    return SnatVerdict(None, "tag", "none", reason=f"a third-party appliance without a {SNAT_TAG} tag "
                       "('always' or 'never') on its NIC or the load balancer in front")
