"""Recording a collection as a recorded tenant (shared/spec/recorded-tenant.md).

:class:`RecordingReader` wraps any ARM reader and writes what each plan read answered: the merged body,
or an ``.error.json`` with ARM's status and error. Replaying the folder therefore makes the plan take the
same branches it took live, which is what lets a user's problem be reproduced anywhere.
"""

from __future__ import annotations

import json
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from plmon.monitor.collect.plan import ArmReader, Inventory, ReadError, collect
from plmon.monitor.collect.redact import Redactor, redact_folder
from plmon.monitor.collect.sources import Source, group_subscriptions
from plmon.monitor.errors import InputError

__all__ = ["RecordingReader", "record"]

log = structlog.get_logger(__name__)

# A read that got no answer has no HTTP status; the recording needs one, and 504 is what a gateway says.
_NO_ANSWER_STATUS = 504


class RecordingReader:
    """An ArmReader that passes reads through and writes each answer under ``folder/arm``."""

    def __init__(self, inner: ArmReader, folder: Path) -> None:
        self.inner = inner
        self.arm = folder / "arm"
        self.written = 0
        self.errors = 0
        self._lock = threading.Lock()

    def get(self, path: str, *, kind: str) -> Any:
        rel = path.strip("/").split("?", 1)[0]
        try:
            body = self.inner.get(path, kind=kind)
        except ReadError as err:
            status = err.status if err.status and 400 <= err.status <= 599 else _NO_ANSWER_STATUS
            self._write(rel + ".error.json", {"status": status,
                                              "error": {"code": err.code, "message": err.message}})
            with self._lock:
                self.errors += 1
            raise
        if isinstance(body, dict) and "nextLink" in body:
            body = {k: v for k, v in body.items() if k != "nextLink"}
        self._write(rel + ".json", body)
        return body

    def _write(self, rel: str, body: Any) -> None:
        target = self.arm / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(body, indent=1, ensure_ascii=False), encoding="utf-8")
        with self._lock:
            self.written += 1


def _empty_or_new(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"--out {out}: must be a new or empty folder (a recording is never merged into another)")


def record(source: Source, out: Path, *, management_group: str | None = None, redact: bool = False,
           salt: bytes | None = None) -> tuple[Inventory, Redactor | None]:
    """Collect through ``source`` into ``out``; with ``redact`` only the pseudonymised copy is kept."""
    _empty_or_new(out)
    with tempfile.TemporaryDirectory(prefix="plmon-record-") as scratch:
        raw_dir = Path(scratch) if redact else out
        raw_dir.mkdir(parents=True, exist_ok=True)
        recorder = RecordingReader(source.reader, raw_dir)
        subscriptions = source.subscriptions
        if management_group:
            subscriptions = sorted({*(subscriptions or []), *group_subscriptions(recorder, management_group)},
                                   key=str.lower)
        inv = collect(recorder, subscriptions=subscriptions, manifest=source.manifest, workers=source.workers)
        manifest = {"tenant_id": inv.manifest.get("tenant_id"),
                    "recorded_at": datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
                    "cloud": source.manifest.get("cloud", "AzureCloud")}
        (raw_dir / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        redactor = redact_folder(raw_dir, out, salt=salt) if redact else None
    log.info("recorded", folder=str(out), files=recorder.written, errors=recorder.errors, redacted=redact)
    return inv, redactor
