"""``plmon scan --notify`` scenarios shared by the notify and clock tests: a recorded tenant with a pending and a
rejected endpoint, a config with one signed webhook, and the CLI run in process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from receiver import Receiver
from tenantkit import endpoint, storage_account, sub_list, write_tenant

from plmon.monitor.cli import cli

SECRET = "s3cret-webhook-key"
HOSTILE = "<!channel> <https://evil|click>"


def tenant(folder: Path, *, pending: bool = True, rejected: bool = True, recorded_at: str = "2026-11-01T12:00:00Z",
           extra: dict[str, Any] | None = None) -> Path:
    st, st2, st3 = storage_account("st1"), storage_account("st2"), storage_account("st3")
    pes = [endpoint("pe-ok", st3["id"])]
    if pending:
        pes.append(endpoint("pe1", st["id"], status="Pending", request_message=HOSTILE))
    if rejected:
        pes.append(endpoint("pe2", st2["id"], status="Rejected"))
    if folder.exists():
        shutil.rmtree(folder)
    return write_tenant(folder, {sub_list("privateEndpoints"): {"value": pes}, st["id"]: st, st2["id"]: st2,
                                 st3["id"]: st3, **(extra or {})}, recorded_at=recorded_at)


def config(tmp: Path, rx: Receiver, min_severity: str = "low", **extra: Any) -> Path:
    cfg = {"state": {"url": f"sqlite:///{tmp / 'state.db'}"},
           "checks": {"connection.rejected": {"severity": "low"}},
           "alerts": [{"type": "webhook", "name": "hook", "url": rx.url, "secret": "${PLMON_TEST_SECRET}",
                       "min_severity": min_severity, "timeout": 0.5, "checks": ["connection.*"]}],
           "delivery": {"backoff_base": 0.05, "backoff_max": 0.2, "notify_timeout": 10}, **extra}
    path = tmp / "plmon.yaml"
    path.write_text(json.dumps(cfg))
    return path


def run(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), env={"PLMON_TEST_SECRET": SECRET}, catch_exceptions=False)
    return result
