"""Waivers: an owner's signed-off exception to one check on one resource (or a pattern, or resources by tag), with
expiry.

An active waiver moves the finding to the ``waived`` list with its reason; an expired one stops
hiding it and says so in the finding's evidence, so an exception can never silently outlive its date.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from plmon.checks.finding import Finding, finding_key

__all__ = ["Waiver", "match_waiver"]


@dataclass(frozen=True, slots=True)
class Waiver:
    check_id: str            # an id or a glob such as "pls.*"
    reason: str
    expires: date | None
    resource_id: str | None = None       # exact id, compared case-insensitively
    resource_pattern: str | None = None  # glob over the id, case-insensitive
    # every one of these tags (names case-insensitive, as Azure compares them; values exact) on the resource
    resource_tags: tuple[tuple[str, str], ...] | None = None

    def matches(self, finding: Finding, tags: Mapping[str, str] | None = None) -> bool:
        """Whether the waiver covers ``finding``; ``tags`` are the tags of the finding's resource (or of the
        resource it belongs to), None when unknown: a tag waiver never matches a resource whose tags plmon did not
        read."""
        if not fnmatch.fnmatchcase(finding.check_id.lower(), self.check_id.lower()):
            return False
        if self.resource_id is not None:
            return finding_key(finding.check_id, self.resource_id) == finding.key
        if self.resource_pattern is not None:
            return fnmatch.fnmatchcase(finding.resource_id.lower(), self.resource_pattern.lower())
        if self.resource_tags is not None:
            if tags is None:
                return False
            have = {k.lower(): v for k, v in tags.items()}
            return all(have.get(k.lower()) == v for k, v in self.resource_tags)
        return False

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and now.date() > self.expires

    def to_dict(self) -> dict[str, str | dict[str, str] | None]:
        out: dict[str, str | dict[str, str] | None] = {
            "check_id": self.check_id, "resource_id": self.resource_id, "resource_pattern": self.resource_pattern,
            "reason": self.reason, "expires": self.expires.isoformat() if self.expires else None}
        if self.resource_tags is not None:
            out["resource_tags"] = dict(self.resource_tags)
        return out

    @property
    def subject(self) -> str:
        """What the waiver names, for reports: the id, the pattern or the tags."""
        if self.resource_tags is not None:
            return ", ".join(f"tag {k}={v}" for k, v in self.resource_tags)
        return self.resource_id or self.resource_pattern or "*"


def match_waiver(finding: Finding, waivers: tuple[Waiver, ...], now: datetime,
                 tags: Mapping[str, str] | None = None) -> tuple[Waiver | None, bool]:
    """The waiver that applies (an active one first) and whether it has expired."""
    matching = [w for w in waivers if w.matches(finding, tags)]
    active = [w for w in matching if not w.expired(now)]
    if active:
        return active[0], False
    if matching:
        return matching[0], True
    return None, False
