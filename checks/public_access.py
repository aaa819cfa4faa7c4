"""Public network access on private-link targets: an endpoint does not close the public door by itself.

Seed: "private endpoints ... do not necessarily restrict public network access". Each type spells the
setting its own way (checks.md table); the raw values go into the evidence so a reader can see exactly
what plmon judged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from plmon.checks.finding import Issue, Severity
from plmon.checks.links import ENDPOINTS_BY_TARGET, VIEW_READS, plain_views, views_of
from plmon.checks.registry import CIS_AZURE, ISO_27001, NIST_800_53, PCI_DSS, Evidences, check
from plmon.checks.remedy import az, fill
from plmon.checks.units import each, lookup, plain
from plmon.monitor.model.kinds import ACCESS_MODE, ACCESS_RULES, BOOLEAN, PRIVATE_CLUSTER, AccessRule
from plmon.monitor.model.snapshot import Snapshot, Target, TargetState, lower

PE_OVERVIEW = "https://learn.microsoft.com/azure/private-link/private-endpoint-overview"
# The per-type table (checks.md), each row sourced from the type's REST API spec: pure data in the model
# layer (plmon.monitor.model.kinds), so that collection reads the properties it needs without importing checks.
RULES: dict[str, AccessRule] = ACCESS_RULES
# Types whose targets have no public-access notion of their own: not "unknown".
NOT_APPLICABLE = ("microsoft.network/privatelinkservices", "microsoft.authorization/resourcemanagementprivatelinks")
_ABSENT = object()


# A plain evaluation's approved endpoints per target (the last snapshot's): both checks here ask for every target's.
_approved: tuple[Snapshot | None, _Approved | None] = (None, None)


def _approved_endpoints(snap: Snapshot, target: Target) -> list[str]:
    """The endpoints (raw ids) of the Approved connections to ``target``: the views of every endpoint that names it
    and of every endpoint its own connection entries name (connection_views, found from the target's side)."""
    if not plain():
        return _find_approved(snap, target)
    global _approved
    found = _approved[1]
    if _approved[0] is not snap or found is None:
        found = _Approved(snap)
        _approved = (snap, found)
    return found.of(target)


class _Approved:
    """:func:`_find_approved` for a plain evaluation: every Approved view of every subject reduced once, in one pass
    over the views (links.plain_views), to (target key, endpoint id) under its target. _find_approved reads the
    views of the endpoints that name the target and of those the target's own connection entries name: a view's
    target came from its consumer entry (then its endpoint names the target) or from a provider entry (then it is
    kept only when its endpoint is one of those). The result is only ever used as a set (both checks sort it), so
    its order is not kept."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.per_target: dict[str, list[str]] = {}
        naming: dict[str, set[str]] | None = None
        targets = snap.targets
        per_target = self.per_target
        for key, views in plain_views(snap).items():
            for v in views:
                if v.target_id is None or v.status_key != "approved":
                    continue
                tk = v.target_id.key
                if v.consumer is None:   # a target only a provider entry names: is ``key`` one _find_approved reads?
                    if naming is None:
                        naming = self._naming(snap)
                    target = targets.get(tk)
                    if target is None or (key not in naming.get(tk, ()) and not any(
                            pc.endpoint_id is not None and pc.endpoint_id.key == key for pc in target.connections)):
                        continue
                got = per_target.get(tk)
                if got is None:
                    per_target[tk] = [v.endpoint_id.raw]
                else:
                    got.append(v.endpoint_id.raw)

    @staticmethod
    def _naming(snap: Snapshot) -> dict[str, set[str]]:
        naming: dict[str, set[str]] = {}
        for key, pe in snap.private_endpoints.items():
            for c in pe.connections:
                if c.target_id is not None:
                    naming.setdefault(c.target_id.key, set()).add(key)
        return naming

    def of(self, target: Target) -> list[str]:
        return self.per_target.get(target.id.key, [])


def _find_approved(snap: Snapshot, target: Target) -> list[str]:
    keys = dict.fromkeys(lookup(snap, ENDPOINTS_BY_TARGET, target.key))
    keys.update(dict.fromkeys(pc.endpoint_id.key for pc in target.connections if pc.endpoint_id is not None))
    return [v.endpoint_id.raw for k in keys for v in views_of(snap, k)
            if v.status_key == "approved" and v.target_id is not None and v.target_id.key == target.key]


def _setting(t: Target, path: str) -> Any:
    """The raw value at ``properties.<path>`` as read, or ``_ABSENT`` when the body did not carry it."""
    if path == "publicNetworkAccess":
        return t.public_network_access if t.has_public_network_access else _ABSENT
    return dict(t.access_settings).get(path, _ABSENT)


def _shown(raw: Any) -> str:
    return "absent" if raw is _ABSENT else "null" if raw is None else repr(raw)


def public_access_allowed(t: Target) -> tuple[bool | None, str]:
    """(allowed, why) by the per-type table; None when the type is not in it."""
    rule = RULES.get(lower(t.type))
    if rule is None:
        return None, f"type {t.type} is not in plmon's public-access table"
    if rule.how == ACCESS_MODE:
        return _access_mode(t, rule)
    raw = _setting(t, rule.path)
    if rule.how == BOOLEAN:
        if raw is False or lower(raw) in ("false", "disabled"):
            return False, f"{rule.path} is false"
        return True, f"{rule.path} is " + ("absent (defaults to allowed)" if raw is _ABSENT or raw is None
                                             else repr(raw))
    if rule.how == PRIVATE_CLUSTER:
        if raw is True:
            return False, f"{rule.path} is true: the API server has no public endpoint"
        return True, f"{rule.path} is {_shown(raw)}: not a private cluster, the API server is public"
    value = lower(raw)
    if value == "disabled":
        return False, f"{rule.path} is {raw}"
    if value == "securedbyperimeter":
        return False, (f"{rule.path} is SecuredByPerimeter: counted as not allowed, public access is "
                       "governed by the network security perimeter")
    if raw is None and rule.null_passes:
        return False, (f"{rule.path} is null: App Configuration is public only until a private endpoint "
                       "exists, and this store has an Approved one")
    if raw is None or raw is _ABSENT:
        return True, f"{rule.path} is absent or null (counts as allowed)"
    return True, f"{rule.path} is {raw!r}"


def _access_mode(t: Target, rule: AccessRule) -> tuple[bool, str]:
    """Azure Monitor private link scopes: open while either mode is Open (the spec's default when absent)."""
    modes = {leaf.rsplit(".", 1)[-1]: _setting(t, leaf) for leaf in rule.leaves}
    open_ = [k for k, v in modes.items() if lower(v) != "privateonly"]
    if not open_:
        return False, f"{rule.path}: " + " and ".join(modes) + " are PrivateOnly"
    shown = ", ".join(f"{k} is {_shown(modes[k])}" for k in open_)
    return True, f"{rule.path}: {shown} (anything but PrivateOnly counts as Open, allowed)"


def _evidence(t: Target, endpoints: list[str], why: str) -> dict[str, Any]:
    ev: dict[str, Any] = {"type": t.type, "publicNetworkAccess": t.public_network_access,
                          "publicNetworkAccess_present": t.has_public_network_access, "judgement": why,
                          "approved_private_endpoints": sorted(set(endpoints))}
    rule = RULES.get(lower(t.type))
    for leaf in rule.leaves if rule is not None and rule.path != "publicNetworkAccess" else ():
        raw = _setting(t, leaf)
        ev[f"properties.{leaf}"] = None if raw is _ABSENT else raw
    if rule is not None:
        ev["rule_source"] = f"{rule.spec} (api-version {rule.api_version})"
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
    # CIS: the versioned recommendations are in frameworks (storage accounts and key vaults only), not controls.
    references=(PE_OVERVIEW,), controls=("MCSB NS-2",),
    reads=VIEW_READS, over="targets",
    frameworks=(
        Evidences(NIST_800_53, "SC-7",
                  "SC-7 c: the public endpoint stays an external interface beside the private one, "
                  "outside the managed path"),
        Evidences(CIS_AZURE, "9.3.2.2",
                  "9.3.2.2 audits publicNetworkAccess Disabled; fails for storage accounts with an "
                  "approved endpoint where it is not", only="Microsoft.Storage/storageAccounts"),
        Evidences(CIS_AZURE, "8.3.7",
                  "8.3.7 audits publicNetworkAccess Disabled; fails for key vaults with an approved "
                  "endpoint where it is not", only="Microsoft.KeyVault/vaults"),
        Evidences(ISO_27001, "A.8.20",
                  "A.8.20: the network path the private endpoint was meant to replace is left open to "
                  "the internet"),
        Evidences(PCI_DSS, "1.4.2",
                  "1.4.2: internet traffic still reaches a component given a private path, so not one "
                  "meant to be public"),
    ),
)
def enabled_with_private_endpoint(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    for t in each(snap, "targets"):
        if t.state != TargetState.READ:
            continue
        endpoints = _approved_endpoints(snap, t)
        if not endpoints:
            continue
        allowed, why = public_access_allowed(t)
        if allowed is not True:
            continue
        fix = RULES[lower(t.type)].remediation
        yield Issue(t.id, f"{t.name} has an Approved private endpoint but still allows public network access "
                    f"({why}).", _evidence(t, endpoints, why), fill(fix, id=t.id.raw))


@check(
    id="public-access.unknown", title="Public network access of a private-link target cannot be judged",
    severity=Severity.INFO,
    rationale="A target plmon cannot read, or whose type it has no rule for, might still be public; it is "
              "listed so that a report never counts it as compliant.",
    remediation="Grant plmon read access to the resource, or check its public network access by hand.",
    references=(PE_OVERVIEW,), controls=("MCSB NS-2",),
    reads=VIEW_READS, over="targets",
    frameworks=(
        Evidences(NIST_800_53, "CA-7",
                  "CA-7: a target whose public access cannot be judged is a monitoring gap, reported "
                  "and never passed"),
    ),
)
def unknown(snap: Snapshot, params: Mapping[str, Any]) -> Iterator[Issue]:
    for t in each(snap, "targets"):
        if lower(t.type) in NOT_APPLICABLE or t.state == TargetState.NOT_FOUND:
            continue
        endpoints = _approved_endpoints(snap, t)
        if not endpoints:
            continue
        if t.state == TargetState.UNREADABLE:
            yield Issue(t.id, f"{t.name} has an Approved private endpoint but cannot be read "
                        f"({t.error_status} {t.error_code}): its public network access is unknown.",
                        {"type": t.type, "error_status": t.error_status, "error_code": t.error_code,
                         "approved_private_endpoints": sorted(set(endpoints))},
                        az("resource", "show", "--ids", t.id.raw, "--query", "properties.publicNetworkAccess"))
            continue
        allowed, why = public_access_allowed(t)
        if allowed is None:
            yield Issue(t.id, f"{t.name} ({t.type}) has an Approved private endpoint; plmon has no rule for "
                        "this type's public network access.", _evidence(t, endpoints, why),
                        az("resource", "show", "--ids", t.id.raw, "--query", "properties.publicNetworkAccess"))
