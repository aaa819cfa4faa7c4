"""An ARM what-if result applied to the raw ARM answers a collection reads, before the snapshot is built.

``plmon what-if`` judges a deployment before it happens: it collects the tenant once (:class:`CachingReader` keeps
every answer), builds the "before" snapshot from those answers, then walks the same collection plan again through
:class:`WhatIfReader`, which answers each GET as ARM would once the deployment ran: the ``after`` payload of every
Create, Modify and Deploy in place of (or beside) the current item, Delete targets gone, child resources (subnets,
routes, security rules, peerings, provider-side endpoint connections) merged into their parent's array and the child
lists the plan reads (zone groups, network links, CNAME sets, a Virtual WAN hub's connections, routing intent and route
tables) answered with the change in them. Whatever the second
walk needs that the first did not read (the target of a new private endpoint, a new NIC) is read by id from the source
itself. So both states go through the one builder and the same checks, and no raw JSON outlives the collection.

The document is what ``az deployment group|sub|mg|tenant what-if --result-format FullResourcePayloads
--no-pretty-print`` prints (``status``, ``error``, ``changes`` at the top: the CLI flattens the SDK model) or the REST
``WhatIfOperationResult`` (``changes`` under ``properties``), as azure-rest-api-specs defines it
(Microsoft.Resources deployments, examples ``PostDeploymentWhatIfOnResourceGroup.json`` and siblings).
"""

from __future__ import annotations

import copy
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plmon.monitor.collect.builder import HUB_CHILDREN
from plmon.monitor.collect.plan import ArmReader, ReadError
from plmon.monitor.errors import InputError
from plmon.monitor.model.kinds import kind_of
from plmon.monitor.model.snapshot import CoverageGap

__all__ = ["APPLIED", "IGNORED", "CachingReader", "Change", "WhatIf", "WhatIfReader", "load_what_if",
           "parse_what_if"]

APPLIED = ("Create", "Modify", "Deploy", "Delete")   # the change types plmon applies
IGNORED = ("NoChange", "Ignore")                       # listed, nothing to apply
_KNOWN = (*APPLIED, *IGNORED, "Unsupported")
_PUT = ("Create", "Modify", "Deploy")

# The child lists the collection plan reads below a resource: a change to one of these is answered in that list (and
# only there: a Virtual WAN hub's connections, routing intent and route tables are separate lists below the hub, never
# inline in its payload, so the hub's own answer neither carries nor counts them as applied).
_CHILD_LISTS = frozenset(("privatednszonegroups", "virtualnetworklinks", "cname", *(c.lower() for c in HUB_CHILDREN)))
# Child types ARM returns inline in an array of the parent's properties under the same name, so a change to one is
# merged there (a PUT of a subnet changes what a GET of its virtual network answers).
_INLINE = frozenset(("subnets", "virtualnetworkpeerings", "routes", "securityrules", "privateendpointconnections",
                     "frontendipconfigurations", "backendaddresspools", "loadbalancingrules", "inboundnatrules",
                     "ipconfigurations"))
# Read-only properties ARM computes and keeps across a PUT: kept from the current resource when the predicted payload
# leaves them out, by the child type (or top-level type) they belong to.
_READ_ONLY: dict[str, tuple[str, ...]] = {
    "subnets": ("privateEndpoints", "ipConfigurations", "ipConfigurationProfiles", "serviceAssociationLinks",
                "resourceNavigationLinks", "purpose"),
    "microsoft.network/privateendpoints": ("networkInterfaces", "customDnsConfigs"),
    "microsoft.network/routetables": ("subnets",),
    "microsoft.network/networksecuritygroups": ("subnets", "networkInterfaces", "defaultSecurityRules"),
    "microsoft.network/privatelinkservices": ("networkInterfaces", "alias", "privateEndpointConnections"),
    "microsoft.network/virtualnetworks": (),
    # Set by the platform, not by the hub's template: the firewall deployed into the hub links itself here.
    "microsoft.network/virtualhubs": ("virtualRouterIps", "routingState", "azureFirewall"),
    "hubroutetables": ("associatedConnections", "propagatingConnections"),
}
# Read-only properties nested one level down (object, property): a hub firewall's private IP is allocated by ARM in
# hubIPAddresses, beside the public IP count the template sets (AzureFirewallPutInHub).
_NESTED_READ_ONLY: dict[str, tuple[tuple[str, str], ...]] = {
    "microsoft.network/azurefirewalls": (("hubIPAddresses", "privateIPAddress"),),
}
_ALWAYS_READ_ONLY = ("provisioningState", "resourceGuid")
_SUB_LIST = re.compile(r"^subscriptions/([^/]+)/providers/([^/]+/[^/]+)$")


