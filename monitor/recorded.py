"""The recorded-tenant source: a folder of ARM responses read as ARM would answer them.

Format: ``shared/spec/recorded-tenant.md``. Lookup is case-insensitive on the whole path, so the
folder is indexed once; ``.error.json`` files fail the read with their status; a missing collection
path is an empty list and any other missing path a 404, exactly as ARM answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from monitor.builder import parse_time
from monitor.errors import InputError
from monitor.plan import ReadError

__all__ = ["RecordedTenant", "error_of", "is_collection_path"]


def is_collection_path(path: str) -> bool:
    """True when the last segment names a resource type rather than a resource.

    ``subscriptions``, ``providers/<Namespace>/<type>``, ``.../<type>/<name>/<childType>``: the
    segments after each ``providers/<Namespace>`` alternate type/name, so an odd count ends on a type.
    """
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts:
        return False
    lower = [p.lower() for p in parts]
    if lower == ["subscriptions"]:
        return True
    if "providers" not in lower:
        # /subscriptions/<s>/resourceGroups: a collection of groups
        return len(parts) % 2 == 1
    last = len(lower) - 1 - lower[::-1].index("providers")
    tail = parts[last + 2 :]
    return len(tail) % 2 == 1


class RecordedTenant:
    """An :class:`~monitor.plan.ArmReader` over a recorded-tenant folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError(f"recorded tenant folder not found: {self.folder}")
        self.manifest = self._read_manifest()
        arm = self.folder / "arm"
        self._index: dict[str, Path] = {}
        if arm.is_dir():
            for f in arm.rglob("*.json"):
                rel = f.relative_to(arm).as_posix()
                self._index[rel.lower()] = f

    def _read_manifest(self) -> dict[str, Any]:
        path = self.folder / "manifest.json"
        if not path.exists():
            if not (self.folder / "arm").is_dir():
                raise InputError(f"not a recorded tenant (no manifest.json or arm/): {self.folder}")
            return {}
        data = self._load(path)
        if not isinstance(data, dict):
            raise InputError(f"{path}: manifest must be a JSON object")
        for key in ("tenant_id", "recorded_at", "cloud"):
            if key in data and not isinstance(data[key], str):
                raise InputError(f"{path}: '{key}' must be a string")
        # recorded_at is "now" for every age computation of a replay: a typo must not silently become
        # the wall clock.
        if "recorded_at" in data and parse_time(data["recorded_at"]) is None:
            raise InputError(f"{path}: 'recorded_at' is not an ISO-8601 time (e.g. 2026-11-01T12:00:00Z)")
        return data

    @staticmethod
    def _load(path: Path) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise InputError(f"{path}: not UTF-8 text ({err.reason})") from None
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: malformed JSON at line {err.lineno} column {err.colno}: "
                             f"{err.msg}") from None
        except OSError as err:
            raise InputError(f"{path}: cannot read ({err.strerror})") from None

    def file_for(self, path: str) -> tuple[Path | None, bool]:
        """The file that answers GET ``path`` and whether it is an error file."""
        rel = path.strip("/").split("?", 1)[0].lower()
        err = self._index.get(rel + ".error.json")
        if err is not None:
            return err, True
        return self._index.get(rel + ".json"), False

    def get(self, path: str, *, kind: str = "") -> Any:
        found, is_error = self.file_for(path)
        if found is None:
            if is_collection_path(path):
                return {"value": []}
            raise ReadError(404, "ResourceNotFound", f"The resource '/{path.strip('/')}' was not found.")
        body = self._load(found)
        if is_error:
            status, code, message = error_of(body, found)
            raise ReadError(status, code, message)
        return body

    def paths(self) -> list[str]:
        """Every recorded GET path (lower case), for the replay server and tools."""
        return sorted(self._index)


def error_of(body: Any, where: Path | str) -> tuple[int, str, str]:
    """Status, ARM error code and message of an ``.error.json`` body."""
    if not isinstance(body, dict):
        raise InputError(f"{where}: error file must be a JSON object with 'status' and 'error'")
    status = body.get("status")
    if not isinstance(status, int) or not 400 <= status <= 599:
        raise InputError(f"{where}: 'status' must be an HTTP error status (400-599)")
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    code = error.get("code") if isinstance(error.get("code"), str) else f"Http{status}"
    message = error.get("message") if isinstance(error.get("message"), str) else ""
    return status, code, message
