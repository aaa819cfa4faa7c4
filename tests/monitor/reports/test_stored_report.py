"""``plmon report`` from the state store alone: the last full scan's figure and coverage, a trend with a
compliance point per recorded scan, every format, the "no scan yet" error, and the schema 1 -> 2 migration."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from reportkit import CONFIG, PLS_ID, SUB2, XSS, hostile_tenant, pls
from storekit import BACKENDS
from tenantkit import SUB, net, sub_list, write_tenant

from plmon.monitor.cli import cli
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import parse_config
from plmon.monitor.lifecycle.compliance import ScanFigures, scan_figures
from plmon.monitor.lifecycle.transitions import apply_scan
from plmon.monitor.reports import build_report, build_stored_report
from plmon.monitor.scan import ScanResult, run_scan
from plmon.monitor.state.open import open_store
from plmon.monitor.state.sqlite import _MIGRATIONS, SqliteStore
from plmon.monitor.state.store import ChangeSet, FindingState, ScanRecord, StateStore

SCHEMA = json.loads((Path(__file__).parents[2] / "fixtures" / "sarif" / "sarif-schema-2.1.0.json").read_text())
GAP = {"scope": f"/subscriptions/{SUB}", "type": "Microsoft.Network/routeTables",
       "code": "AuthorizationFailed"}


def _scan(folder: Path, config_text: str) -> ScanResult:
    tenant = RecordedTenant(folder)
    return run_scan(tenant, parse_config(yaml.safe_load(config_text)), manifest=tenant.manifest)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ScanResult, ScanResult]:
    """Two ``scan --notify`` lifecycle steps: two days ago with a second public PLS (in the gap-free
    subscription, so its findings resolve when it is gone), then now without it."""
    root = tmp_path_factory.mktemp("store-report")
    db = root / "state.db"
    cfg = root / "c.yaml"
    cfg.write_text(CONFIG + f'state: {{url: "sqlite:///{db}"}}\n')
    old_pls = {**pls("pls-old"), "id": f"{net(SUB2, 'rg2')}/privateLinkServices/pls-old"}
    before = write_tenant(hostile_tenant(root / "t1"), {sub_list("privateLinkServices", SUB2): {"value": [old_pls]}},
                          subscriptions=[SUB, SUB2])
    first = _scan(before, cfg.read_text())
    second = _scan(hostile_tenant(root / "t2"), cfg.read_text())
    store = open_store(f"sqlite:///{db}")
    try:
        apply_scan(store, first, now=second.snapshot.taken_at - timedelta(days=2))
        apply_scan(store, second)
    finally:
        store.close()
    return cfg, db, first, second


def _report(history, fmt: str, tmp_path: Path, *extra: str) -> str:
    cfg = history[0]
    out = tmp_path / f"r.{fmt}"
    res = CliRunner().invoke(cli, ["report", "--config", str(cfg), "--format", fmt, "--out", str(out), *extra])
    assert res.exit_code == 0, res.output
    return out.read_text(encoding="utf-8")


def test_store_report_states_the_last_scans_figures_exactly_as_a_fresh_report(history) -> None:
    """Built from the store alone, the figure, coverage, breakdowns, findings and waivers equal those of a
    report of the last scan itself; the trend has both scans, each with its compliance point."""
    cfg, db, first, second = history
    config = parse_config(yaml.safe_load(cfg.read_text()))
    store = open_store(f"sqlite:///{db}")
    try:
        stored = build_stored_report(store.findings(FindingState.OPEN), store.findings(FindingState.WAIVED),
                                     store.scan_history(), now=second.snapshot.taken_at,
                                     waivers=config.waiver_list())
    finally:
        store.close()
    fresh = build_report(second, waivers=config.waiver_list())
    for attr in ("compliance_percent", "resources_evaluated", "resources_non_compliant", "subscriptions_scanned",
                 "gaps", "by_family", "by_subscription", "by_severity", "waivers", "tenant_id", "checks_run"):
        assert getattr(stored, attr) == getattr(fresh, attr), attr
    assert [r.finding for r in stored.findings] == [r.finding for r in fresh.findings]
    assert [w.finding for w in stored.waived] == [w.finding for w in fresh.waived]
    assert [(c.check.id, c.status) for c in stored.checks] == [(c.check.id, c.status) for c in fresh.checks]
    before, after = scan_figures(first).compliance_percent, scan_figures(second).compliance_percent
    assert before is not None and after is not None and before < after
    assert [p.compliance_percent for p in stored.trend] == [before, after]


def test_json_from_store_has_gaps_trend_and_first_seen(history, tmp_path: Path) -> None:
    """JSON: source is the store, the gap of the last scan is listed, two compliance points, ages from the store."""
    _, _, first, second = history
    doc = json.loads(_report(history, "json", tmp_path))
    assert doc["report"]["source"] == "state store" and doc["report"]["history"] == "state store"
    assert doc["coverage"]["gaps"] == [GAP] and doc["summary"]["coverage"]["complete"] is False
    assert [p["compliance_percent"] for p in doc["trend"]] == [scan_figures(first).compliance_percent,
                                                              scan_figures(second).compliance_percent]
    assert doc["scanned_at"] == "2026-11-01T12:00:00Z"
    assert len(doc["findings"]) == len(second.evaluation.findings) > 0
    assert all(f["first_seen"] == "2026-10-30T12:00:00Z" and f["remediation"] and "evidence" in f
               for f in doc["findings"])
    assert [w["resource_id"] for w in doc["waived"]] == [PLS_ID]
    assert doc["waived"][0]["waiver"]["reason"] == "public partner service <b>signed off</b>"


def test_html_from_store_lists_gap_and_both_trend_points(history, tmp_path: Path) -> None:
    """HTML: the store-source note, the gap row, the chart and one trend row per recorded scan."""
    html = _report(history, "html", tmp_path)
    assert 'id="store-source"' in html and "<svg" in html
    assert f'<td class="id">{GAP["scope"]}</td><td>{GAP["type"]}</td><td>{GAP["code"]}' in html
    trend = html[html.index('id="trend-table"'):html.index("</table>", html.index('id="trend-table"'))]
    assert trend.count("<tr><td>2026-") == 2 and "n/a" not in trend
    assert XSS not in html and "&lt;script&gt;" in html


def test_markdown_and_csv_from_store(history, tmp_path: Path) -> None:
    """Markdown has the gap and a two-row trend with percentages; CSV one row per open finding with first_seen."""
    _, _, _, second = history
    md = _report(history, "md", tmp_path)
    assert "Report of the state store" in md and "**Coverage: 1 gap(s)**" in md and "AuthorizationFailed" in md
    trend = md[md.index("## Trend"):md.index("## Open findings")]
    assert trend.count("| 2026-") == 2 and trend.count(" %") == 2
    rows = list(csv.DictReader(io.StringIO(_report(history, "csv", tmp_path))))
    assert len(rows) == len(second.evaluation.findings)
    assert {r["first_seen"] for r in rows} == {"2026-10-30T12:00:00Z"}


def test_sarif_from_store_validates_and_carries_the_gap(history, tmp_path: Path) -> None:
    """SARIF from the store is valid 2.1.0: open and waived findings as results, the gap as a notification."""
    _, _, _, second = history
    doc = json.loads(_report(history, "sarif", tmp_path))
    jsonschema.Draft4Validator(SCHEMA).validate(doc)
    run = doc["runs"][0]
    assert len(run["results"]) == len(second.evaluation.findings) + len(second.evaluation.waived)
    [note] = run["invocations"][0]["toolExecutionNotifications"]
    assert "routeTables" in note["message"]["text"]


def test_since_after_the_last_scan_keeps_the_last_scan(history, tmp_path: Path) -> None:
    """--since later than every scan still reports the last scan's figures (a one-point trend, not none)."""
    doc = json.loads(_report(history, "json", tmp_path, "--since", "2030-01-01"))
    assert len(doc["trend"]) == 1 and doc["summary"]["compliance"]["percent"] is not None


