"""What a collection shows a person on stderr: live progress on a terminal, and ``--stats``.

stdout stays the command's output (a JSON document, a table), so progress and statistics never mix
into a pipe. The progress display wraps the reader, so it works for any source.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from plmon.monitor.collect.plan import SUBSCRIPTION_LISTS, ArmReader, CollectionStats

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = ["CollectionProgress", "stats_lines"]

_PER_SUB = {kind for kind, _ in SUBSCRIPTION_LISTS}


class CollectionProgress:
    """A rich progress display: one bar per subscription (its lists) and a counter of other reads."""

    def __init__(self, stream: TextIO | None = None) -> None:
        # rich is imported here, when a terminal shows progress: a scan into a pipe never needs it.
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console: Console = Console(file=stream or sys.stderr)
        self.progress: Progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=self.console, transient=True)
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._other = self.progress.add_task("tenant and resources: reads", total=None)

    @staticmethod
    def wanted(stream: TextIO | None = None) -> bool:
        return bool((stream or sys.stderr).isatty())

    def __enter__(self) -> CollectionProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def phase_done(self, name: str) -> None:
        self.progress.console.log(f"collected: {name.replace('_', ' ')}")

    def wrap(self, reader: ArmReader) -> ArmReader:
        return _Counting(reader, self)

    def _read(self, path: str, kind: str) -> None:
        parts = path.strip("/").split("/")
        if kind in _PER_SUB and len(parts) > 1:
            sub = parts[1]
            with self._lock:
                if sub not in self._tasks:
                    self._tasks[sub] = self.progress.add_task(f"subscription {sub}", total=len(_PER_SUB))
            self.progress.advance(self._tasks[sub])
        else:
            self.progress.advance(self._other)


class _Counting:
    def __init__(self, inner: ArmReader, display: CollectionProgress) -> None:
        self.inner = inner
        self.display = display

    def get(self, path: str, *, kind: str) -> Any:
        try:
            return self.inner.get(path, kind=kind)
        finally:
            self.display._read(path, kind)


def stats_lines(stats: CollectionStats, live: dict[str, Any] | None) -> list[str]:
    """``--stats``: plan reads, HTTP requests, retries, throttles and time per phase."""
    lines = [f"plan reads: {stats.requests} ({stats.failures} failed)"]
    if live is not None:
        lines.append(f"ARM requests: {live['attempts']} (retries {live['retries']}, throttled {live['throttled']}, "
                     f"server errors {live['server_errors']}, read-budget wait {live['budget_wait_s']:.2f}s)")
        lines.append("ARM answers by status: " + ", ".join(f"{k}: {v}" for k, v in live["by_status"].items()))
    total = sum(stats.phases.values())
    lines.append("time per phase: " + ", ".join(f"{k} {v:.2f}s" for k, v in stats.phases.items())
                 + f" (total {total:.2f}s)")
    return lines
