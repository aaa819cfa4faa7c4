"""``plmon scan --from DIR --format json`` as the CLI runs it, with its phases stamped from inside the process.

bench/run.py runs this once beside the timed scans to say where a scan's time goes. The breakdown used to add
medians of other processes (the scan's, ``plmon --help``'s, an in-process load with its own settings) and could
come out negative; here every figure is one process's: the same command, reader, workers, id-interning scope and
GC pauses as the timed scans, only ``collect``, ``build_snapshot`` and ``evaluate_scan`` wrapped to stamp their start
and end (wall on the monotonic clock the parent shares, and this process's CPU). The scan leaves by ``os._exit``,
so each stamp is appended to ``STAMPS`` as it is taken; bench/run.py adds the process's total from ``wait4``.

Usage: ``python bench/scan_phases.py DIR STAMPS`` (standard output: the scan's JSON document).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any


def _stamper(path: str) -> Callable[[str], None]:
    out = open(path, "a", encoding="utf-8")  # noqa: SIM115 - stays open until the scan's os._exit

    def stamp(name: str) -> None:
        out.write(json.dumps({"name": name, "wall": time.perf_counter(), "cpu": time.process_time()}) + "\n")
        out.flush()
    return stamp


def _timed(stamp: Callable[[str], None], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        stamp(f"{name}:start")
        try:
            return fn(*args, **kwargs)
        finally:
            stamp(f"{name}:end")
    return wrapped


def main(folder: str, stamps: str) -> None:
    stamp = _stamper(stamps)
    from plmon.monitor import scan
    from plmon.monitor.cli.root import main as plmon_main

    # the names run_scan calls them by, and the phase each stamps (bench/run.py reads collect/build_snapshot/evaluate)
    for name, phase in (("collect", "collect"), ("build_snapshot", "build_snapshot"), ("evaluate_scan", "evaluate")):
        setattr(scan, name, _timed(stamp, phase, getattr(scan, name)))
    stamp("main")
    sys.argv = ["plmon", "scan", "--from", folder, "--format", "json"]
    plmon_main()  # as the console script calls it (no argv): the scan then leaves as its own command does


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