@pytest.mark.parametrize("make_db", [False, True])
def test_no_scan_yet_is_one_line_and_exit_2(tmp_path: Path, make_db: bool) -> None:
    """No store file, or a store with no scan: one line on stderr, exit 2, no store created."""
    db = tmp_path / "state.db"
    if make_db:
        open_store(f"sqlite:///{db}").close()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f'state: {{url: "sqlite:///{db}"}}\n')
    proc = subprocess.run([sys.executable, "-c", "from plmon.monitor.cli import main; main()", "report", "--config",
                           str(cfg), "--format", "json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0
    assert ("holds no scan yet" if make_db else "no state store at") in proc.stderr
    assert "Traceback" not in proc.stderr and db.exists() is make_db


def test_schema_1_file_is_migrated_in_place_with_data_intact(tmp_path: Path) -> None:
    """A database at schema 1 (its DDL as shipped) opens at the current schema: old rows load, new fields default,
    a report of its last scan states what it kept, and new scans record their figures."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(_MIGRATIONS[0])
    db.execute("INSERT INTO scans (at, kind, subscriptions_scanned, gaps, open_findings, by_check, by_severity) "
               "VALUES ('2026-10-01T00:00:00.000000Z', 'full', 3, 1, 2, '{\"c.x\": 2}', '{\"high\": 2}')")
    db.execute("INSERT INTO findings VALUES ('pls.visibility-public', ?, ?, 'open', 'high', "
               "'2026-09-01T00:00:00.000000Z', '2026-10-01T00:00:00.000000Z', NULL, NULL, 1, ?, '[]')",
               (PLS_ID.lower(), PLS_ID, json.dumps({"check_id": "pls.visibility-public", "resource_id": PLS_ID,
                                                     "severity": "high", "title": "t", "message": "m",
                                                     "subscription_id": None, "evidence": {"a": 1},
                                                     "remediation": "r"})))
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()

    store = SqliteStore(path)
    try:
        assert store.schema_version() == len(_MIGRATIONS)  # every migration since schema 1 applied
        [old] = store.scan_history()
        assert (old.subscriptions_scanned, old.gaps, old.open_findings, dict(old.by_check)) == (3, 1, 2, {"c.x": 2})
        assert old.compliance_percent is None and old.figures == {}
        [rec] = store.findings(FindingState.OPEN)
        assert rec.finding["evidence"] == {"a": 1} and rec.first_seen == datetime(2026, 9, 1, tzinfo=UTC)
        rep = build_stored_report([rec], [], [old], now=datetime(2026, 10, 2, tzinfo=UTC))
        assert rep.compliance_percent is None and rep.subscriptions_scanned == 3 and len(rep.findings) == 1
        assert rep.findings[0].age_days == 31.0
        assert [g.code for g in rep.gaps] == ["GapNotRecorded"]  # counted then, not listed: never "complete"
        store.apply(ChangeSet(scan=ScanRecord(datetime(2026, 10, 3, tzinfo=UTC), 1, 0, {}, {},
                                              compliance_percent=50.0, resources_evaluated=2,
                                              resources_non_compliant=1, figures={"gaps": [GAP]})))
        assert [s.compliance_percent for s in store.scan_history()] == [None, 50.0]
    finally:
        store.close()
    assert SqliteStore(path).schema_version() == len(_MIGRATIONS)  # opening again migrates nothing


@pytest.fixture(params=sorted(BACKENDS))
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    s = BACKENDS[request.param](tmp_path)
    yield s
    if hasattr(s, "drop_tables"):
        s.drop_tables()
    s.close()


def test_every_backend_round_trips_the_scan_figures(any_store: StateStore, history) -> None:
    """The lifecycle's scan record keeps figure, counts and the gaps list in every backend."""
    _, _, _, second = history
    apply_scan(any_store, second)
    [rec] = any_store.scan_history()
    figures = scan_figures(second)
    assert rec.compliance_percent == figures.compliance_percent
    assert (rec.resources_evaluated, rec.resources_non_compliant) == (figures.resources_evaluated,
                                                                      figures.resources_non_compliant)
    assert ScanFigures.from_dict(rec.figures) == figures