def _norm(raw: str) -> str:
    return raw.strip().strip("/").lower()


def _is_collection(key: str) -> bool:
    """Whether a normalised path names a collection (``.../privateEndpoints/pe/privateDnsZoneGroups``): after its
    last ``providers/<namespace>`` the segments alternate type and name, so an odd count ends on a type."""
    parts = key.split("/")
    if "providers" not in parts:
        return len(parts) % 2 == 1
    return len(parts[len(parts) - 1 - parts[::-1].index("providers") + 2:]) % 2 == 1


@dataclass(frozen=True)
class Change:
    """One entry of ``changes[]``: what the deployment does to one resource."""

    resource_id: str
    change_type: str
    after: dict[str, Any] | None = None
    unsupported_reason: str | None = None

    @property
    def key(self) -> str:
        return _norm(self.resource_id)

    @property
    def parent(self) -> str:
        """The normalised id of the collection or resource one level up (``.../virtualNetworks/v`` for a subnet)."""
        return self.key.rsplit("/", 2)[0]

    @property
    def child_type(self) -> str:
        """The last type segment (``subnets``), lower-case."""
        parts = self.key.split("/")
        return parts[-2] if len(parts) >= 2 else ""

    @property
    def depth(self) -> int:
        """1 for a top-level resource, 2 for its child, ...; 0 for an id without ``providers``."""
        parts = self.key.split("/")
        if "providers" not in parts:
            return 0
        tail = parts[len(parts) - 1 - parts[::-1].index("providers") + 2:]
        return len(tail) // 2

    @property
    def top_type(self) -> str:
        """``namespace/type`` of the top-level resource the change is in, lower-case."""
        parts = self.key.split("/")
        if "providers" not in parts:
            return ""
        at = len(parts) - 1 - parts[::-1].index("providers")
        return "/".join(parts[at + 1:at + 3])

    @property
    def arm_type(self) -> str:
        """The ARM type the id names, in its spelling (``Microsoft.Network/virtualNetworks/subnets``), or ""."""
        parts = self.resource_id.strip("/").split("/")
        lower = [p.lower() for p in parts]
        if "providers" not in lower:
            return ""
        at = len(lower) - 1 - lower[::-1].index("providers")
        tail = parts[at + 1:]
        return "/".join([tail[0], *tail[1::2]]) if len(tail) >= 3 else ""

    @property
    def subscription(self) -> str:
        parts = self.key.split("/")
        return parts[1] if len(parts) > 1 and parts[0] == "subscriptions" else ""


@dataclass(frozen=True)
class WhatIf:
    """A parsed what-if document."""

    status: str
    changes: tuple[Change, ...]
    # entries that cannot be applied for what they are (no resourceId, no payload, an unknown change type): gaps
    problems: tuple[CoverageGap, ...] = ()

    @property
    def applicable(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.change_type in APPLIED)

    @property
    def ignored(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.change_type in IGNORED)

    @property
    def unsupported(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.change_type == "Unsupported")


def load_what_if(path: Path) -> WhatIf:
    """The what-if document at ``path``, or an InputError of one line (unreadable, not JSON, not a what-if, failed)."""
    try:
        text = path.read_bytes()
    except OSError as err:
        raise InputError(f"--what-if {path}: cannot read it ({err.strerror or err})") from None
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as err:
        raise InputError(f"--what-if {path}: not JSON ({str(err).splitlines()[0][:120]})") from None
    return parse_what_if(doc, str(path))


