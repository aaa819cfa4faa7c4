"""What a scan judges and what it shows (issue 16, item 8): checks by id glob, findings by severity, resources by
resource group and tag.

Checks left out (``--checks``, ``--exclude-checks``) are not run at all, so the document's ``checks_run`` and the
report's check sections say they were not. Resource scoping never changes what a check sees: every check judges
the whole collected snapshot, and only then are findings (and pass results) about resources outside the scope
dropped. An endpoint in scope whose target is out of scope is therefore judged on the target's real state, never
on its absence; a scoped-out resource cannot cause a finding on one in scope. A finding is in scope by the
resource it is about, or, for a child (an endpoint's connection), by the nearest parent plmon read: its resource
group and tags. A resource whose tags plmon did not read matches no ``include_tags``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from plmon.checks.engine import CheckSettings, Evaluation, Owners
from plmon.checks.finding import Finding, Severity, resource_group_of
from plmon.checks.passed import PassedResult
from plmon.checks.registry import all_checks
from plmon.checks.waivers import Waiver
from plmon.monitor.errors import InputError
from plmon.monitor.model.snapshot import Resource, Snapshot


class ScanConfig(Protocol):
    """:class:`plmon.monitor.scan.ScanConfig` (this module sits below the scan, beside the configuration)."""

    def check_settings(self) -> dict[str, CheckSettings]: ...

    def waiver_list(self) -> tuple[Waiver, ...]: ...

__all__ = ["Scope", "TagMatch", "parse_tag"]

TagMatch = tuple[str, str | None]   # (name, value); a None value: the tag is present, whatever its value


def parse_tag(text: str, where: str) -> TagMatch:
    """``env=prod`` -> ("env", "prod"); ``env`` -> ("env", None). An empty name is an input error."""
    name, eq, value = text.partition("=")
    if not name.strip():
        raise InputError(f"{where}: {text!r} is not a tag (use NAME=VALUE or NAME)")
    return name.strip(), (value if eq else None)


def _tag_matches(tags: Mapping[str, str], want: TagMatch) -> bool:
    name, value = want
    for k, v in tags.items():
        if k.lower() == name.lower():  # Azure compares tag names case-insensitively
            return value is None or v == value
    return False


@dataclass(frozen=True)
class Scope:
    checks: tuple[str, ...] = ()          # id globs; empty = every check
    exclude_checks: tuple[str, ...] = ()
    severities: frozenset[Severity] = frozenset()   # empty = every severity
    resource_groups: tuple[str, ...] = ()  # name globs, case-insensitive; empty = every resource group
    include_tags: tuple[TagMatch, ...] = ()
    exclude_tags: tuple[TagMatch, ...] = ()
    _owners: dict[int, Owners] = field(default_factory=dict, compare=False, repr=False)

    @property
    def selects_checks(self) -> bool:
        return bool(self.checks or self.exclude_checks)

    @property
    def filters_resources(self) -> bool:
        return bool(self.resource_groups or self.include_tags or self.exclude_tags)

    @property
    def active(self) -> bool:
        return self.selects_checks or self.filters_resources or bool(self.severities)

    def merged(self, other: Scope) -> Scope:
        """``other``'s settings where it has any (the command line), this one's (the config file) elsewhere."""
        return Scope(checks=other.checks or self.checks, exclude_checks=other.exclude_checks or self.exclude_checks,
                     severities=other.severities or self.severities,
                     resource_groups=other.resource_groups or self.resource_groups,
                     include_tags=other.include_tags or self.include_tags,
                     exclude_tags=other.exclude_tags or self.exclude_tags)

    # --- checks -----------------------------------------------------------------------------------
    def check_ids(self) -> set[str]:
        """The ids of the checks this scope runs; an InputError when a glob names no check (a typo would
        otherwise run nothing, or everything, silently)."""
        ids = list(all_checks())
        for flag, globs in (("--checks", self.checks), ("--exclude-checks", self.exclude_checks)):
            for g in globs:
                if not fnmatch.filter([i.lower() for i in ids], g.lower()):
                    raise InputError(f"{flag} {g!r} matches no check (see 'plmon checks')")
        chosen = {i for i in ids if not self.checks or any(fnmatch.fnmatchcase(i, g.lower()) for g in self.checks)}
        return {i for i in chosen if not any(fnmatch.fnmatchcase(i, g.lower()) for g in self.exclude_checks)}

    def settings(self, base: Mapping[str, CheckSettings]) -> dict[str, CheckSettings]:
        """``base`` with every check outside the scope disabled."""
        if not self.selects_checks:
            return dict(base)
        keep = self.check_ids()
        out = dict(base)
        for check_id in all_checks():
            if check_id not in keep:
                conf = out.get(check_id, CheckSettings())
                out[check_id] = CheckSettings(enabled=False, severity=conf.severity, params=conf.params)
        return out

    def config(self, config: ScanConfig) -> ScanConfig:
        """``config`` as a scan reads it, with the checks outside the scope disabled."""
        return _ScopedConfig(config, self) if self.selects_checks else config

    # --- resources ----------------------------------------------------------------------------------
    def _owner(self, snap: Snapshot, resource_id: str) -> Resource | None:
        owners = self._owners.get(id(snap))
        if owners is None:
            owners = Owners(snap)
            self._owners.clear()
            self._owners[id(snap)] = owners
        return owners(resource_id)

    def holds(self, snap: Snapshot, resource_id: str) -> bool:
        """Whether the resource ``resource_id`` names (or the nearest parent plmon read) is inside the scope."""
        if not self.filters_resources:
            return True
        if self.resource_groups:
            group = resource_group_of(resource_id)
            if group is None or not any(fnmatch.fnmatchcase(group.lower(), g.lower()) for g in self.resource_groups):
                return False
        if self.include_tags or self.exclude_tags:
            owner = self._owner(snap, resource_id)
            tags: Mapping[str, str] = owner.tags if owner is not None else {}
            if self.include_tags and (owner is None or not any(_tag_matches(tags, t) for t in self.include_tags)):
                return False
            if any(_tag_matches(tags, t) for t in self.exclude_tags):
                return False
        return True

    def keeps_stored(self, finding: Mapping[str, object]) -> bool:
        """Whether a finding the state store kept (its scan-document dict) is in scope: by check, severity and
        resource group (the store keeps no tags, so a tag scope is refused before it gets here)."""
        check_id, severity = str(finding.get("check_id", "")), str(finding.get("severity", ""))
        if self.selects_checks and check_id not in self.check_ids():
            return False
        if self.severities and severity not in {s.value for s in self.severities}:
            return False
        if self.resource_groups:
            group = resource_group_of(str(finding.get("resource_id", "")))
            return group is not None and any(fnmatch.fnmatchcase(group.lower(), g.lower())
                                             for g in self.resource_groups)
        return True

    def _keeps(self, snap: Snapshot, f: Finding) -> bool:
        return (not self.severities or f.severity in self.severities) and self.holds(snap, f.resource_id)

    def apply(self, snap: Snapshot, ev: Evaluation, passed: tuple[PassedResult, ...] | None,
              settings: Mapping[str, CheckSettings] | None = None
              ) -> tuple[Evaluation, tuple[PassedResult, ...] | None]:
        """``ev`` and ``passed`` with the findings, waived findings and pass results outside the scope left out (a
        pass is of its check's severity: the configured one in ``settings``, else the catalogue's)."""
        if not (self.filters_resources or self.severities):
            return ev, passed
        evaluation = Evaluation(tuple(f for f in ev.findings if self._keeps(snap, f)),
                                tuple(w for w in ev.waived if self._keeps(snap, w.finding)),
                                ev.check_errors, ev.checks_run)
        if passed is not None:
            passed = tuple(p for p in passed if self.holds(snap, p.resource_id) and self._severity_of(p, settings))
        return evaluation, passed

    def _severity_of(self, p: PassedResult, settings: Mapping[str, CheckSettings] | None) -> bool:
        """Whether a pass result is of a selected severity: its check's (a pass has no escalation)."""
        if not self.severities:
            return True
        configured = (settings or {}).get(p.check_id)
        if configured is not None and configured.severity is not None:
            return configured.severity in self.severities
        chk = all_checks().get(p.check_id)
        return chk is not None and chk.severity in self.severities


class _ScopedConfig:
    """A :class:`~plmon.monitor.scan.ScanConfig` whose checks outside the scope are disabled."""

    def __init__(self, inner: ScanConfig, scope: Scope) -> None:
        self.inner, self.scope = inner, scope

    def check_settings(self) -> dict[str, CheckSettings]:
        return self.scope.settings(self.inner.check_settings())

    def waiver_list(self) -> tuple[Waiver, ...]:
        return self.inner.waiver_list()


def severities(values: Iterable[str], where: str) -> frozenset[Severity]:
    """Parsed severities; an InputError naming the bad one."""
    try:
        return frozenset(Severity.parse(v) for v in values)
    except ValueError as err:
        raise InputError(f"{where}: {err}") from None
