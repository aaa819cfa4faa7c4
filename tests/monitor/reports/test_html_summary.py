"""The HTML report's finding summary: short evidence and remediation in the row, everything in the folded block."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from reportkit import CONFIG, hostile_tenant

from plmon.checks.finding import Finding, Severity
from plmon.monitor.cli import cli
from plmon.monitor.reports.html import evidence_summary, remediation_head

PE = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/privateEndpoints/pe-a"


def _finding(evidence: dict, remediation: str = "az x") -> Finding:
    return Finding("connection.pending", PE, Severity.MEDIUM, "t", "m", "s", evidence, remediation)


def test_evidence_summary_names_arm_ids_counts_lists_and_cuts_long_text() -> None:
    """An ARM id shows as its name, scalar lists by their first three members, nested data by its size."""
    ev = {"private_endpoint": PE, "group_ids": ["blob", "file", "queue", "table", "web"], "ok": True,
          "paths": [{"a": 1}, {"b": 2}], "rule": {"x": 1}, "message": "x" * 500, "none": None}
    assert evidence_summary(_finding(ev)) == [
        ("private_endpoint", "pe-a"), ("group_ids", "blob, file, queue +2 more"), ("ok", "true"),
        ("paths", "2 item(s)"), ("rule", "1 field(s)"), ("message", "x" * 119 + "…"), ("none", "none")]


def test_evidence_summary_keeps_at_most_eight_entries() -> None:
    """A wide evidence mapping is cut to its first eight keys; the full evidence block has the rest."""
    assert [k for k, _ in evidence_summary(_finding({f"k{i}": i for i in range(20)}))] == [f"k{i}" for i in range(8)]


def test_remediation_head_is_the_first_line_and_the_count_of_the_rest() -> None:
    """A one-line remediation has nothing more; a script shows its first command and how many lines follow."""
    assert remediation_head("az one") == ("az one", 0)
    assert remediation_head("az one\n# why\naz two") == ("az one", 2)


def test_html_report_rows_hold_summary_and_folded_full_evidence(tmp_path: Path) -> None:
    """Through the CLI: each row has a key: value summary and a folded block with the whole evidence as JSON."""
    folder = hostile_tenant(tmp_path / "t")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG + f'state: {{url: "sqlite:///{tmp_path / "none.db"}"}}\n')
    res = CliRunner().invoke(cli, ["report", "--from", str(folder), "--config", str(cfg), "--format", "html"])
    assert res.exit_code == 0, res.output
    html = res.stdout
    assert html.count('<tr class="finding"') == html.count('<details class="full">') == 5
    assert '<span class="k">status</span>: Pending' in html
    assert "request_message&#34;: &#34;&lt;script&gt;" in html  # the whole evidence, still escaped
    assert html.count('<details class="finding-group"') == 5 and html.count(" open>") == 5  # small: unfolded
