"""The Azure Function app as the Functions host loads it: ``deploy/azure-function/function_app.py`` by path."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

FUNCTION_DIR = Path(__file__).resolve().parents[2] / "deploy" / "azure-function"


def load_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("plmon_function_app", FUNCTION_DIR / "function_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
