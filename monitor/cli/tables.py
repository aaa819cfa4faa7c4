"""Terminal output: the findings table of ``plmon scan`` and the check list, drawn with rich.

Text from Azure (names, request messages) is attacker-controlled: it is passed to rich as plain
``Text``, never as markup, so ``[bold]``-style sequences in a name print literally.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from plmon.checks.registry import Check
from plmon.monitor.cli.terminal import cells, printable
from plmon.monitor.scan import ScanResult

__all__ = ["checks_table", "findings_table", "frameworks_table", "requirements_table"]

_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


def _console() -> Console:
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:  # piped or captured: do not squeeze ids into 80 columns
        console = Console(highlight=False, soft_wrap=False, width=160)
    return console


def findings_table(result: ScanResult) -> None:
    console = _console()
    ev, snap = result.evaluation, result.snapshot
    table = Table(title=f"plmon findings ({len(ev.findings)})", show_lines=False, expand=False)
    table.add_column("severity")
    table.add_column("check")
    table.add_column("resource", overflow="fold")
    table.add_column("message", overflow="fold")
    for f in ev.findings:
        name = f.resource_id.rstrip("/").rsplit("/", 1)[-1]
        table.add_row(Text(f.severity.value, style=_STYLE[f.severity.value]), *cells(f.check_id, name, f.message))
    console.print(table)
    counts = ", ".join(f"{sev}: {n}" for sev, n in _by_severity(result).items()) or "none"
    console.print(Text(f"Findings by severity: {counts}. Waived: {len(ev.waived)}. "
                       f"Resources evaluated: {snap.resources_evaluated()} in "
                       f"{snap.coverage.subscriptions_scanned} subscription(s)."))
    if result.passed is not None:  # --include-passed: the count here, the list in json, csv, ocsf and html
        checks = len({p.check_id for p in result.passed})
        console.print(Text(f"Passed: {len(result.passed)} (check, resource) result(s) over {checks} check(s); "
                           "list them with --format json|csv|ocsf or --output-formats."))
    gaps = result.gaps
    if gaps:
        console.print(Text(f"Coverage gaps ({len(gaps)}): not seen, so not judged compliant:", style="yellow"))
        for g in gaps:
            console.print(Text(printable(f"  {g.code}  {g.type}  {g.scope}")))
    else:
        console.print(Text("Coverage: every scope in the collection plan was read."))


def _by_severity(result: ScanResult) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in result.evaluation.findings:
        out[f.severity.value] = out.get(f.severity.value, 0) + 1
    return out


def checks_table(checks: Iterable[Check]) -> None:
    table = Table(title="plmon checks")
    table.add_column("id", no_wrap=True)
    table.add_column("severity")
    table.add_column("title", overflow="fold")
    for c in checks:
        table.add_row(c.id, Text(c.severity.value, style=_STYLE[c.severity.value]), c.title)
    _console().print(table)


_STATUS = {"FAIL": "red", "PASS": "green", "NOT_RUN": "dim"}


def requirements_table(result: ScanResult, framework_id: str) -> None:
    """``scan --compliance ID --format table``: one row per requirement of the framework, as Prowler's compliance
    table, above the findings table of the framework's checks."""
    from plmon.monitor.reports.compliance import framework, requirement_rows
    fw = framework(framework_id)
    ev = result.evaluation
    rows = requirement_rows(fw.id, ev.findings, ev.waived, ev.checks_run)
    table = Table(title=f"{fw.name} {fw.version} ({fw.id}): {sum(r.status == 'FAIL' for r in rows)} of "
                        f"{len(rows)} requirement(s) failing")
    for name, justify in (("requirement", "left"), ("title", "left"), ("status", "left"), ("checks", "left"),
                          ("failed", "right"), ("passed", "right"), ("findings", "right")):
        table.add_column(name, overflow="fold", justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(r.id, r.title, Text(r.status, style=_STATUS[r.status]), "\n".join(r.checks), str(r.failed),
                      str(r.passed), str(r.findings))
    _console().print(table)


def frameworks_table(frameworks: Iterable[Mapping[str, Any]]) -> None:
    """``plmon checks --compliance-frameworks``: the framework ids ``--compliance`` takes."""
    table = Table(title="plmon compliance frameworks")
    table.add_column("id", no_wrap=True)
    table.add_column("framework", overflow="fold")
    table.add_column("requirements", justify="right")
    table.add_column("checks", justify="right")
    for f in frameworks:
        table.add_row(f["id"], f"{f['name']} {f['version']}", str(f["requirements"]), str(len(f["checks"])))
    _console().print(table)
