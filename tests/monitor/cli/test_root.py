"""The plmon command line (contracts.md): scan JSON shape, exit codes, checks listing, bad-input messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from clikit import run_main
from tenantkit import SUB, TENANT, endpoint, net, storage_account, sub_list, write_tenant

PLMON = str(Path(sys.executable).parent / "plmon")
PLS_ID = f"{net()}/privateLinkServices/open"

SEVERITY = {"enum": ["critical", "high", "medium", "low", "info"]}
FINDING = {
    "type": "object",
    "required": ["check_id", "resource_id", "severity", "title", "message", "subscription_id", "evidence",
                 "remediation"],
    "properties": {
        "check_id": {"type": "string", "pattern": r"^[a-z][a-z0-9-]*\.[a-z0-9][a-z0-9.-]*$"},
        "resource_id": {"type": "string", "minLength": 1}, "severity": SEVERITY,
        "title": {"type": "string", "minLength": 1}, "message": {"type": "string", "minLength": 1},
        "subscription_id": {"type": ["string", "null"]}, "evidence": {"type": "object"},
        "remediation": {"type": "string", "minLength": 1},
    },
}
SCAN_SCHEMA = {
    "type": "object",
    "required": ["tool", "scanned_at", "tenant_id", "findings", "waived", "coverage", "summary"],
    "properties": {
        "tool": {"type": "object", "required": ["name", "version"],
                 "properties": {"name": {"const": "plmon"}, "version": {"type": "string", "minLength": 1}}},
        "scanned_at": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"},
        "tenant_id": {"type": ["string", "null"]},
        "findings": {"type": "array", "items": FINDING},
        "waived": {"type": "array", "items": {"allOf": [FINDING, {
            "type": "object", "required": ["waiver"],
            "properties": {"waiver": {"type": "object", "required": ["reason", "expires"]}}}]}},
        "coverage": {"type": "object", "required": ["subscriptions_scanned", "gaps"], "properties": {
            "subscriptions_scanned": {"type": "integer", "minimum": 0},
            "gaps": {"type": "array", "items": {"type": "object", "required": ["scope", "type", "code"],
                                                "properties": {"scope": {"type": "string"},
                                                               "type": {"type": "string"},
                                                               "code": {"type": "string"}}}}}},
        "summary": {"type": "object", "required": ["by_severity", "resources_evaluated"], "properties": {
            "by_severity": {"type": "object", "propertyNames": SEVERITY,
                            "additionalProperties": {"type": "integer", "minimum": 1}},
            "resources_evaluated": {"type": "integer", "minimum": 0}}},
    },
}


@pytest.fixture()
def tenant(tmp_path: Path) -> Path:
    """A tenant with a high (auto-approval '*'), a medium finding, and a 403 coverage gap."""
    st = storage_account("st1")
    folder = write_tenant(tmp_path / "tenant", {
        sub_list("privateLinkServices"): {"value": [{"id": PLS_ID, "name": "open", "properties": {
            "visibility": {"subscriptions": ["*"]}, "autoApproval": {"subscriptions": ["*"]}}}]},
        sub_list("privateEndpoints"): {"value": [endpoint("pe1", st["id"], status="Rejected")]},
        st["id"]: st,
    })
    err = folder / "arm" / (sub_list("routeTables") + ".error.json")
    err.write_text(json.dumps({"status": 403, "error": {"code": "AuthorizationFailed", "message": "denied"}}))
    return folder


def plmon(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed console script, as a user would."""
    return subprocess.run([PLMON, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)




def test_scan_json_matches_contract(tenant: Path, tmp_path: Path) -> None:
    """plmon scan --format json prints one document of the contract's shape, with the gap, exit 0."""
    r = plmon(["scan", "--from", str(tenant), "--format", "json"], tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, SCAN_SCHEMA)
    assert doc["tenant_id"] == TENANT and doc["scanned_at"] == "2026-11-01T12:00:00Z"
    pairs = {(f["check_id"], f["resource_id"]) for f in doc["findings"]}
    assert ("pls.auto-approval-wildcard", PLS_ID) in pairs
    assert ("connection.rejected", f"{net()}/privateEndpoints/pe1") in pairs
    assert {"scope": f"/subscriptions/{sub_list('routeTables').split('/')[1]}",
            "type": "Microsoft.Network/routeTables", "code": "AuthorizationFailed"} in doc["coverage"]["gaps"]
    assert doc["coverage"]["subscriptions_scanned"] == 1
    assert sum(doc["summary"]["by_severity"].values()) == len(doc["findings"])
    assert doc["summary"]["resources_evaluated"] >= 3


@pytest.mark.parametrize(("fail_on", "code"), [("high", 1), ("critical", 0), ("info", 1), (None, 0)])
def test_fail_on_exit_codes(tenant: Path, fail_on: str | None, code: int,
                            capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit 1 when a finding at or above --fail-on exists, else 0; no --fail-on never fails on findings."""
    monkeypatch.chdir(tenant.parent)
    args = ["scan", "--from", str(tenant), "--format", "json"] + (["--fail-on", fail_on] if fail_on else [])
    rc, out, _ = run_main(args, capsys)
    assert rc == code
    json.loads(out)


def test_config_waiver_and_disable_reach_the_document(tenant: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """--config: a waiver moves the high finding to 'waived' (so --fail-on high exits 0); enabled false drops."""
    cfg = tmp_path / "plmon.yaml"
    cfg.write_text(f"""
checks:
  connection.rejected: {{enabled: false}}
waivers:
  - {{check_id: pls.auto-approval-wildcard, resource_id: "{PLS_ID.upper()}", reason: "partner", expires: 2027-01-31}}
""")
    monkeypatch.chdir(tmp_path)
    rc, out, _ = run_main(["scan", "--from", str(tenant), "--format", "json", "--config", str(cfg),
                           "--fail-on", "high"], capsys)
    doc = json.loads(out)
    jsonschema.validate(doc, SCAN_SCHEMA)
    assert rc == 0
    assert [(w["check_id"], w["waiver"]) for w in doc["waived"]] == [
        ("pls.auto-approval-wildcard", {"reason": "partner", "expires": "2027-01-31"})]
    assert not any(f["check_id"] == "connection.rejected" for f in doc["findings"])


def test_scan_table(tenant: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The table format lists findings and the coverage gap."""
    monkeypatch.chdir(tenant.parent)
    rc, out, _ = run_main(["scan", "--from", str(tenant)], capsys)
    assert rc == 0
    assert "pls.auto-approval-wildcard" in out and "AuthorizationFailed" in out


@pytest.mark.parametrize("fmt", ["table", "md", "json"])
def test_checks_listing(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    """plmon checks lists every check id with severity and title in each format."""
    rc, out, _ = run_main(["checks", "--format", fmt], capsys)
    assert rc == 0
    for cid in ("connection.pending", "pls.nat-ip-headroom", "rmpl.bastion-dns-conflict"):
        assert cid in out
    if fmt == "json":
        rows = json.loads(out)
        assert all({"id", "severity", "title"} <= set(r) for r in rows)
    if fmt == "md":
        assert out.startswith("| id | severity | title |")


def test_version(tmp_path: Path) -> None:
    """plmon --version prints the name and version, exit 0."""
    r = plmon(["--version"], tmp_path)
    assert r.returncode == 0
    assert r.stdout.startswith("plmon ") and r.stdout.split()[1][0].isdigit()


def _bad_inputs(tmp_path: Path, tenant: Path) -> dict[str, list[str]]:
    malformed = write_tenant(tmp_path / "malformed", {})
    (malformed / "arm" / "subscriptions.json").write_text("{not json")
    configs = {"badkey": "nonsense: 1\n", "unknowncheck": "checks:\n  pls.nope: {}\n",
               "badsev": "checks:\n  pls.proxy-protocol: {severity: urgent}\n", "badyaml": "checks: [\n  - {",
               "badparam": "checks:\n  connection.pending: {pending_max_age: soon}\n"}
    for name, text in configs.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    scan = ["scan", "--from", str(tenant)]
    return {
        "missing folder": ["scan", "--from", str(tmp_path / "nope")],
        "malformed json": ["scan", "--from", str(malformed)],
        "bad config key": [*scan, "--config", str(tmp_path / "badkey.yaml")],
        "unknown check id": [*scan, "--config", str(tmp_path / "unknowncheck.yaml")],
        "bad severity in config": [*scan, "--config", str(tmp_path / "badsev.yaml")],
        "bad yaml": [*scan, "--config", str(tmp_path / "badyaml.yaml")],
        "bad param": [*scan, "--config", str(tmp_path / "badparam.yaml")],
        "missing config": [*scan, "--config", str(tmp_path / "absent.yaml")],
        "bad --fail-on": [*scan, "--fail-on", "urgent"],
        "bad --format": ["scan", "--from", str(tenant), "--format", "xml"],
    }


BAD = ["missing folder", "malformed json", "bad config key", "unknown check id", "bad severity in config",
       "bad yaml", "bad param", "missing config", "bad --fail-on", "bad --format"]
EXPECT = {"missing folder": "not found", "malformed json": "subscriptions.json", "bad config key": "nonsense",
          "unknown check id": "checks.pls.nope", "bad severity in config": "severity",
          "bad yaml": "YAML", "bad param": "pending_max_age", "missing config": "absent.yaml",
          "bad --fail-on": "--fail-on", "bad --format": "--format"}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_exit_2(case: str, tenant: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad input gives exactly one stderr line starting 'plmon:' naming the problem, exit 2, no traceback."""
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_main(_bad_inputs(tmp_path, tenant)[case], capsys)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("plmon: ") and EXPECT[case] in lines[0], lines[0]
    assert "Traceback" not in err and out == ""


def test_bad_input_through_console_script(tenant: Path, tmp_path: Path) -> None:
    """The installed entry point gives the same one line and exit 2 (malformed JSON file)."""
    cases = _bad_inputs(tmp_path, tenant)
    r = plmon(cases["malformed json"], tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("plmon: ") and "Traceback" not in r.stderr


@pytest.mark.parametrize(("extra", "reads_ahead"), [([], True), (["--subscription", SUB], False),
                                                   (["--workers", "2"], False)])
def test_a_scan_of_a_whole_folder_on_one_thread_reads_ahead(tenant: Path, extra: list[str], reads_ahead: bool,
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Proves: only a scan of every subscription read on one thread asks its folder to read ahead (a scoped scan
    would wait for a helper decoding files it never reads; with threads a fork is not safe)."""
    from plmon.monitor.collect.recorded import RecordedTenant

    asked: list[bool] = []
    monkeypatch.setattr(RecordedTenant, "read_ahead", lambda self: asked.append(self._trusted) or False)
    rc, out, _ = run_main(["scan", "--from", str(tenant), "--format", "json", *extra], capsys)
    assert rc == 0 and json.loads(out)
    assert asked == ([True] if reads_ahead else [])
