"""The check registry: a check is a decorated function in ``checks/<family>.py``, nothing more.

The decorator records the check's metadata beside the function (id, title, default severity,
rationale, remediation, references, control mapping, parameters, and the snapshot collections it
reads), so there is no second list to edit. :func:`all_checks` imports every module of this package
once, which fills the registry. What a check ``reads`` is how the daemon knows which checks a re-read
resource kind can change (:func:`readers_of`); a test runs every check against a snapshot that records
what it touches, so the declaration cannot fall behind the code.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from plmon.checks.finding import Issue, Severity
from plmon.monitor.model.kinds import RECORDS
from plmon.monitor.model.snapshot import Snapshot

__all__ = ["CIS_AZURE", "ISO_27001", "NIST_800_53", "PCI_DSS", "Check", "Evidences", "Param", "all_checks", "check",
           "get_check", "parse_duration", "readers_of"]

# Versioned frameworks a check can evidence (ids as Prowler spells its compliance frameworks, so a user's
# ``--compliance`` habit carries over). Their titles and requirement catalogues are plmon.monitor.reports.controls'.
NIST_800_53 = "nist_800_53_revision_5_azure"
CIS_AZURE = "cis_5.0_azure"
ISO_27001 = "iso27001_2022_azure"
PCI_DSS = "pci_4.0_azure"
_ARM_TYPE = re.compile(r"^[A-Za-z0-9]+(\.[A-Za-z0-9]+)+/[A-Za-z0-9]+(/[A-Za-z0-9]+)*$")

CheckFn = Callable[[Snapshot, Mapping[str, Any]], Iterable[Issue]]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: object) -> timedelta:
    """``90s``, ``30m``, ``24h``, ``3d``, ``2w`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    m = _DURATION.match(str(value)) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30m, 24h, 3d)")
    return timedelta(**{_UNITS[m.group(2).lower()]: float(m.group(1))})


def _parse_str_list(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"expected a list of strings, got {value!r}")


def _parse_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Param:
    """A check parameter: its default and how to validate a configured value."""

    default: Any
    parse: Callable[[object], Any]
    help: str = ""

    @classmethod
    def duration(cls, default: str, help: str = "") -> Param:
        return cls(parse_duration(default), parse_duration, help)

    @classmethod
    def integer(cls, default: int, help: str = "") -> Param:
        return cls(default, _parse_int, help)

    @classmethod
    def strings(cls, default: Iterable[str] = (), help: str = "") -> Param:
        return cls(tuple(default), _parse_str_list, help)


@dataclass(frozen=True, slots=True)
class Evidences:
    """One requirement of a versioned framework that a check's result is evidence for, and why.

    ``why`` is one line naming what in the requirement's text a failure of the check shows (docs/compliance.md
    prints them all). ``only`` limits the mapping to findings about one ARM resource type (the finding's resource,
    or the private-link target its evidence names): CIS audits storage accounts' public network access, so a check
    that judges every private-link target evidences that recommendation only for its storage accounts."""

    framework: str
    requirement: str
    why: str
    only: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"framework": self.framework, "requirement": self.requirement, "justification": self.why,
                **({"resource_type": self.only} if self.only else {})}


@dataclass(frozen=True, slots=True)
class Check:
    id: str
    title: str
    severity: Severity
    rationale: str
    remediation: str
    references: tuple[str, ...]
    fn: CheckFn
    params: Mapping[str, Param] = field(default_factory=dict)
    # Control mapping, e.g. ("MCSB NS-2",) and ("CIS 4.x",): data for reports.
    controls: tuple[str, ...] = ()
    # The snapshot collections (plmon.monitor.model.kinds.RECORDS) the check reads, helpers included; None =
    # undeclared, so it is re-run after any change.
    reads: frozenset[str] | None = None
    # What the check judges one subject at a time (plmon.checks.units): snapshot collections, or the name of a
    # derived index whose keys are the subjects; () for a whole-tenant check.
    over: tuple[str, ...] = ()
    # The versioned framework requirements the check evidences (Evidences), with a justification each.
    frameworks: tuple[Evidences, ...] = ()

    @property
    def family(self) -> str:
        return self.id.split(".", 1)[0]

    def defaults(self) -> dict[str, Any]:
        return {name: p.default for name, p in self.params.items()}

    def compliance(self) -> dict[str, list[str]]:
        """Requirement ids per framework id, in declaration order: what ``--compliance`` filters on."""
        out: dict[str, list[str]] = {}
        for e in self.frameworks:
            reqs = out.setdefault(e.framework, [])
            if e.requirement not in reqs:
                reqs.append(e.requirement)
        return out

    def metadata(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "severity": self.severity.value,
                "family": self.family, "rationale": self.rationale, "remediation": self.remediation,
                "references": list(self.references), "controls": list(self.controls),
                "parameters": {n: _show(p.default) for n, p in self.params.items()},
                "compliance": self.compliance(), "mappings": [e.as_dict() for e in self.frameworks]}


def _show(value: Any) -> Any:
    if isinstance(value, timedelta):
        secs = int(value.total_seconds())
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if secs % size == 0 and secs:
                return f"{secs // size}{unit}"
        return f"{secs}s"
    return list(value) if isinstance(value, tuple) else value


_REGISTRY: dict[str, Check] = {}
_ID = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9][a-z0-9.-]*$")


def check(*, id: str, title: str, severity: Severity, rationale: str, remediation: str,
          references: Iterable[str], params: Mapping[str, Param] | None = None,
          controls: Iterable[str] = (), reads: Iterable[str] | None = None,
          over: str | Iterable[str] = (), frameworks: Iterable[Evidences] = ()) -> Callable[[CheckFn], CheckFn]:
    """Register ``fn`` as check ``id``. Ids are a contract (checks.md): unique, never reused.

    ``reads`` names the snapshot collections the check (and the helpers it calls) reads, e.g.
    ``("private_endpoints", "targets")``; a name the kinds table does not know is refused here, so a typo
    cannot make the daemon skip the check after a change.

    ``over`` names what the check judges one subject at a time (:mod:`plmon.checks.units`): each issue it yields is
    about the subject :func:`plmon.checks.units.each` made current, judged independently of the other subjects,
    so the daemon can judge again only the subjects an event touched.

    ``frameworks`` lists the requirements of versioned frameworks the check evidences, each with its one-line
    justification; a mapping without one, or with a malformed resource type, is refused here.
    """
    if not _ID.match(id):
        raise ValueError(f"bad check id {id!r}")
    mapped = tuple(frameworks)
    for e in mapped:
        if not (e.framework and e.requirement and e.why.strip()) or (e.only and not _ARM_TYPE.match(e.only)):
            raise ValueError(f"check {id!r}: framework mapping {e!r} needs a framework, a requirement, a "
                             "justification and, if limited, an ARM resource type such as Microsoft.Storage/x")
    declared = None if reads is None else frozenset(reads)
    if declared is not None and (unknown := declared - set(RECORDS)):
        raise ValueError(f"check {id!r} reads unknown snapshot collections {sorted(unknown)}; known: {RECORDS}")

    def register(fn: CheckFn) -> CheckFn:
        if id in _REGISTRY and _REGISTRY[id].fn is not fn:
            raise ValueError(f"duplicate check id {id!r}")
        _REGISTRY[id] = Check(id=id, title=title, severity=severity, rationale=rationale,
                              remediation=remediation, references=tuple(references), fn=fn,
                              params=dict(params or {}), controls=tuple(controls), reads=declared,
                              over=(over,) if isinstance(over, str) else tuple(over), frameworks=mapped)
        return fn
    return register


_LOADED = False


def all_checks() -> dict[str, Check]:
    """Every registered check, by id; importing the family modules on first use."""
    global _LOADED
    if not _LOADED:
        package = importlib.import_module(__name__.rpartition(".")[0])  # this package, whatever its import name
        for mod in pkgutil.iter_modules(package.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{package.__name__}.{mod.name}")
        _LOADED = True
    return dict(sorted(_REGISTRY.items()))


def get_check(check_id: str) -> Check:
    return all_checks()[check_id]


def readers_of(collections: Iterable[str]) -> set[str]:
    """The ids of the checks whose outcome a change to ``collections`` can move: those that declare reading one of
    them, and every check that declares nothing."""
    changed = frozenset(collections)
    return {c.id for c in all_checks().values() if c.reads is None or c.reads & changed}
