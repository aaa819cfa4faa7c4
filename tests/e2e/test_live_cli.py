"""The console entry point on live ARM: plmon scan/record against a replay server, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from live_tenants import SUB2, rich_tenant
from tenantkit import SUB

from plmon.monitor.replay.server import ReplayServer

PLMON = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "plmon")
TOKEN = "sekrit-token-value-42"


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = rich_tenant(tmp_path_factory.mktemp("rich"))
    descendants = folder / "arm" / "providers" / "Microsoft.Management" / "managementGroups" / "mg1" / "descendants"
    descendants = descendants.with_suffix(".json")
    descendants.parent.mkdir(parents=True, exist_ok=True)
    descendants.write_text(json.dumps({"value": [
        {"id": f"/subscriptions/{SUB}", "name": SUB, "type": "Microsoft.Management/managementGroups/subscriptions"},
        {"id": "/providers/Microsoft.Management/managementGroups/mg2", "name": "mg2",
         "type": "Microsoft.Management/managementGroups"}]}))
    return folder


def plmon(*args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLMON_")}
    env.update({"PLMON_ARM_RETRY_BACKOFF": "0.01", "PLMON_ARM_READ_TIMEOUT": "60", "PLMON_LOG_LEVEL": "warning"})
    if token:
        env["PLMON_ARM_TOKEN"] = token
    return subprocess.run([PLMON, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def offline_doc(tenant: Path) -> dict[str, Any]:
    return json.loads(plmon("scan", "--from", str(tenant), "--format", "json").stdout)


def test_live_scan_json_equals_offline_scan(tenant: Path, offline_doc: dict[str, Any]) -> None:
    """Proves: scan --arm-endpoint/--ca-bundle with PLMON_ARM_TOKEN, paged and throttled, prints --from's findings."""
    with ReplayServer(tenant, page_size=2, throttle_every=5, retry_after=0.05) as server:
        live = plmon("scan", "--arm-endpoint", server.base_url, "--ca-bundle", server.ca_bundle,
                     "--format", "json", "--stats")
        assert set(server.methods) == {"GET"}
    assert live.returncode == 0, live.stderr
    a, b = json.loads(live.stdout), offline_doc
    assert a["findings"] == b["findings"] and len(a["findings"]) >= 15
    assert sorted(map(json.dumps, a["coverage"]["gaps"])) == sorted(map(json.dumps, b["coverage"]["gaps"]))
    assert a["coverage"]["subscriptions_scanned"] == b["coverage"]["subscriptions_scanned"]
    assert "plmon stats: ARM requests:" in live.stderr and "throttled" in live.stderr
    assert "time per phase: tenant" in live.stderr
    assert TOKEN not in live.stdout + live.stderr


def test_subscription_and_management_group_narrow_the_scan(tenant: Path) -> None:
    """Proves: --subscription and --management-group pick the subscriptions read."""
    only2 = json.loads(plmon("scan", "--from", str(tenant), "--subscription", SUB2, "--format", "json").stdout)
    assert not any(f.get("subscription_id") == SUB for f in only2["findings"])   # tenant-level findings stay
    assert {g["scope"] for g in only2["coverage"]["gaps"]} >= {f"/subscriptions/{SUB2}"}
    group = json.loads(plmon("scan", "--from", str(tenant), "--management-group", "mg1", "--format", "json").stdout)
    assert group["coverage"]["subscriptions_scanned"] == 1
    assert not any(g["scope"] == f"/subscriptions/{SUB2}" for g in group["coverage"]["gaps"])


def test_record_then_scan_the_recording(tenant: Path, tmp_path: Path, offline_doc: dict[str, Any]) -> None:
    """Proves: plmon record from live ARM, then scan --from the recording: the same findings."""
    out = tmp_path / "rec"
    with ReplayServer(tenant, page_size=3) as server:
        rec = plmon("record", "--out", str(out), "--arm-endpoint", server.base_url, "--ca-bundle", server.ca_bundle)
    assert rec.returncode == 0, rec.stderr
    assert "recorded" in rec.stderr
    a = json.loads(plmon("scan", "--from", str(out), "--format", "json").stdout)
    assert a["findings"] == offline_doc["findings"]


@pytest.mark.parametrize(("args", "message"), [
    (["--arm-endpoint", "http://127.0.0.1:1"], "must be an https URL"),
    (["--arm-endpoint", "https://127.0.0.1:1", "--ca-bundle", "/nonexistent/ca.pem"], "no such file"),
    (["--from", ".", "--arm-endpoint", "https://x"], "cannot be combined"),
])
def test_bad_live_options_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    """Proves: bad live flags end with one clear line on stderr and exit 2, never a traceback."""
    result = plmon("scan", *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_no_credentials_is_one_line_and_a_hint(tmp_path: Path) -> None:
    """Proves: a live scan with no credential at all says so in one line plus a hint, exit 2, without
    azure-identity's per-credential diagnostics (they stay at debug level)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PLMON_LOG_LEVEL": "warning",
           "AZURE_CONFIG_DIR": str(tmp_path / "az")}
    r = subprocess.run([PLMON, "scan", "--subscription", SUB], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 2, r.stderr
    assert lines[0].startswith("plmon: cannot get an Azure token") and lines[1].startswith("plmon: hint: ")
    assert "az login" in lines[1] and "PLMON_ARM_TOKEN" in lines[1]
    assert "Traceback" not in r.stderr and "EnvironmentCredential" not in r.stderr
