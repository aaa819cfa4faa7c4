"""What checks produce (:class:`Issue`) and what the engine makes of it (:class:`Finding`).

A check only says *what* is wrong and *where*; the engine adds the check's id, title, severity,
subscription and tenant once, so no check repeats that bookkeeping.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from plmon.monitor.model.arm_id import ArmId, normalise

__all__ = ["Finding", "Issue", "Severity", "finding_key", "resource_group_of", "subscription_of"]


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @classmethod
    def parse(cls, value: object) -> Severity:
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ValueError(f"unknown severity {value!r} (expected one of: "
                             f"{', '.join(s.value for s in cls)})") from None


_RANK = {Severity.CRITICAL: 4, Severity.HIGH: 3, Severity.MEDIUM: 2, Severity.LOW: 1, Severity.INFO: 0}


@dataclass(frozen=True, slots=True)
class Issue:
    """A check's verdict on one subject. ``severity`` only when the check escalates by rule."""

    resource: ArmId
    message: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    remediation: str | None = None
    severity: Severity | None = None


_SUB = re.compile(r"/subscriptions/([^/]+)", re.IGNORECASE)


def subscription_of(resource: ArmId | str) -> str | None:
    """The subscription an id lives in, also for opaque ids that still contain one."""
    if isinstance(resource, ArmId) and resource.subscription:
        return resource.subscription
    m = _SUB.search(str(resource))
    return m.group(1) if m else None


def resource_group_of(resource_id: str) -> str | None:
    """The resource group an id lives in (ARM's spelling), None for ids above one (a subscription, a tenant)."""
    parts = [p for p in resource_id.split("/") if p]
    for i, part in enumerate(parts[:-1]):
        if part.lower() == "resourcegroups":
            return parts[i + 1]
    return None


def finding_key(check_id: str, resource_id: str) -> tuple[str, str]:
    """The identity of a finding across scans: check id + normalised resource id."""
    return check_id, normalise(resource_id) if resource_id.startswith("/") else resource_id.lower()


@dataclass(frozen=True, slots=True)
class Finding:
    check_id: str
    resource_id: str
    severity: Severity
    title: str
    message: str
    subscription_id: str | None
    evidence: Mapping[str, Any]
    remediation: str
    tenant_id: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return finding_key(self.check_id, self.resource_id)

    def to_dict(self) -> dict[str, Any]:
        """The finding as in the scan JSON document (contracts.md)."""
        return self.json_dict()[0]

    def json_dict(self) -> tuple[dict[str, Any], bool]:
        """:meth:`to_dict`, and whether every value in it is plain JSON (str keys, finite floats, scalars of their
        exact type): what any JSON encoder writes alike, so a store may use a faster one than ``json`` (issue 14)."""
        plain = [True]
        out = {
            "check_id": self.check_id, "resource_id": self.resource_id,
            "severity": self.severity.value, "title": self.title, "message": self.message,
            "subscription_id": self.subscription_id, "evidence": _plain(self.evidence, plain),
            "remediation": self.remediation,
        }
        if plain[0]:
            plain[0] = all(v is None or type(v) is str for k, v in out.items() if k != "evidence")
        return out, plain[0]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], tenant_id: str | None = None) -> Finding:
        return cls(check_id=d["check_id"], resource_id=d["resource_id"],
                   severity=Severity.parse(d["severity"]), title=d.get("title", ""),
                   message=d.get("message", ""), subscription_id=d.get("subscription_id"),
                   evidence=MappingProxyType(dict(d.get("evidence") or {})),
                   remediation=d.get("remediation", ""), tenant_id=tenant_id)


_SCALARS = frozenset({str, int, bool, type(None)})


def _plain(value: Any, plain: list[bool]) -> Any:
    """Evidence as JSON-ready data: mappings, tuples and ids become dicts, lists and strings. One walk that calls
    nothing per scalar (a hub appliance's SNAT evidence at 100k resources is ~9k path dicts); ``plain[0]`` is
    cleared by anything an encoder other than ``json`` may write differently (a non-str key, a float that is not
    finite, a subclass of a scalar type)."""
    t = type(value)
    if t is dict or (t is not list and t is not tuple and isinstance(value, Mapping)):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if type(k) is not str:
                plain[0] = False
                k = str(k)
            out[k] = v if type(v) in _SCALARS else _plain(v, plain)
        return out
    if t is list or t is tuple or isinstance(value, list | tuple | set | frozenset):
        return [v if type(v) in _SCALARS else _plain(v, plain) for v in value]
    if t in _SCALARS:
        return value
    if t is float:
        if not math.isfinite(value):
            plain[0] = False
        return value
    if isinstance(value, ArmId):
        return value.raw
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, str | int | float | bool):
        plain[0] = False   # a subclass: kept as the value itself, which another encoder may not say as json does
        return value
    return str(value)
