"""Waivers: an owner's signed-off exception to one check on one resource (or a pattern), with expiry.

An active waiver moves the finding to the ``waived`` list with its reason; an expired one stops
hiding it and says so in the finding's evidence, so an exception can never silently outlive its date.
"""

from __future__ import annotations

import fnmatch
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

    def matches(self, finding: Finding) -> bool:
        if not fnmatch.fnmatchcase(finding.check_id.lower(), self.check_id.lower()):
            return False
        if self.resource_id is not None:
            return finding_key(finding.check_id, self.resource_id) == finding.key
        if self.resource_pattern is not None:
            return fnmatch.fnmatchcase(finding.resource_id.lower(), self.resource_pattern.lower())
        return False

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and now.date() > self.expires

    def to_dict(self) -> dict[str, str | None]:
        return {"check_id": self.check_id, "resource_id": self.resource_id,
                "resource_pattern": self.resource_pattern, "reason": self.reason,
                "expires": self.expires.isoformat() if self.expires else None}


def match_waiver(finding: Finding, waivers: tuple[Waiver, ...], now: datetime) -> tuple[Waiver | None, bool]:
    """The waiver that applies (an active one first) and whether it has expired."""
    matching = [w for w in waivers if w.matches(finding)]
    active = [w for w in matching if not w.expired(now)]
    if active:
        return active[0], False
    if matching:
        return matching[0], True
    return None, False
