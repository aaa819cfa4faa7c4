"""Every tenant the repository holds or the tests build, discovered, for properties that must hold on all of them.

A new tenant is covered without editing a test: every recorded-tenant folder in the repository (the demo tenant,
the Microsoft-example tenant), every tenant a helper kit in tests/kit builds (a function ``(folder: Path) -> Path``
or a ``Net`` builder with only defaulted parameters), and every synthetic tenant spec the tests write, capped in
size. Used by the scoped-scan invariant (tests/e2e/test_scoped_scan.py) and by the check-reads declaration test
(tests/checks/test_registry.py).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
from collections.abc import Callable
from pathlib import Path

from plmon.monitor.errors import InputError
from plmon.monitor.replay import synth

__all__ = ["TENANTS", "Builder"]

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
# Synthetic specs are capped so the whole property stays within seconds: the invariant does not depend on size.
MAX_SYNTH_SUBSCRIPTIONS, MAX_SYNTH_ENDPOINTS = 4, 80

Builder = Callable[[Path], Path]


def _folders() -> dict[str, Builder]:
    """Recorded-tenant folders held in the repository (a manifest.json beside an arm/ folder)."""
    out: dict[str, Builder] = {}
    for base in (ROOT / "monitor", TESTS):
        for manifest in sorted(base.rglob("manifest.json")):
            if (manifest.parent / "arm").is_dir():
                out[f"folder:{manifest.parent.relative_to(ROOT)}"] = lambda _tmp, d=manifest.parent: d
    return out


def _only_defaults(params: list[inspect.Parameter]) -> bool:
    return all(p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               for p in params)


def _kit_builders() -> dict[str, Builder]:
    """Tenant builders of the helper kits: ``f(folder: Path, <defaults>) -> Path`` and ``f(<defaults>) -> Net``."""
    out: dict[str, Builder] = {}
    for file in sorted((TESTS / "kit").glob("*.py")):
        if file.stem.startswith("test_") or file.stem == "conftest":
            continue
        module = importlib.import_module(file.stem)
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ != module.__name__ or name.startswith("_"):
                continue
            sig = inspect.signature(fn)
            params = list(sig.parameters.values())
            returns = str(sig.return_annotation)
            if returns == "Path" and params and params[0].name == "folder" and _only_defaults(params[1:]):
                out[f"kit:{file.stem}.{name}"] = lambda tmp, f=fn: f(tmp)
            elif returns == "Net" and _only_defaults(params):
                out[f"kit:{file.stem}.{name}"] = lambda tmp, f=fn: f().write(tmp)
    return out


def _synth_specs() -> dict[str, Builder]:
    """Every ``SynthSpec(...)`` with literal arguments written in the tests, capped in size."""
    out: dict[str, Builder] = {}
    for file in sorted(TESTS.rglob("test_*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
                    == "SynthSpec" and not node.args):
                continue
            try:
                kw = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
            except ValueError:
                continue
            kw["subscriptions"] = min(int(kw.get("subscriptions", 1)), MAX_SYNTH_SUBSCRIPTIONS)
            kw["endpoints"] = min(int(kw.get("endpoints", MAX_SYNTH_ENDPOINTS)), MAX_SYNTH_ENDPOINTS)
            try:
                result = synth.generate(synth.SynthSpec(**kw))
            except (TypeError, ValueError, InputError):
                continue  # the specs a test writes to see them refused
            key = f"synth:{json.dumps(kw, sort_keys=True)}"
            out.setdefault(key, lambda tmp, r=result: (synth.write_tenant(r, tmp), tmp)[1])
    return out


TENANTS: dict[str, Builder] = {**_folders(), **_kit_builders(), **_synth_specs()}
