"""SARIF keeps each finding's ARM id, as ARM spells it, in ``logicalLocations`` (results have no source file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from plmon.monitor.cli.root import cli

DEMO = Path(__file__).resolve().parents[3] / "monitor" / "demo_tenant"


def _scan(fmt: str) -> dict[str, Any]:
    r = CliRunner().invoke(cli, ["scan", "--from", str(DEMO), "--format", fmt], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_every_sarif_result_names_its_arm_id_as_a_resource_logical_location() -> None:
    """plmon scan --format sarif: each result's logical location is the finding's resource_id from the JSON document,
    byte for byte (ARM's case kept), of kind "resource" and named by its last segment, one result per finding."""
    findings = _scan("json")["findings"]
    results = _scan("sarif")["runs"][0]["results"]
    assert len(results) == len(findings) > 0
    got = sorted((r["ruleId"], r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"]) for r in results)
    assert got == sorted((f["check_id"], f["resource_id"]) for f in findings)
    for result in results:
        (logical,) = result["locations"][0]["logicalLocations"]
        assert logical["kind"] == "resource"
        assert logical["name"] == logical["fullyQualifiedName"].rstrip("/").rsplit("/", 1)[-1]
    assert any(any(c.isupper() for c in rid) for _, rid in got)   # ARM's spelling, not a lower-cased key
