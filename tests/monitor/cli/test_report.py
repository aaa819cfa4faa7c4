"""``plmon report`` and ``plmon scan --format sarif|csv`` end to end, with and without a state store."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import yaml
from click.testing import CliRunner
from reportkit import CONFIG, hostile_tenant

from plmon.monitor.cli import cli
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import parse_config
from plmon.monitor.lifecycle.transitions import apply_scan
from plmon.monitor.scan import run_scan
from plmon.monitor.state.open import open_store


def _setup(tmp_path: Path, *, store: bool) -> tuple[Path, Path]:
    folder = hostile_tenant(tmp_path / "t")
    db = tmp_path / "state.db"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG + f'state: {{url: "sqlite:///{db}"}}\n')
    if store:
        config = parse_config(yaml.safe_load(cfg.read_text()))
        tenant = RecordedTenant(folder)
        result = run_scan(tenant, config, manifest=tenant.manifest)
        s = open_store(config.state.url)
        try:
            apply_scan(s, result, now=result.snapshot.taken_at - timedelta(days=2))
        finally:
            s.close()
    return folder, cfg


def test_report_uses_existing_store_for_age_and_trend(tmp_path: Path) -> None:
    """With the configured store present, findings carry first_seen two days back and the trend has two scans."""
    folder, cfg = _setup(tmp_path, store=True)
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["report", "--from", str(folder), "--config", str(cfg), "--format", "json",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["report"]["history"] == "state store"
    assert len(doc["trend"]) == 2
    assert all(f["first_seen"] == "2026-10-30T12:00:00Z" and f["age_days"] == 2.0 for f in doc["findings"])


def test_report_without_store_covers_one_scan_and_creates_no_store(tmp_path: Path) -> None:
    """No store file: the report is of this scan only, and the report command does not create a database."""
    folder, cfg = _setup(tmp_path, store=False)
    res = CliRunner().invoke(cli, ["report", "--from", str(folder), "--config", str(cfg), "--format", "md",
                                   "--group-by", "control"])
    assert res.exit_code == 0, res.output
    assert "history: this scan only" in res.output and "### MCSB NS-2: Secure cloud native services" in res.output
    assert not (tmp_path / "state.db").exists()


def test_scan_sarif_and_csv_formats(tmp_path: Path) -> None:
    """scan --format sarif prints a SARIF log and --format csv one row per open finding."""
    folder, cfg = _setup(tmp_path, store=False)
    sarif = CliRunner().invoke(cli, ["scan", "--from", str(folder), "--config", str(cfg), "--format", "sarif"])
    assert sarif.exit_code == 0 and json.loads(sarif.output)["version"] == "2.1.0"
    rows = CliRunner().invoke(cli, ["scan", "--from", str(folder), "--config", str(cfg), "--format", "csv"])
    assert rows.exit_code == 0 and rows.output.startswith("check_id,severity,resource_id")
    table = list(csv.reader(io.StringIO(rows.output)))  # remediation cells span lines: count records, not lines
    assert len(table) == 1 + len(json.loads(sarif.output)["runs"][0]["results"]) - 1


def test_bad_since_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A malformed --since date is a usage error: one line on stderr, exit code 2, no traceback."""
    folder, _ = _setup(tmp_path, store=False)
    proc = subprocess.run([sys.executable, "-c", "from plmon.monitor.cli import main; main()", "report", "--from",
                           str(folder), "--since", "last tuesday"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "not a date" in proc.stderr


def test_report_gives_a_finding_new_to_the_store_age_zero_not_unknown(tmp_path: Path) -> None:
    """With store history, a finding the store has never seen is first seen by this scan: age 0, a real first_seen."""
    folder = hostile_tenant(tmp_path / "t")
    db = tmp_path / "state.db"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG + f'state: {{url: "sqlite:///{db}"}}\n')
    earlier = parse_config(yaml.safe_load(CONFIG + "checks: {dns.no-zone-group: {enabled: false}}\n"))
    tenant = RecordedTenant(folder)
    result = run_scan(tenant, earlier, manifest=tenant.manifest)
    s = open_store(f"sqlite:///{db}")
    try:
        apply_scan(s, result, now=result.snapshot.taken_at - timedelta(days=2))
    finally:
        s.close()
    res = CliRunner().invoke(cli, ["report", "--from", str(folder), "--config", str(cfg), "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    ages = {f["check_id"]: (f["first_seen"], f["age_days"]) for f in doc["findings"]}
    assert ages.pop("dns.no-zone-group") == (doc["scanned_at"], 0.0)
    assert set(ages.values()) == {("2026-10-30T12:00:00Z", 2.0)}
