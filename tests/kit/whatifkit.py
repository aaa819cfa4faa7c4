"""Build ARM what-if results for tests, in the shapes Azure returns them.

The REST ``WhatIfOperationResult`` (azure-rest-api-specs, Microsoft.Resources deployments, example
``PostDeploymentWhatIfOnResourceGroup.json``: ``status``, ``properties.changes[]`` with ``resourceId``, ``changeType``,
``before``, ``after`` holding the full payload and an ``apiVersion``, ``delta``) and what ``az deployment group what-if
--result-format FullResourcePayloads --no-pretty-print`` prints for it: the SDK model flattened, ``changes``,
``potentialChanges``, ``diagnostics``, ``error`` and ``status`` at the top, every change with ``unsupportedReason``.
Payloads are written here by hand after those shapes (no example file is copied).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from clikit import run_main

DEMO = Path(__file__).resolve().parents[2] / "monitor" / "demo_tenant"
DEMO_ARM = DEMO / "arm"
S2 = "/subscriptions/aaaaaaaa-0000-4000-8000-000000000002"
APP = f"{S2}/resourceGroups/rg-app/providers"
NET = f"{APP}/Microsoft.Network"


def demo_item(list_path: str, name: str) -> dict[str, Any]:
    """A copy of the demo tenant's item ``name`` from its list file (``subscriptions/<s>/providers/...``)."""
    body = json.loads((DEMO_ARM / f"{list_path.strip('/')}.json").read_text())
    return copy.deepcopy(next(i for i in body["value"] if i["name"] == name))


def demo_file(path: str) -> dict[str, Any]:
    """A copy of the demo tenant's body at ``path``."""
    body: dict[str, Any] = json.loads((DEMO_ARM / f"{path.strip('/')}.json").read_text())
    return body


def change(resource_id: str, change_type: str, *, before: dict[str, Any] | None = None,
           after: dict[str, Any] | None = None, reason: str | None = None,
           api_version: str = "2023-09-01") -> dict[str, Any]:
    """One ``changes[]`` entry as the CLI prints it (``after`` with what-if's ``apiVersion`` annotation)."""
    def annotated(payload: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if payload is None else {"apiVersion": api_version, **payload}
    return {"resourceId": resource_id, "changeType": change_type, "before": annotated(before),
            "after": annotated(after), "delta": [] if change_type == "Modify" else None,
            "unsupportedReason": reason}


def cli_document(*changes: dict[str, Any], status: str = "Succeeded") -> dict[str, Any]:
    """``az deployment group what-if --result-format FullResourcePayloads --no-pretty-print`` output."""
    return {"changes": list(changes), "diagnostics": None, "error": None, "potentialChanges": None, "status": status}


def rest_document(*changes: dict[str, Any]) -> dict[str, Any]:
    """The REST ``WhatIfOperationResult`` body (200 of ``.../deployments/{name}/whatIf``)."""
    return {"status": "Succeeded", "properties": {"changes": list(changes)}}


def write(folder: Path, doc: Any, name: str = "what-if.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def keys(findings: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """A scan's or what-if's findings by identity (check id, subject), as the comparison keys them."""
    return {(f["check_id"], f["resource_id"].lower()) for f in findings}


def scan(folder: Path, capsys: pytest.CaptureFixture[str]) -> set[tuple[str, str]]:
    """``plmon scan --from FOLDER``'s findings by identity: the independent side of a what-if comparison."""
    rc, out, err = run_main(["scan", "--from", str(folder), "--format", "json"], capsys)
    assert rc == 0, err
    return keys(json.loads(out)["findings"])

