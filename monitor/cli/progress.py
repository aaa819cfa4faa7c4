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
    from rich.progress import Progress, TaskID

__all__ = ["CollectionProgress", "stats_lines"]

_PER_SUB = {kind for kind, _ in SUBSCRIPTION_LISTS}


class CollectionProgress:
    """A rich progress display: every read against the plan's total with an ETA, the subscriptions finished, and a
    bar for each of a few subscriptions under way.

    The total is shown once the plan knows it (:meth:`planned`, when the reads by id are queued): before that a
    total would be a guess that only grows. A subscription's bar goes once its lists are read and at most
    ``max_bars`` are shown at a time (the others wait their turn), since the plan reads every subscription's lists
    at once and hundreds of bars would push everything else off the terminal."""

    def __init__(self, stream: TextIO | None = None, *, max_bars: int | None = None) -> None:
        # rich is imported here, when a terminal shows progress: a scan into a pipe never needs it.
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        # log_path=False: a phase line says what was collected, not which line of plmon printed it.
        self.console: Console = Console(file=stream or sys.stderr, log_path=False)
        self.progress: Progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                           MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                                           console=self.console, transient=True)
        self.max_bars = max_bars or max(3, min(10, self.console.size.height - 8))
        self._lock = threading.Lock()
        self._reads = self.progress.add_task("ARM reads", total=None)
        self._subs_task = self.progress.add_task("subscriptions read", total=None, visible=False)
        self._queued = 0                       # reads the plan has queued so far
        self._lists_next = False               # the next batch planned is the subscriptions' lists
        self._done: dict[str, int] = {}        # lists read per subscription under way
        self._bars: dict[str, TaskID] = {}     # the subscriptions with a bar now

    @staticmethod
    def wanted(stream: TextIO | None = None) -> bool:
        return bool((stream or sys.stderr).isatty())

    def __enter__(self) -> CollectionProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, phase: str) -> None:
        """The plan's ``on_progress``: a phase is done."""
        self.console.log(f"collected: {phase.replace('_', ' ')}")
        if phase == "management_groups":
            self._lists_next = True

    def planned(self, reads: int, complete: bool) -> None:
        """The plan's hook: ``reads`` more are queued; ``complete`` once it knows them all (the total, the ETA)."""
        with self._lock:
            self._queued += reads
            if self._lists_next and reads:
                self._lists_next = False
                self.progress.update(self._subs_task, total=reads // len(_PER_SUB), visible=True)
            if complete:
                self.progress.update(self._reads, total=self._queued)

    def wrap(self, reader: ArmReader) -> ArmReader:
        return _Counting(reader, self)

    def _read(self, path: str, kind: str) -> None:
        parts = path.strip("/").split("/")
        with self._lock:
            self.progress.advance(self._reads)
            if kind not in _PER_SUB or len(parts) < 2:
                return
            sub = parts[1]
            done = self._done[sub] = self._done.get(sub, 0) + 1
            if done >= len(_PER_SUB):
                del self._done[sub]
                self.progress.advance(self._subs_task)
                if sub in self._bars:
                    self.progress.remove_task(self._bars.pop(sub))
                self._show_waiting()
            elif sub in self._bars:
                self.progress.advance(self._bars[sub])
            elif len(self._bars) < self.max_bars:
                self._show(sub)

    def _show(self, sub: str) -> None:
        self._bars[sub] = self.progress.add_task(f"  subscription {sub}", total=len(_PER_SUB),
                                                 completed=self._done[sub])

    def _show_waiting(self) -> None:
        """Free bars go to the waiting subscriptions furthest along (the next to finish)."""
        waiting = sorted((s for s in self._done if s not in self._bars), key=lambda s: -self._done[s])
        for sub in waiting[:self.max_bars - len(self._bars)]:
            self._show(sub)


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
