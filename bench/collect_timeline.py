"""Where a live collection's wall time goes against its floor (issue 14, live lane; not part of make test or bench).

One collection of the 100-subscription / 10k-endpoint synth tenant through ``plmon replay-server --latency-ms 50
--arm-limits`` (its own process), as bench/collect_concurrency.py runs it, with every HTTP exchange and every plan
job timed in this process: the busy workers over the run (jobs running, HTTP requests in flight), per second; the
time each HTTP exchange took beyond the server's latency; and the workers' idle time, split into the start, the
gaps between phases and the tail. Prints one JSON document.

    .venv/bin/python bench/collect_timeline.py --keep DIR [--workers 32] [--gc young|default]

What it found (issue 14, fifth round; 32 workers, 19,162 requests, floor 29.9 s; load average 5-12 from four other
lanes): the workers are busy almost throughout. Jobs in flight averaged 31.9 of 32 in every second but the first
two (tenant reads and the first TLS connections: 20-28), the one where the resources phase starts (23-29: its jobs
are built on one thread) and the last. Neither the schedule nor the per-subscription budget is the wait: no budget
wait, no 429, and every subscription's long chains (its endpoint and NIC lists, 0.3-1.4 s of pages) end in the first
seconds. The ~10 s above the floor were the HTTP exchanges themselves: 247-343 s of exchange time beyond the 50 ms
latency over 19,162 exchanges (median 5-9 ms, p90 20-33 ms, p99 140-240 ms), of which
- stop-the-world pauses: the client's cyclic GC made 6 full passes over the growing inventory (1.3-1.8 s, up to
  0.44 s each) and the replay server's over its file cache did the same on its side, each holding all 32 answers
  (seconds in which every exchange was slow): now young passes only (plan.young_gc, in run_scan and the server);
- TLS handshakes: a connection pool per SDK client made 130 connections in three waves (network, private DNS and
  private links, resources), each wave up to 1.2 s per connection with 32 handshakes at once: now one pool, 32;
- the rest, median 5-6 ms per exchange: both processes' CPU (client ~1.0 ms, server ~0.5 ms per request) queued on
  two cores shared with the other lanes' load, and 32 threads trading one interpreter lock.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from collect_concurrency import LATENCY_MS, replay_server  # bench/ is the script's own folder on sys.path


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _rss_mb() -> float:
    return round(int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def collect_timed(base_url: str, ca_bundle: str, workers: int | None, gc_mode: str = "young") -> dict[str, Any]:
    os.environ.setdefault("PLMON_ARM_TOKEN", "bench-token")
    from plmon.monitor.collect import plan
    from plmon.monitor.collect.azure.live import LiveReader
    from plmon.monitor.wiring import open_source

    sends: list[tuple[float, float, str]] = []      # (start, end, thread) per HTTP exchange
    jobs: list[tuple[float, float, str]] = []       # (start, end, kind) per reader.get (a plan read, pages merged)
    waits: list[tuple[float, float]] = []           # (start, end) per worker's wait for its next job
    original_send = LiveReader._send
    original_get = plan._Jobs.get

    def timed_send(self: Any, client: Any, request: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original_send(self, client, request)
        finally:
            sends.append((t0, time.perf_counter(), threading.current_thread().name))

    def timed_jobs_get(self: Any) -> Any:
        t0 = time.perf_counter()
        got = original_get(self)
        waits.append((t0, time.perf_counter()))
        return got

    gc_passes: list[tuple[float, float, int]] = []  # (start, end, generation) per cyclic GC pass
    gc_started: list[float] = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_passes.append((gc_started[0], time.perf_counter(), int(info["generation"])))
    gc.callbacks.append(on_gc)
    from plmon.monitor.collect.azure import transport
    connects: list[tuple[float, float]] = []
    original_connect = transport._HTTPSConnection.connect

    def timed_connect(self: Any) -> None:
        c0 = time.perf_counter()
        try:
            original_connect(self)
        finally:
            connects.append((c0, time.perf_counter()))
    transport._HTTPSConnection.connect = timed_connect  # type: ignore[method-assign]
    LiveReader._send = timed_send  # type: ignore[method-assign]
    plan._Jobs.get = timed_jobs_get  # type: ignore[method-assign]
    phases: list[tuple[str, float]] = []
    with open_source(arm_endpoint=base_url, ca_bundle=Path(ca_bundle), workers=workers) as source:
        reader = source.reader
        source.live.decode_typed()  # as plmon scan reads live ARM (cli.root.do_scan)
        original_reader_get = reader.get

        def timed_get(path: str, *, kind: str) -> Any:
            t0 = time.perf_counter()
            try:
                return original_reader_get(path, kind=kind)
            finally:
                jobs.append((t0, time.perf_counter(), kind))
        reader.get = timed_get  # type: ignore[method-assign]
        usage0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        with plan.young_gc() if gc_mode == "young" else contextlib.nullcontext():
            inv = plan.collect(reader, manifest=source.manifest, workers=workers,
                               on_progress=lambda name: phases.append((name, time.perf_counter() - t0)))
        wall = time.perf_counter() - t0
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
        gc.callbacks.remove(on_gc)
        rss_before_full = _rss_mb()
        garbage = gc.collect()
        http = source.live.stats.as_dict()
    used = inv.stats.workers
    requests = len(sends)
    floor = requests * LATENCY_MS / 1000 / used
    # Busy per second: HTTP exchanges in flight (seconds of exchange per second), jobs running.
    seconds = int(wall) + 1
    inflight = [0.0] * seconds
    for start, end, _ in sends:
        a, b = start - t0, end - t0
        s = int(a)
        while a < b and s < seconds:
            cut = min(b, s + 1)
            inflight[s] += cut - a
            a, s = cut, s + 1
    over = [(end - start) * 1000 - LATENCY_MS for start, end, _ in sends]
    idle_wait = sum(end - start for start, end in waits)
    by_kind: dict[str, list[float]] = {}
    for start, end, kind in jobs:
        by_kind.setdefault(kind, []).append(end - start)
    # Slots x time lost: a slot is an HTTP exchange in flight; 'lost' = workers x wall - exchange time.
    exchange_s = sum(end - start for start, end, _ in sends)
    return {
        "workers": used, "wall_s": round(wall, 2), "requests": requests, "floor_s": round(floor, 2),
        "wall_over_floor": round(wall / floor, 3), "throttled_429": http.get("throttled"),
        "budget_wait_s": http.get("budget_wait_s"),
        "client_cpu_ms_per_request": round(((usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime))
                                           / requests * 1000, 3),
        "phases_end_s": [(n, round(t, 2)) for n, t in phases],
        "worker_seconds": round(used * wall, 1), "exchange_seconds": round(exchange_s, 1),
        "latency_seconds": round(requests * LATENCY_MS / 1000, 1),
        "exchange_beyond_latency_ms": {"median": round(statistics.median(over), 2), "p90": round(_pct(over, .9), 2),
                                       "p99": round(_pct(over, .99), 2), "sum_s": round(sum(over) / 1000, 1)},
        "worker_wait_for_job_s": round(idle_wait, 1),
        "inflight_per_second": [round(x, 1) for x in inflight],
        "jobs_by_kind": {k: {"n": len(v), "median_ms": round(statistics.median(v) * 1000, 1),
                             "max_ms": round(max(v) * 1000, 1), "sum_s": round(sum(v), 1)} for k, v in by_kind.items()},
        "gc_passes": {str(g): {"n": sum(1 for p in gc_passes if p[2] == g),
                               "sum_s": round(sum(b - a for a, b, q in gc_passes if q == g), 2),
                               "max_ms": round(max((b - a for a, b, q in gc_passes if q == g), default=0) * 1000, 1)}
                      for g in (0, 1, 2)},
        "slow_exchanges_per_second": [sum(1 for a, b, _ in sends if int(a - t0) == s and (b - a) > 0.15)
                                      for s in range(seconds)],
        "garbage_after": garbage, "rss_mb_before_full_gc": rss_before_full, "rss_mb_after": _rss_mb(),
        "gc_mode": gc_mode,
        "connects": {"n": len(connects), "sum_s": round(sum(b - a for a, b in connects), 2),
                     "max_ms": round(max((b - a for a, b in connects), default=0) * 1000, 1),
                     "at_s": sorted(round(a - t0, 1) for a, _ in connects)},
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", type=Path, required=True, help="Reuse (or write) the synthetic tenant here.")
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--gc", choices=("young", "default"), default="young",
                        help="young: the cyclic GC as plmon scan collects (young_gc); default: every pass, as before")
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    folder = args.keep
    if not (folder / "manifest.json").is_file():
        subprocess.run([str(bindir / "plmon"), "synth", "--subscriptions", "100", "--endpoints", "10000",
                        "--out", str(folder)], check=True, stdout=subprocess.DEVNULL)
    proc = replay_server(bindir, folder)
    try:
        info = json.loads(proc.stdout.readline() if proc.stdout else "{}")
        print(json.dumps(collect_timed(info["base_url"], info["ca_bundle"], args.workers, args.gc)))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
