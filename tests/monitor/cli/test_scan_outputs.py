"""``plmon scan``/``plmon report`` end to end: OCSF, several outputs from one scan, pass results, and scoping
(issue 16, items 4, 5, 6 and 8)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from clikit import assert_one_line, run_main
from ocsfkit import class_schema
from scopekit import SUB_DENIED, scope_tenant
from tenantkit import SUB

DEMO = Path(__file__).resolve().parents[3] / "monitor" / "demo_tenant"






@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scope_tenant(tmp_path_factory.mktemp("scope") / "t")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("PLMON_LOG_LEVEL", "warning")
    monkeypatch.chdir(tmp_path)
    yield


def scan_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    rc, out, err = run_main(["scan", *args, "--format", "json"], capsys)
    assert rc == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def names(items: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(i["check_id"], i["resource_id"].rsplit("/", 1)[-1]) for i in items}


# --- item 4: OCSF ----------------------------------------------------------------------------------

def test_scan_format_ocsf_is_one_valid_detection_finding_per_finding(capsys: pytest.CaptureFixture[str]) -> None:
    """`plmon scan --format ocsf` prints a JSON array of valid OCSF 1.5.0 Detection Findings, one per finding."""
    doc = scan_json(["--from", str(DEMO)], capsys)
    rc, out, err = run_main(["scan", "--from", str(DEMO), "--format", "ocsf"], capsys)
    assert rc == 0, err
    events = json.loads(out)
    v = jsonschema.Draft202012Validator(class_schema("detection_finding", frozenset({"cloud"})))
    assert not [e.message for ev in events for e in v.iter_errors(ev)]
    assert sorted((e["unmapped"]["check_id"], e["resources"][0]["uid"]) for e in events) == \
        sorted((f["check_id"], f["resource_id"]) for f in doc["findings"])


def test_report_format_ocsf_from_a_fresh_scan(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`plmon report --format ocsf --from DIR --out FILE` writes the same events as the scan."""
    rc, _, err = run_main(["report", "--from", str(DEMO), "--format", "ocsf", "--out", str(tmp_path / "r.json")],
                          capsys)
    assert rc == 0, err
    events = json.loads((tmp_path / "r.json").read_text())
    assert events and {e["class_uid"] for e in events} == {2004}


# --- item 5: several outputs -----------------------------------------------------------------------