def parse_what_if(doc: Any, where: str = "document") -> WhatIf:
    """A what-if result as the az CLI prints it (``changes`` at the top) or as REST answers it (under ``properties``).

    A failed operation (``status`` other than Succeeded, or an ``error``) judges nothing: it is an InputError."""
    if not isinstance(doc, dict):
        raise InputError(f"--what-if {where}: not a what-if result (expected a JSON object with 'changes')")
    raw_props = doc.get("properties")
    props: dict[str, Any] = raw_props if isinstance(raw_props, dict) else {}
    changes = doc.get("changes", props.get("changes"))
    status = doc.get("status")
    error = doc.get("error")
    if isinstance(error, dict) and error:
        code = error.get("code") or "error"
        message = " ".join(str(error.get("message") or "").split())[:200]
        raise InputError(f"--what-if {where}: the what-if operation failed ({code}: {message})")
    if status is not None and (not isinstance(status, str) or status.lower() != "succeeded"):
        raise InputError(f"--what-if {where}: the what-if operation did not succeed (status {status!r})")
    if not isinstance(changes, list):
        raise InputError(f"--what-if {where}: not a what-if result (no 'changes' array)")
    out: list[Change] = []
    problems: list[CoverageGap] = []
    for i, c in enumerate(changes):
        if not isinstance(c, dict):
            raise InputError(f"--what-if {where}: changes[{i}] is not an object")
        rid, ctype = c.get("resourceId"), c.get("changeType")
        if not isinstance(ctype, str) or not ctype:
            raise InputError(f"--what-if {where}: changes[{i}] has no changeType")
        ctype = next((k for k in _KNOWN if k.lower() == ctype.lower()), ctype)
        if not isinstance(rid, str) or not rid.strip():
            # Extensible (non-ARM) resources carry symbolicName/identifiers instead: plmon cannot place them.
            name = str(c.get("symbolicName") or c.get("deploymentId") or f"changes[{i}]")
            problems.append(CoverageGap(name[:500], "what-if", "WhatIfNoResourceId", None,
                                        f"{ctype} change without a resourceId: not applied"))
            continue
        after = c.get("after")
        change = Change(rid.strip(), ctype, after if isinstance(after, dict) else None,
                        str(c["unsupportedReason"]) if c.get("unsupportedReason") is not None else None)
        if ctype not in _KNOWN:
            problems.append(CoverageGap(change.resource_id, "what-if", "WhatIfUnknownChangeType", None,
                                        f"change type {ctype!r} is not one plmon knows: not applied"))
            continue
        if ctype in _PUT and change.after is None:
            problems.append(CoverageGap(change.resource_id, "what-if", "WhatIfNoPayload", None,
                                        f"{ctype} without an 'after' payload (run what-if with --result-format "
                                        f"FullResourcePayloads): not applied"))
            continue
        out.append(change)
    potential = doc.get("potentialChanges", props.get("potentialChanges"))
    for c in potential if isinstance(potential, list) else ():
        if isinstance(c, dict) and str(c.get("changeType") or "") in APPLIED:
            # Changes what-if could not confirm (API 2024-11-01 and later): listed, never applied as if certain.
            problems.append(CoverageGap(str(c.get("resourceId") or c.get("symbolicName") or "?")[:500], "what-if",
                                        "WhatIfPotentialChange", None,
                                        f"{c['changeType']} what-if could not confirm (potentialChanges): not applied"))
    return WhatIf(str(status or "Succeeded"), tuple(out), tuple(problems))


class CachingReader:
    """An :class:`ArmReader` that answers each path once from ``base`` and then from memory, errors included.

    The "after" walk reads the same paths as the "before" one: it must see the same tenant, and a live source must
    not be asked twice."""

    def __init__(self, base: ArmReader) -> None:
        self.base = base
        self._answers: dict[str, tuple[Any, ReadError | None]] = {}
        self._lock = threading.Lock()

    def get(self, path: str, *, kind: str) -> Any:
        key = path.strip("/").split("?", 1)[0].lower()
        with self._lock:
            hit = self._answers.get(key)
        if hit is None:
            try:
                hit = (self.base.get(path, kind=kind), None)
            except ReadError as err:
                hit = (None, err)
            with self._lock:
                self._answers.setdefault(key, hit)
        if hit[1] is not None:
            raise hit[1]
        return hit[0]


