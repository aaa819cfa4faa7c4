"""``plmon scan`` as its process's command ends without the interpreter's teardown (issue 14, fifth round): the
output is whole and the exit code is the contract's; run in a caller's process it still raises SystemExit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from plmon.monitor.cli import main, root

DEMO = Path(__file__).resolve().parents[3] / "monitor" / "demo_tenant"
PLMON = [sys.executable, "-m", "plmon.monitor"]


@pytest.mark.parametrize("fail_on, code", [(None, 0), ("low", 1), ("critical", 0)])
def test_a_scan_in_its_own_process_exits_with_the_contracts_code_and_all_its_output(fail_on: str | None,
                                                                                     code: int) -> None:
    """Exit 0 or 1 by --fail-on, the whole JSON document on stdout (flushed before the process ends), --stats on
    stderr."""
    args = ["scan", "--from", str(DEMO), "--format", "json", "--stats", *(["--fail-on", fail_on] if fail_on else [])]
    done = subprocess.run([*PLMON, *args], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == code, done.stderr
    doc = json.loads(done.stdout)
    assert doc["findings"] and doc["summary"]["checks_run"] > 0
    assert done.stdout.endswith("}\n")
    assert "plmon stats:" in done.stderr


def test_a_scan_run_by_a_caller_raises_system_exit(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """main(argv) leaves the process to its caller: SystemExit with the code, never os._exit."""
    monkeypatch.setattr(root.os, "_exit", lambda code: pytest.fail(f"os._exit({code}) in the caller's process"))
    with pytest.raises(SystemExit) as e:
        main(["scan", "--from", str(DEMO), "--format", "json", "--fail-on", "low"])
    assert e.value.code == 1
    assert json.loads(capsys.readouterr().out)["findings"]
