"""Checks are pure functions of the snapshot: this test keeps the checks/ package free of I/O and clocks."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CHECKS = Path(__file__).resolve().parents[2] / "checks"
# What a check module may import besides the standard library's pure modules.
ALLOWED_OURS = ("plmon.checks", "plmon.monitor.model.snapshot", "plmon.monitor.model.arm_id",
                "plmon.monitor.model.kinds")
FORBIDDEN_STDLIB = {"os", "io", "socket", "subprocess", "urllib", "http", "pathlib", "shutil", "requests",
                    "sqlite3", "threading", "asyncio", "random", "time"}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "open", "sleep", "getenv"}
# The engine (not a check) logs a check that raised.
EXTRA = {"engine.py": ("structlog",)}


def _modules() -> list[Path]:
    return sorted(p for p in CHECKS.glob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_check_module_imports_only_the_snapshot_and_pure_stdlib(path: Path) -> None:
    """No SDK, network, file or clock import in checks/: only the snapshot model, ids and pure stdlib."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top in sys.stdlib_module_names:
                assert top not in FORBIDDEN_STDLIB, f"{path.name} imports {name}"
            elif top != "__future__":
                assert name.startswith(ALLOWED_OURS + EXTRA.get(path.name, ())), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.name)
def test_check_module_never_reads_the_clock_or_files(path: Path) -> None:
    """The snapshot carries its time; a check that called now() or open() would not replay identically."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            assert name not in FORBIDDEN_CALLS, f"{path.name}:{node.lineno} calls {name}()"