@dataclass
class _Applied:
    """Which changes some answer carried: the rest of a kind plmon reads could not be applied (a coverage gap)."""

    keys: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def mark(self, change: Change) -> None:
        with self.lock:
            self.keys.add(change.key)


class WhatIfReader:
    """An :class:`ArmReader` answering as ARM would after the deployment: ``base`` with the changes applied.

    Answers are built fresh (payloads copied), so the cached "before" answers are never modified."""

    def __init__(self, base: ArmReader, what_if: WhatIf) -> None:
        self.base = base
        self.applied = _Applied()
        changes = what_if.applicable
        self._by_key: dict[str, Change] = {c.key: c for c in changes}
        self._children: dict[str, list[Change]] = {}
        for c in changes:
            if c.depth >= 2:
                self._children.setdefault(c.parent, []).append(c)
        self._top_by_list: dict[tuple[str, str], list[Change]] = {}
        for c in changes:
            if c.depth == 1 and c.subscription:
                self._top_by_list.setdefault((c.subscription, c.top_type), []).append(c)
        self._deleted = {c.key for c in changes if c.change_type == "Delete"}
        # subnet id -> endpoint ids a new or changed endpoint places there (ARM lists them in the subnet's
        # read-only privateEndpoints[])
        self._endpoints_in: dict[str, list[str]] = {}
        self._placed: dict[str, str] = {}   # endpoint -> the subnet the deployment puts it in
        for c in changes:
            if c.change_type in _PUT and c.top_type == "microsoft.network/privateendpoints" and c.depth == 1:
                subnet = _ref(_props(c.after), "subnet")
                if subnet:
                    self._endpoints_in.setdefault(_norm(subnet), []).append(c.resource_id)
                    self._placed[c.key] = _norm(subnet)
        # Changes to items of a collection other than a subscription's list (a child list, a management group's
        # associations), by the collection's path.
        self._by_collection: dict[str, list[Change]] = {}
        for c in changes:
            if c.depth >= 1 and not (c.depth == 1 and c.subscription):
                self._by_collection.setdefault(c.key.rsplit("/", 1)[0], []).append(c)

    # --- the reader -------------------------------------------------------------------------------------------

    def get(self, path: str, *, kind: str) -> Any:
        key = path.strip("/").split("?", 1)[0].lower()
        m = _SUB_LIST.match(key)
        if m:
            body = self.base.get(path, kind=kind)
            return self._list(body, self._top_by_list.get((m.group(1), m.group(2)), ()))
        own = self._by_key.get(key)
        if own is not None:
            self.applied.mark(own)
            if own.change_type == "Delete":
                raise ReadError(404, "ResourceNotFound", f"The resource '/{path.strip('/')}' was not found "
                                                          f"(deleted by the what-if deployment).")
            current = None
            if own.change_type != "Create":
                try:
                    current = self.base.get(path, kind=kind)
                except ReadError:
                    current = None
            return self._resource(self._put(own, current if isinstance(current, dict) else None))
        children = self._by_collection.get(key, []) if _is_collection(key) else []
        try:
            body = self.base.get(path, kind=kind)
        except ReadError as err:
            if err.status == 404 and _is_collection(key) and (children or self._created_above(key)):
                body = {"value": []}  # a list below a resource the deployment creates: empty, then the changes
            else:
                raise
        if isinstance(body, dict) and isinstance(body.get("value"), list):
            return self._list(body, children)
        if isinstance(body, dict):
            return self._resource(body)
        return body

    # --- applying ---------------------------------------------------------------------------------------------

    def _list(self, body: Any, changes: Any) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("value"), list):
            return body
        changes = list(changes)
        by_key = {c.key: c for c in changes}
        items: list[Any] = []
        seen: set[str] = set()
        for item in body["value"]:
            rid = _norm(item["id"]) if isinstance(item, dict) and isinstance(item.get("id"), str) else None
            change = by_key.get(rid) if rid else None
            if change is None:
                items.append(self._resource(item) if isinstance(item, dict) else item)
                continue
            seen.add(change.key)
            self.applied.mark(change)
            if change.change_type != "Delete":
                items.append(self._resource(self._put(change, item)))
        for change in changes:
            if change.key not in seen and change.change_type in _PUT:
                self.applied.mark(change)
                items.append(self._resource(self._put(change, None)))
            elif change.key not in seen:
                self.applied.mark(change)   # a Delete of what is already absent: applied, nothing to remove
        out = dict(body)
        out["value"] = items
        return out

    def _put(self, change: Change, current: dict[str, Any] | None) -> dict[str, Any]:
        """The payload ARM would hold after the PUT: ``after``, with the read-only properties it computes kept."""
        after = copy.deepcopy(change.after or {})
        after.pop("apiVersion", None)   # what-if's own annotation, not a property of the resource
        # ARM's payload always names itself; a hand-made one may not (the change's id is then the resource's)
        after.setdefault("id", change.resource_id)
        after.setdefault("name", change.resource_id.rstrip("/").rsplit("/", 1)[-1])
        if change.arm_type:
            after.setdefault("type", change.arm_type)
        if current is not None:
            _keep_read_only(after, current, change.top_type if change.depth == 1 else change.child_type)
        return after

    def _resource(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with its child changes merged into its arrays and the derived read-only lists ARM keeps."""
        rid = _norm(body["id"]) if isinstance(body.get("id"), str) else None
        kids = [c for c in self._children.get(rid, ()) if c.child_type not in _CHILD_LISTS] if rid else []
        props = body.get("properties")
        if not kids and not (isinstance(props, dict) and self._touches_endpoints(rid or "", props)):
            return body   # (most items: answered as read, not copied)
        body = copy.deepcopy(body)
        props = body.get("properties") if isinstance(body.get("properties"), dict) else None
        for child in kids:
            if props is None:
                props = body["properties"] = {}
            name = next((k for k in props if k.lower() == child.child_type), None)
            if name is None and child.child_type not in _INLINE:
                self.applied.mark(child)   # a child type ARM does not return inline: nothing plmon reads changes
                continue
            name = name or _INLINE_NAME.get(child.child_type, child.child_type)
            found = props.get(name)
            arr: list[Any] = found if isinstance(found, list) else []
            kept: list[Any] = []
            placed = False
            for entry in arr:   # in place, as ARM keeps the array's order; a new child goes last
                if isinstance(entry, dict) and _entry_is(entry, child):
                    if child.change_type in _PUT and not placed:
                        kept.append(self._put(child, entry))
                        placed = True
                else:
                    kept.append(entry)
            if child.change_type in _PUT and not placed:
                kept.append(self._put(child, None))
            props[name] = kept
            self.applied.mark(child)
        if props is not None:
            self._fix_endpoint_refs(props)
            for sub in props.get("subnets") or ():
                if isinstance(sub, dict) and isinstance(sub.get("properties"), dict):
                    self._fix_subnet(sub)
            if rid and "/subnets/" in rid:
                self._fix_subnet(body)
        return body

    def _touches_endpoints(self, rid: str, props: dict[str, Any]) -> bool:
        """Whether the endpoint lists ARM keeps in this resource (provider-side connections, a subnet's or its
        network's subnets' ``privateEndpoints[]``) may change with the endpoints the deployment deletes or places."""
        if not (self._deleted or self._placed):
            return False
        if self._deleted and "privateEndpointConnections" in props:
            return True
        if "/subnets/" in rid:
            return True
        subnets = props.get("subnets")
        return isinstance(subnets, list) and any(isinstance(s, dict) and "properties" in s for s in subnets)

    def _fix_endpoint_refs(self, props: dict[str, Any]) -> None:
        """Provider-side connections of a deleted endpoint go with it, as ARM removes them."""
        conns = props.get("privateEndpointConnections")
        if isinstance(conns, list) and self._deleted:
            props["privateEndpointConnections"] = [
                c for c in conns if not (isinstance(c, dict)
                                         and _norm(_ref(_props(c), "privateEndpoint") or "") in self._deleted)]

    def _fix_subnet(self, subnet: dict[str, Any]) -> None:
        """A subnet's read-only ``privateEndpoints[]`` as ARM would list it after the deployment."""
        props = subnet["properties"]
        sid = _norm(str(subnet.get("id") or ""))
        refs = props.get("privateEndpoints")
        listed = [r for r in refs if isinstance(r, dict)] if isinstance(refs, list) else []
        kept = [r for r in listed if (rk := _norm(str(r.get("id") or ""))) not in self._deleted
                and self._placed.get(rk, sid) == sid]
        have = {_norm(str(r.get("id") or "")) for r in kept}
        kept.extend({"id": pe} for pe in self._endpoints_in.get(sid, ()) if _norm(pe) not in have)
        if kept or refs is not None:
            props["privateEndpoints"] = kept

    def _created_above(self, key: str) -> bool:
        """Whether the deployment creates (or puts) a resource that ``key`` lies below: live ARM answers 404 for the
        lists below what does not exist yet, which after the deployment would be empty lists."""
        while key.count("/") > 1:
            key = key.rsplit("/", 1)[0]
            found = self._by_key.get(key)
            if found is not None:
                return found.change_type in _PUT
        return False

    def _deleted_with_parent(self, change: Change) -> bool:
        key = change.key
        while key.count("/") > 2:
            key = key.rsplit("/", 2)[0]
            if key in self._deleted:
                return True
        return False

    def unapplied(self) -> list[Change]:
        """The changes of kinds plmon reads that no answer carried: their list or parent was not read."""
        out = []
        for c in self._by_key.values():
            if c.key in self.applied.keys:
                continue
            if c.change_type == "Delete" and self._deleted_with_parent(c):
                continue   # ARM deletes a child with its parent: nothing is left for the child's own Delete
            kind = kind_of(c.top_type)
            if kind is None:
                continue   # a type plmon never reads: the change cannot alter what the checks see
            if kind.listed_as or c.top_type == "microsoft.authorization/privatelinkassociations":
                out.append(c)
        return out


_INLINE_NAME = {"subnets": "subnets", "virtualnetworkpeerings": "virtualNetworkPeerings", "routes": "routes",
                "securityrules": "securityRules", "privateendpointconnections": "privateEndpointConnections",
                "frontendipconfigurations": "frontendIPConfigurations", "backendaddresspools": "backendAddressPools",
                "loadbalancingrules": "loadBalancingRules", "inboundnatrules": "inboundNatRules",
                "ipconfigurations": "ipConfigurations"}


def _entry_is(entry: dict[str, Any], child: Change) -> bool:
    rid = entry.get("id")
    if isinstance(rid, str) and rid:
        return _norm(rid) == child.key
    return str(entry.get("name") or "").lower() == child.key.rsplit("/", 1)[-1]


def _keep_read_only(after: dict[str, Any], current: dict[str, Any], type_key: str) -> None:
    props = after.get("properties")
    was = current.get("properties")
    if not isinstance(props, dict) or not isinstance(was, dict):
        return
    for name in (*_ALWAYS_READ_ONLY, *_READ_ONLY.get(type_key, ())):
        if name not in props and name in was:
            props[name] = copy.deepcopy(was[name])
    for outer, name in _NESTED_READ_ONLY.get(type_key, ()):
        old, new = was.get(outer), props.get(outer)
        if isinstance(old, dict) and name in old and (new is None or (isinstance(new, dict) and name not in new)):
            props[outer] = {**(new or {}), name: copy.deepcopy(old[name])}
    if type_key == "microsoft.network/virtualnetworks":   # inline subnets keep theirs, by name
        old = {str(s.get("name") or "").lower(): s for s in was.get("subnets") or () if isinstance(s, dict)}
        for s in props.get("subnets") or ():
            if isinstance(s, dict) and isinstance(s.get("properties"), dict):
                prev = old.get(str(s.get("name") or "").lower())
                if prev is not None:
                    _keep_read_only(s, prev, "subnets")


def _props(d: Any) -> dict[str, Any]:
    p = d.get("properties") if isinstance(d, dict) else None
    return p if isinstance(p, dict) else {}


def _ref(props: dict[str, Any], name: str) -> str | None:
    v = props.get(name)
    rid = v.get("id") if isinstance(v, dict) else None
    return rid if isinstance(rid, str) and rid else None
