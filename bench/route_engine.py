"""Time the route checks on a recorded tenant: the grouped engine against the old one (issue 14 item 1).

    python bench/route_engine.py DIR [--runs 3] [--old] [--gc-freeze]

In one process: the floor (reading and ``json``-parsing every file of DIR), the snapshot build, then the six
route checks evaluated ``--runs`` times on the new engine (and with ``--old`` on the frozen copy of the old
engine in tests/kit, the differential test's oracle), each run from a cold path cache. Prints CPU seconds as
median and spread (min-max), and how many paths, groups and decisions the new engine made.

Measured 2026-12-01 on the shared 2-core machine (load average about 8), CPU seconds, median (min-max) of 3:

| tenant (plmon synth)             | JSON floor        | old, gc.freeze()  | new               | new, gc.freeze() |
|----------------------------------|-------------------|-------------------|-------------------|------------------|
| 10 subs, 1,000 PEs (6,224 paths) | 0.09 (0.06-0.10)  | 0.37 (0.32-0.41)  | 0.07 (0.06-0.21)  | 0.04 (0.04-0.05) |
| 100 subs, 10,000 PEs (62,366)    | 1.29 (1.22-1.40)  | 5.26 (4.63-5.52)  | 1.07 (0.98-2.27)  | 0.79 (0.79-0.85) |

30 and 201 groups decided for 6,224 and 62,366 paths. What remains is per path (one PathResult each, read by
five checks) and the cyclic GC rescanning the snapshot, which issue 14 item 2 pauses.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "kit"))

from plmon.checks import paths, route
from plmon.monitor.collect.builder import build_snapshot
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.model.snapshot import Snapshot

CHECKS = ("udr_bypassed", "nva_missing_snat", "nva_snat_unknown", "nva_unresolved", "nva_ip_forwarding_off",
          "endpoint_ip_unknown")


def _cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def _figure(samples: list[float]) -> str:
    return (f"median {statistics.median(samples):.3f} s "
            f"(min {min(samples):.3f}, max {max(samples):.3f}, n={len(samples)})")


def _route_checks(module: Any, cache: list[Any], snap: Snapshot) -> int:
    cache.clear()
    return sum(len(list(getattr(module, name)(snap, {}))) for name in CHECKS)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--old", action="store_true", help="also time the old engine (tests/kit/oldpaths.py)")
    ap.add_argument("--gc-freeze", action="store_true",
                    help="gc.freeze() after the build: evaluation stops rescanning the snapshot (issue 14 item 2)")
    args = ap.parse_args()
    files = sorted(args.folder.rglob("*.json"))
    floor = [_cpu(lambda: [json.loads(f.read_bytes()) for f in files])[0] for _ in range(args.runs)]
    print(f"floor (read + json-parse {len(files)} files): {_figure(floor)}")
    build, snap = _cpu(lambda: build_snapshot(collect(RecordedTenant(args.folder), workers=1)))
    print(f"collect + build (once): {build:.3f} s, {snap.resources_evaluated()} resources")
    if args.gc_freeze:
        gc.collect()
        gc.freeze()
    new = []
    for _ in range(args.runs):
        seconds, issues = _cpu(lambda: _route_checks(route, paths._CACHE, snap))
        new.append(seconds)
    print(f"route checks, new engine: {_figure(new)}; {issues} issues, {len(paths.endpoint_paths(snap))} paths")
    engine = paths._Engine(snap)
    for pe in sorted(snap.private_endpoints.values(), key=lambda e: e.key):
        ips = [ip for ip in (paths.parse_ip(x) for x in pe.ip_addresses) if ip is not None]
        for _ in engine.paths_of(pe, ips) if ips else ():
            pass
    print(f"  groups decided: {len(engine._decisions)}; (client network, table, region) splits: {len(engine._splits)}")
    if args.old:
        import oldpaths
        import oldroute
        old = []
        for _ in range(args.runs):
            seconds, old_issues = _cpu(lambda: _route_checks(oldroute, oldpaths._CACHE, snap))
            old.append(seconds)
        print(f"route checks, old engine: {_figure(old)}; {old_issues} issues")


if __name__ == "__main__":
    main()