def test_output_formats_write_one_file_each_from_one_scan(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--output-formats json,csv,sarif,ocsf,html writes five files named NAME.<suffix> in a new directory, all of
    the same findings, the JSON one byte for byte what --format json prints."""
    out_dir = tmp_path / "out" / "nested"
    rc, stdout, err = run_main(["scan", "--from", str(DEMO), "--format", "json", "--output-formats",
                                "json,csv,sarif,ocsf,html", "--output-directory", str(out_dir),
                                "--output-filename", "audit"], capsys)
    assert rc == 0, err
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == ["audit.csv", "audit.html", "audit.json", "audit.ocsf.json", "audit.sarif"]
    assert (out_dir / "audit.json").read_text() == stdout
    doc = json.loads(stdout)
    expected = sorted((f["check_id"], f["resource_id"]) for f in doc["findings"])
    rows = list(csv.DictReader(io.StringIO((out_dir / "audit.csv").read_text())))
    assert sorted((r["check_id"], r["resource_id"]) for r in rows) == expected
    events = json.loads((out_dir / "audit.ocsf.json").read_text())
    assert sorted((e["unmapped"]["check_id"], e["resources"][0]["uid"]) for e in events) == expected
    sarif = json.loads((out_dir / "audit.sarif").read_text())
    assert len(sarif["runs"][0]["results"]) == len(expected)
    assert (out_dir / "audit.html").read_text().count('class="finding"') == len(expected)
    assert err.count("plmon: wrote") == 5


def test_output_filename_defaults_to_tenant_and_scan_time(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Without --output-filename the files are plmon-<tenant>-<scan time>.<suffix> (a recording's time: stable)."""
    rc, _, err = run_main(["scan", "--from", str(DEMO), "--output-formats", "json", "--output-directory",
                           str(tmp_path)], capsys)
    assert rc == 0, err
    assert [p.name for p in tmp_path.glob("plmon-*.json")] == \
        ["plmon-8f3e0a62-5c1d-4b7e-9a2f-1d3c5e7f9a0b-20261101T120000Z.json"]


@pytest.mark.parametrize(("args", "needles"), [
    (["--output-formats", "json,xml", "--output-directory", "x"], ("--output-formats", "xml")),
    (["--output-formats", ",", "--output-directory", "x"], ("--output-formats",)),
    (["--output-directory", "x"], ("need --output-formats",)),
    (["--output-formats", "json", "--output-filename", "a/b"], ("--output-filename",)),
])
def test_bad_output_options_are_one_line_exit_2(args: list[str], needles: tuple[str, ...],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown format, an empty list, a directory without formats or a file name with a path: one line, exit 2."""
    rc, _out, err = run_main(["scan", "--from", str(DEMO), *args], capsys)
    assert_one_line(rc, err, *needles)


def test_unwritable_output_directory_is_one_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A directory that cannot be created (below a regular file) is one line and exit 2, before any scan output."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, out, err = run_main(["scan", "--from", str(DEMO), "--output-formats", "json,csv",
                             "--output-directory", str(blocker / "sub")], capsys)
    assert_one_line(rc, err, "--output-directory", "cannot")
    assert out == ""


# --- item 6: pass results --------------------------------------------------------------------------

def test_without_include_passed_the_output_is_unchanged(capsys: pytest.CaptureFixture[str], tenant: Path) -> None:
    """--include-passed only adds: the document without it has no `passed` key and is the document with it minus
    that key; the CSV without it has no status column."""
    plain = scan_json(["--from", str(tenant)], capsys)
    with_passed = scan_json(["--from", str(tenant), "--include-passed"], capsys)
    assert "passed" not in plain
    assert {k: v for k, v in with_passed.items() if k != "passed"} == plain
    _rc, out, _ = run_main(["scan", "--from", str(tenant), "--format", "csv"], capsys)
    assert "status" not in out.splitlines()[0]


def test_passed_lists_evaluated_compliant_resources_never_a_gap(capsys: pytest.CaptureFixture[str],
                                                                tenant: Path) -> None:
    """PASS results are the resources a check judged and found compliant: never one with a finding (pe-sandbox is
    Rejected), and never the endpoint whose target plmon could not read (pe-gap: its target is in a subscription
    that answered 403), for any check that reads targets."""
    doc = scan_json(["--from", str(tenant), "--include-passed"], capsys)
    passed = names(doc["passed"])
    failed = names(doc["findings"])
    assert not passed & failed
    assert ("connection.rejected", "pe-prod") in passed and ("connection.rejected", "pe-sandbox") not in passed
    assert ("connection.target-missing", "pe-cross") in passed
    assert not [p for p in passed if p[1] == "pe-gap" and p[0].startswith(("connection.", "public-access."))]
    assert not [p for p in doc["passed"] if SUB_DENIED in p["resource_id"]]
    assert all(set(p) == {"check_id", "resource_id"} for p in doc["passed"])


def test_pass_rows_reach_csv_ocsf_and_html(capsys: pytest.CaptureFixture[str], tenant: Path, tmp_path: Path) -> None:
    """With --include-passed the CSV gets a status column and PASS rows, OCSF gets PASS events (status Resolved,
    still schema-valid) and the HTML a passed section with one row per pass."""
    doc = scan_json(["--from", str(tenant), "--include-passed"], capsys)
    rc, _, err = run_main(["scan", "--from", str(tenant), "--include-passed", "--output-formats", "csv,ocsf,html",
                           "--output-directory", str(tmp_path), "--output-filename", "p"], capsys)
    assert rc == 0, err
    rows = list(csv.DictReader(io.StringIO((tmp_path / "p.csv").read_text())))
    assert {r["status"] for r in rows} == {"FAIL", "PASS"}
    assert sorted((r["check_id"], r["resource_id"]) for r in rows if r["status"] == "PASS") == \
        sorted((p["check_id"], p["resource_id"]) for p in doc["passed"])
    events = json.loads((tmp_path / "p.ocsf.json").read_text())
    passes = [e for e in events if e["status_code"] == "PASS"]
    assert len(passes) == len(doc["passed"]) and {e["status_id"] for e in passes} == {4}
    v = jsonschema.Draft202012Validator(class_schema("detection_finding", frozenset({"cloud"})))
    assert not [e.message for ev in passes for e in v.iter_errors(ev)]
    html = (tmp_path / "p.html").read_text()
    assert 'id="passed"' in html and html.count('class="pass"') == len(doc["passed"])


def test_report_include_passed_needs_a_fresh_scan(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`plmon report --include-passed` of the state store alone is one line, exit 2: the store keeps no passes."""
    rc, _, err = run_main(["report", "--include-passed"], capsys)
    assert_one_line(rc, err, "--include-passed", "fresh scan")


# --- item 8: choosing what to scan and what to show ------------------------------------------------

def test_checks_and_exclude_checks_choose_what_runs(capsys: pytest.CaptureFixture[str], tenant: Path) -> None:
    """--checks runs only the matching checks (the document's checks_run says so); --exclude-checks removes some."""
    doc = scan_json(["--from", str(tenant), "--checks", "connection.*", "--exclude-checks", "connection.pending"],
                    capsys)
    assert {f["check_id"] for f in doc["findings"]} == {"connection.rejected"}
    assert doc["summary"]["checks_run"] == 4


def test_severity_keeps_findings_of_those_severities(capsys: pytest.CaptureFixture[str], tenant: Path) -> None:
    """--severity high keeps the high findings only; two values (repeated, after one flag, or comma-separated)
    keep both severities."""
    high = scan_json(["--from", str(tenant), "--severity", "high"], capsys)
    assert {f["severity"] for f in high["findings"]} == {"high"}
    both = scan_json(["--from", str(tenant), "--severity", "high", "--severity", "medium"], capsys)
    assert {f["severity"] for f in both["findings"]} == {"high", "medium"}
    assert scan_json(["--severity", "high", "medium", "--from", str(tenant)], capsys) == both  # Prowler's syntax
    assert scan_json(["--from", str(tenant), "--severity", "high,medium"], capsys) == both


def test_check_flags_take_several_globs_after_one_flag(capsys: pytest.CaptureFixture[str], tenant: Path) -> None:
    """`--checks A B --from DIR` runs both globs' checks, like repeating the flag."""
    one = scan_json(["--checks", "connection.rejected", "public-access.*", "--from", str(tenant)], capsys)
    two = scan_json(["--from", str(tenant), "--checks", "connection.rejected", "--checks", "public-access.*"], capsys)
    assert one == two and one["summary"]["checks_run"] == 3


def test_resource_group_and_tag_scopes(capsys: pytest.CaptureFixture[str], tenant: Path) -> None:
    """--resource-group and --include-tag/--exclude-tag keep the findings about resources in scope (a connection
    finding by its endpoint's tags); a tag scope never invents a finding about what it left out."""
    full = names(scan_json(["--from", str(tenant)], capsys)["findings"])
    prod_rg = names(scan_json(["--from", str(tenant), "--resource-group", "rg-prod"], capsys)["findings"])
    assert prod_rg == {n for n in full if n[1] in {"stprod", "pe-prod", "pe-cross", "pe-gap"}}
    sandbox = names(scan_json(["--from", str(tenant), "--include-tag", "env=sandbox"], capsys)["findings"])
    assert sandbox == {("connection.rejected", "pe-sandbox")}
    not_sandbox = names(scan_json(["--from", str(tenant), "--exclude-tag", "env=sandbox"], capsys)["findings"])
    assert not_sandbox == full - sandbox
    prod = names(scan_json(["--from", str(tenant), "--include-tag", "env=prod"], capsys)["findings"])
    assert prod <= full and ("public-access.enabled-with-private-endpoint", "stprod") in prod


def test_an_out_of_scope_target_is_still_judged_on_evidence(capsys: pytest.CaptureFixture[str],
                                                            tenant: Path) -> None:
    """pe-cross (env=prod) targets stout (env=sandbox): scoped to env=prod, pe-cross still has no finding (its
    target is read and judged, not taken as missing) and still passes connection.target-missing."""
    doc = scan_json(["--from", str(tenant), "--include-tag", "env=prod", "--include-passed"], capsys)
    assert not [f for f in doc["findings"] if f["resource_id"].endswith("/pe-cross") and
                f["check_id"].startswith(("connection.", "public-access."))]
    assert ("connection.target-missing", "pe-cross") in names(doc["passed"])
    assert not [p for p in doc["passed"] if p["resource_id"].endswith(("/stout", "/pe-sandbox"))]


def test_scope_in_config_and_tag_waivers(capsys: pytest.CaptureFixture[str], tenant: Path, tmp_path: Path) -> None:
    """`scope:` in the config file does what the flags do (and a flag overrides its key); a waiver with
    resource_tags moves the findings of resources with those tags to `waived`, with its reason and expiry."""
    cfg = tmp_path / "plmon.yaml"
    cfg.write_text("scope: {resource_groups: [rg-sandbox, rg-prod], exclude_tags: {env: prod}}\n"
                   "waivers:\n  - {check_id: 'connection.*', resource_tags: {owner: partner-team},"
                   " reason: partner onboarding, expires: 2099-01-31}\n")
    doc = scan_json(["--from", str(tenant), "--config", str(cfg)], capsys)
    assert doc["findings"] == []
    assert [(w["check_id"], w["waiver"]["reason"], w["waiver"]["expires"]) for w in doc["waived"]] == \
        [("connection.rejected", "partner onboarding", "2099-01-31")]
    flagged = scan_json(["--from", str(tenant), "--config", str(cfg), "--exclude-tag", "env=none"], capsys)
    assert {f["resource_id"].rsplit("/", 1)[-1] for f in flagged["findings"]} == {"stprod", "pe-prod", "pe-cross",
                                                                                  "pe-gap"}


@pytest.mark.parametrize(("args", "needles"), [
    (["--checks", "nosuch.*"], ("--checks", "nosuch.*", "matches no check")),
    (["--exclude-checks", "typo"], ("--exclude-checks", "typo")),
    (["--severity", "urgent"], ("--severity",)),
    (["--include-tag", "=prod"], ("--include-tag",)),
])
def test_bad_scope_flags_are_one_line_exit_2(args: list[str], needles: tuple[str, ...],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A check glob that names no check, an unknown severity or a tag without a name: one line, exit 2."""
    rc, out, err = run_main(["scan", "--from", str(DEMO), *args], capsys)
    assert_one_line(rc, err, *needles)
    assert out == ""


def test_bad_scope_config_names_the_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A bad `scope` key or a waiver naming two subjects is one line naming it, exit 2."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("scope: {severity: [urgent]}\n")
    rc, _, err = run_main(["scan", "--from", str(DEMO), "--config", str(cfg)], capsys)
    assert_one_line(rc, err, "scope.severity")
    cfg.write_text("waivers:\n  - {check_id: x, resource_pattern: '*', resource_tags: {a: b}, reason: r}\n")
    rc, _, err = run_main(["scan", "--from", str(DEMO), "--config", str(cfg)], capsys)
    assert_one_line(rc, err, "waivers", "resource_tags")


def test_report_takes_the_same_scope_flags(capsys: pytest.CaptureFixture[str], tenant: Path) -> None:
    """`plmon report --from DIR --format json --severity high` reports the high findings only."""
    rc, out, err = run_main(["report", "--from", str(tenant), "--format", "json", "--severity", "high"], capsys)
    assert rc == 0, err
    assert {f["severity"] for f in json.loads(out)["findings"]} == {"high"}


def test_subscription_constant_is_the_scanned_one() -> None:
    """The scope tenant's readable subscription is the kit's (keeps the tenant and these tests in step)."""
    assert SUB != SUB_DENIED


def test_report_output_formats_write_one_file_each(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`plmon report --from DIR --output-formats ocsf,json,md` writes each format of the one report as a file."""
    rc, _, err = run_main(["report", "--from", str(DEMO), "--format", "csv", "--output-formats", "ocsf,json,md",
                           "--output-directory", str(tmp_path / "r"), "--output-filename", "rep"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["rep.json", "rep.md", "rep.ocsf.json"]
    assert len(json.loads((tmp_path / "r" / "rep.ocsf.json").read_text())) == \
        len(json.loads((tmp_path / "r" / "rep.json").read_text())["findings"])


def test_stored_report_names_the_tag_waiver_and_takes_severity(capsys: pytest.CaptureFixture[str], tenant: Path,
                                                               tmp_path: Path) -> None:
    """After `scan --notify`, the store-only report shows the finding a tag waiver hid under that waiver (reason,
    expiry, subject) and --severity keeps only the findings of that severity."""
    cfg = tmp_path / "plmon.yaml"
    cfg.write_text("state: {url: 'sqlite:///st.db'}\nwaivers:\n  - {check_id: 'connection.*', resource_tags: "
                   "{owner: partner-team}, reason: partner onboarding, expires: 2099-01-31}\n")
    rc, _, err = run_main(["scan", "--from", str(tenant), "--config", str(cfg), "--notify"], capsys)
    assert rc == 0, err
    rc, out, err = run_main(["report", "--config", str(cfg), "--format", "json"], capsys)
    assert rc == 0, err
    doc = json.loads(out)
    assert [w["waiver"]["reason"] for w in doc["waived"]] == ["partner onboarding"]
    assert [(w["subject"], w["status"]) for w in doc["summary"]["waivers"]] == [("tag owner=partner-team", "active")]
    rc, out, err = run_main(["report", "--config", str(cfg), "--format", "json", "--severity", "high"], capsys)
    assert rc == 0, err
    assert {f["severity"] for f in json.loads(out)["findings"]} == {"high"}
    rc, _, err = run_main(["report", "--config", str(cfg), "--include-tag", "env=prod"], capsys)
    assert_one_line(rc, err, "--include-tag", "fresh scan")
    rc, out, err = run_main(["report", "--config", str(cfg), "--format", "ocsf"], capsys)
    assert rc == 0, err
    events = json.loads(out)
    v = jsonschema.Draft202012Validator(class_schema("detection_finding", frozenset({"cloud"})))
    assert not [e.message for ev in events for e in v.iter_errors(ev)]
    assert sorted(e["status"] for e in events) == sorted(["New"] * len(doc["findings"]) + ["Suppressed"])


def test_the_table_counts_the_passes(capsys: pytest.CaptureFixture[str], tenant: Path) -> None:
    """`plmon scan --include-passed` (table) says how many pass results there are; without the flag it says nothing."""
    doc = scan_json(["--from", str(tenant), "--include-passed"], capsys)
    rc, out, err = run_main(["scan", "--from", str(tenant), "--include-passed"], capsys)
    assert rc == 0, err
    assert f"Passed: {len(doc['passed'])} (check, resource) result(s)" in out
    rc, out, _ = run_main(["scan", "--from", str(tenant)], capsys)
    assert "Passed:" not in out
