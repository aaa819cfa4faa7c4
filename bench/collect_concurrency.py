"""Measure collection concurrency (issue 14 item 4; not part of make test or make bench).

``plmon synth --subscriptions 100 --endpoints 10000``, served by ``plmon replay-server --latency-ms 50
--arm-limits`` (ARM's per-subscription read buckets, 250 refilled at 25/s) in its own process, a fresh one per
run; live collections through the real SDK clients at the given worker counts (``default``: what collect()
decides, 64 for 100 subscriptions). Prints, per run, wall time, HTTP requests, 429s, the floor requests x
latency / workers, and the CPU the client (this process) and the replay server spent over the collection.

    .venv/bin/python bench/collect_concurrency.py [--keep DIR] [--workers 32,default] [--runs 2]

Figures (2-core machine shared with four other engineers' tests and profiles, load average 11-19 during the
runs; 19,162 requests, no 429 in any run, 28 recorded gaps as in ``scan --from``):

- main before this work (15:34): 8 workers 148.6 s (floor 119.8 s, 1.24x); 64 workers 65.6 s (floor 15.0 s,
  4.4x), the client CPU-bound at ~3 ms CPU per request (61 s user). Re-measured at 16:18 under the load below:
  64 workers 65.1 s, client 2.82 ms and server 0.88 ms CPU per request.
- After (branch conc2, 16:40-16:56, 3 runs each): 32 workers 54.3 / 54.6 / 56.8 s (floor 29.9 s, 1.81-1.90x),
  client 1.55-1.95 ms, server 0.61-0.78 ms CPU per request; 64 workers (the default) 45.1 / 48.7 / 51.3 s
  (floor 15.0 s, 3.0-3.4x), client 1.91-2.10 ms, server 0.69-0.78 ms.

What the client spent its CPU on, and what changed (py-spy --gil at 64 workers): requests re-read the proxy
variables (two walks of os.environ), the netrc files and the CA bundle variables on every read, and merged
empty cookies/params/auth/hooks through runtime Protocol checks (~20% together: now once per origin, and
azure-core's plain GETs are prepared directly); every JSON answer was parsed twice, by the SDK's
ContentDecodePolicy and again by the reader (~9%: now once); RequestIdPolicy's uuid1 (~30 us); the request
counters' lock convoyed the workers. What remains per read: urllib3/http.client (~30%: header parsing through
the email package, TLS), requests' URL preparation and adapter (~15%), the azure-core policies' per-request
work (~10%), the collection plan's own work (parse_id in budget_key and target selection, futures: ~10%).
Against the target (wall at most 1.3x the floor with 32+ workers): the client and the server together need
~2.5 ms CPU per request, 48 s for this tenant, so on 2 cores 64 workers cannot reach 1.3x (19.5 s) here; 32
workers (1.3x = 38.9 s) fit the CPU (client 30-37 s) on an otherwise idle machine but not under this load.

Issue 14, third round (branch live, 19:41-19:56): main and live interleaved run by run (each tree's own venv, a
fresh server per run), 3 runs each, load average 12-24 throughout (four other engineers' suites); median (min-max):

- 64 workers (default): main 57.2 s (42.0-68.0; 3.8x the 15.0 s floor), client 2.40 ms (1.71-2.78), server 0.84 ms
  CPU per request; live 51.8 s (45.4-52.2; 3.5x), client 1.82 ms (1.74-1.84), server 0.75 ms.
- 32 workers: main 55.5 s (55.2-61.2; 1.85x the 29.9 s floor), client 1.94 ms (1.77-2.31), server 0.73 ms; live
  49.7 s (45.8-51.1; 1.66x), client 1.36 ms (1.29-1.41), server 0.66 ms.
- An earlier interleaved pair of rounds (before the charset and server orjson steps, load 11-13): 64 workers main
  52.1 / 64.9 s against live 33.2 / 44.5 s (2.2x / 3.0x), client 2.10 / 2.79 against 1.26 / 1.71 ms per request.
- After the orjson decode policy (20:07-20:11, one more interleaved round, load 9-14): 64 workers main 61.7 s
  (4.1x), client 2.48 ms against live 49.8 s (3.3x), client 1.75 ms, server 0.86 -> 0.76 ms; 32 workers main
  54.1 s (1.81x), client 2.14 ms against live 45.8 s (1.53x), client 1.31 ms, server 0.80 -> 0.66 ms.
- No 429 in any run; 28 gaps in every run, as in ``scan --from``.

What changed: azure-core's RequestsTransport gave way to plmon's transport on urllib3's pools
(monitor/collect/azure/transport.py: requests' URL preparation, adapter and hooks gone; answer headers parsed
without the email package; idle connections in a lock-free deque instead of a LifoQueue whose condition convoyed
at 64 workers; the charset found without an email Message per answer); the reader's requests skip azure-core's
``__getattr__`` fallback; the replay server sends a whole recorded answer as its file's text, writes each answer
in one TLS record and reads and writes JSON with orjson where that is exact. Same-run A/B on t10k (16 workers, no
latency): 2.06 -> 1.46 ms of client CPU per request for the transport alone; server 1.2 -> 0.66 ms.
What dominates now (py-spy --gil, 64 workers): azure-core's pipeline without the transport ~25% of the client's
interpreter time (ContentDecodePolicy's json.loads and text decode ~12%), urllib3/http.client ~20%, the plan's
own work (builder parsing, parse_id, ThreadPoolExecutor.submit and futures in the main thread ~14%) ~25%
(measured before the orjson decode policy took most of ContentDecodePolicy's share); and the
CPU per request grows from 32 to 64 workers (1.36 -> 1.82 ms): 64 threads handing one interpreter lock back and
forth on every socket operation. On this machine at load 12-24 the wall time follows the CPU the two processes
get, not the floor.

Issue 14, fourth round (branch live, 22:35-22:43): main (27f28c1) and live interleaved, this script, each tree's own
venv and server, 2 runs each, load average 10.7-15.7 throughout (four other lanes' suites); each figure median
(min-max):

- 32 workers: main 46.9 s (46.7-47.0; 1.56-1.57x the 29.9 s floor), client 1.30 ms (1.28-1.31), server 0.65 ms
  (0.64-0.66) CPU per request; live 45.5 s (45.4-45.6; 1.52x), client 1.15 ms (1.13-1.16), server 0.59 ms.
- 64 workers (default): main 41.7 s (36.4-47.1; 2.43-3.14x the 15.0 s floor), client 1.52 ms (1.32-1.71), server
  0.71 ms (0.65-0.76); live 34.7 s (33.8-35.7; 2.26-2.38x), client 1.20 ms (1.16-1.24), server 0.58 ms (0.56-0.59).
- Client and server together: 1.95 -> 1.74 ms per request at 32 workers, 2.2 -> 1.8 ms at 64. No 429 and the 28
  gaps of ``scan --from`` in every run. One earlier live run at load 4.7 (21:44, before the server steps): 32 workers
  38.5 s, 1.28x.

What changed: the plan's workers take jobs from one shared queue instead of a future per job (the submitting
thread's CPU per collection 1.1-1.8 s -> 0.13-0.16 s); an endpoint or zone list's child lists (the zone groups are
half of the requests) are queued as soon as that list is parsed, beside the remaining lists, instead of after all
of them, so their latency overlaps the CPU-bound list parsing (jobs served round-robin across budget keys in
spread()'s order); the reader writes a plain path's URL directly (not format_url and the query helper), merges
requests' default headers on a plain dict and finds the budget scope with one match; four pipeline policies that
cannot act for plmon (extra headers, proxies, raw hooks, network tracing) are taken out of its SDK clients; the
replay server reads request headers with the live reader's header reader (plmon.monitor.http_headers) instead of
the email package (cProfile: its handler's CPU -30%).
Measured and not adopted: the SDK's async clients (azure.mgmt.network.aio) on azure-core's AioHttpTransport, one
event loop, 64 concurrent reads at 50 ms: 0.78-0.92 ms of client CPU per request against 0.78-0.98 ms for the
threaded reader in the same minutes (and 0.81-0.84 against 1.27-1.40 in an earlier, busier pair): not enough to pay
for a new runtime dependency and a second reader.
What dominates now (cProfile, one thread, zone-group reads): urllib3 and http.client ~45% of the client's CPU per read
(urlopen, header validation, HTTPHeaderDict, response objects), azure-core's pipeline runners and its response
object ~25% (two calls per policy, a backcompat __setattr__ per attribute), then the plan's parsing. Against the
target this machine's load decides: with 10-16 runnable processes on 2 cores, client and server get what the
scheduler leaves them, and the wall time follows that rather than the floor.

Issue 14, fifth round (branch live, 00:25-00:54 UTC): main (aabdab5) and live interleaved run by run, this script,
each tree's own venv and a fresh server per run, load average 9-19 throughout (four other lanes); wall (ratio to the
floor), client and server CPU per request, median (min-max):

- 32 workers, the final branch (3 runs each): main 45.6 s (40.0-47.9; 1.33-1.60x the 29.9 s floor), client 1.13 ms,
  server 0.59 ms; live 39.5 s (39.0-41.1; 1.30-1.37x), client 1.03 ms (1.02-1.05), server 0.42 ms (0.41-0.42). With
  the round before the barrier step (3 more each, same load): main 46.8 s (40.0-51.3) against live 39.7 s
  (39.0-44.6) over six runs each. bench/collect_timeline.py on the final branch at load 14-18: 36.6 s, 1.22x.
- 64 workers (default; 2 runs each, the last pair at load 16-19): main 38.1 / 41.4 s (2.55x / 2.77x the 15.0 s
  floor), client 1.36-1.50 ms, server 0.64-0.69 ms; live 26.3 / 32.7 s (1.75x / 2.19x), client 1.09-1.25 ms, server
  0.42-0.62 ms.
- No 429 in any run; the 28 gaps of ``scan --from`` in every run; 19,162 requests in every run.

Where the 32-worker run lost its ~10 s (bench/collect_timeline.py, which times every exchange and job): not the
schedule and not the budget (31.9 of 32 jobs in flight in almost every second; no budget wait, no 429), but the
exchanges: 247-343 s of exchange time beyond the 50 ms latency, from stop-the-world GC passes in both processes
(each holding all 32 answers up to 0.44 s), 130 TLS handshakes in three waves (a pool per SDK client), and CPU
queueing. What changed: the cyclic GC's young passes only during a live collection (plan.young_gc, in run_scan and
this script) and in the replay server; one connection pool shared by every SDK client (32 handshakes); the reads by
id queued as soon as the last list is parsed (no barrier before the resources phase); the replay server parses
its files before the first request (``--preload``), formats its Date header once a second and no longer renders a
debug line per answer. After: 184 s of exchange time beyond the latency (median 5 ms, p90 18 ms, p99 90 ms).
What dominates now: CPU per exchange on two shared cores (client ~1.0 ms: azure-core's pipeline a third, urllib3
and http.client a third, the builder's parsing a fifth; server ~0.4 ms) and, at the start, 32 TLS handshakes at once
(up to 1.3 s each under load).

Issue 14, eighth round (branch live2, 07:52-08:24 UTC; 32 workers, 19,162 requests, floor 29.9 s, no 429 and the 28
gaps of ``scan --from`` in every run; load average 3.4-9.9 throughout from three other lanes):

- Before (the branch's base, 3 runs, load 6.8-7.5): 38.7 s (38.0-43.2; 1.29x), client 1.03 ms (0.98-1.06), server
  0.40 ms (0.39-0.41) CPU per request.
- Typed decoding on against off, same code, interleaved (2 runs each, load 3.4-4.9): client 0.90 / 0.97 against
  1.02 / 1.05 ms per request, wall 34.1 / 35.3 against 34.5 / 35.7 s (1.14-1.18x against 1.15-1.19x).
- Base tree against the branch, interleaved (``git archive main``, the base's own bench script and replay server, 3
  runs each, load 6.2-9.9): base 37.5 s (37.0-38.4; 1.25x), client 1.09 ms (0.98-1.15), server 0.41 ms; branch
  36.7 s (36.7-38.5; 1.22x), client 1.08 ms (1.03-1.11), server 0.39 ms (0.37-0.40). At this load the spread of one
  tree's runs is larger than the difference between the trees.
- The bench's own rows (``bench/run.py --collect-only``, 08:27-08:31, the branch): 32 workers 37.1 s (36.8-37.2;
  1.24x), client 1.07 ms (0.95-1.09), server 0.38 ms (0.36-0.40), load 7.2-8.0; 64 workers (default, 1 run) 25.0 s
  (1.68x the 14.9 s floor), client 1.06 ms, server 0.38 ms, load 6.5.
- Same answer: a live ``plmon scan`` of the 10-subscription synth tenant through the replay server gives ``scan
  --from``'s JSON but for ``scanned_at`` and the order of ``coverage.gaps`` (reads by id fail in the order they
  finish; the base tree's live scan orders them differently from ``scan --from`` too); with the gaps sorted, equal.

What changed: a one-shot scan's live reader decodes the bulk lists, the zone groups and the targets read by id
typed, straight from each answer's bytes (``LiveReader.decode_typed``, the typed decoder a recorded folder uses),
instead of parsing them into dicts that the builder then walks; an answer the decoder refuses (an escape, a long
number, a next page to follow, anything unusual) is decoded the generic way. Request ids come from ``random``
(``http_headers.request_id``) instead of ``uuid4``; the replay server splits a URL once and skips its per-request
debug line below debug level.
What dominates now (py-spy --gil, 32 workers): the per-request machinery, not the payloads. Zone groups and targets
(17.8k of the 19.2k requests) are a few hundred bytes each, so what typed decoding saved was small; urllib3 and
http.client are ~30% of the client's interpreter time, azure-core's pipeline without the transport ~15%, the plan
and the builder ~15%, SSL reads and writes (outside the interpreter lock) most of the rest. The time-line
(bench/collect_timeline.py) shows 31.9 of 32 workers busy in every second but the first two (15 and 26: the tenant's
reads and 32 TLS handshakes) and the last; the ~6.5 s above the floor are exchange time beyond the latency (median
6 ms, p90 21 ms, p99 84 ms), which is CPU queueing of both processes on two cores shared with the other lanes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LATENCY_MS = 50
PAGE_SIZE = 100


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def collect_once(base_url: str, ca_bundle: str, workers: int | None, server_pid: int) -> dict[str, Any]:
    os.environ.setdefault("PLMON_ARM_TOKEN", "bench-token")
    from plmon.monitor.collect.plan import collect, young_gc
    from plmon.monitor.wiring import open_source

    with open_source(arm_endpoint=base_url, ca_bundle=Path(ca_bundle), workers=workers) as source:
        server0, usage0, t0 = _cpu_seconds(server_pid), resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        source.live.decode_typed()  # as plmon scan reads live ARM (cli.root.do_scan)
        with young_gc():  # as run_scan collects from a live tenant
            inv = collect(source.reader, manifest=source.manifest, workers=workers)
        wall = time.perf_counter() - t0
        usage1, server1 = resource.getrusage(resource.RUSAGE_SELF), _cpu_seconds(server_pid)
        http = source.live.stats.as_dict()
    used = inv.stats.workers
    requests = int(http["attempts"])
    floor = requests * LATENCY_MS / 1000 / used
    client_cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    server_cpu = server1 - server0 if server0 is not None and server1 is not None else None
    return {"workers": used, "wall_s": round(wall, 2), "requests": requests, "plan_reads": inv.stats.requests,
            "throttled_429": http.get("throttled"), "budget_wait_s": http.get("budget_wait_s"),
            "gaps": len(inv.gaps), "floor_s": round(floor, 2), "wall_over_floor": round(wall / floor, 2),
            "client_cpu_s": round(client_cpu, 2), "client_cpu_ms_per_request": round(client_cpu / requests * 1000, 2),
            "server_cpu_s": None if server_cpu is None else round(server_cpu, 2),
            "server_cpu_ms_per_request": None if server_cpu is None else round(server_cpu / requests * 1000, 2),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "phases": {k: round(v, 2) for k, v in inv.stats.phases.items()}}


def replay_server(bindir: Path, folder: Path) -> subprocess.Popen[str]:
    """The replay server these scripts measure against: ARM's read limits on, every file parsed before the first
    request (as ARM has no cold cache); its first stdout line is its address and CA bundle as JSON."""
    return subprocess.Popen(
        [str(bindir / "plmon"), "replay-server", "--from", str(folder), "--latency-ms", str(LATENCY_MS),
         "--page-size", str(PAGE_SIZE), "--arm-limits", "--preload"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keep", type=Path, help="Reuse (or write) the synthetic tenant here.")
    parser.add_argument("--workers", default="8,default",
                        help="Comma-separated worker counts to measure; 'default' lets collect() decide.")
    parser.add_argument("--runs", type=int, default=1, help="Runs of each worker count (interleaved).")
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    folder = args.keep or Path(tempfile.mkdtemp(prefix="plmon-conc-")) / "t"
    if not (folder / "manifest.json").is_file():
        subprocess.run([str(bindir / "plmon"), "synth", "--subscriptions", "100", "--endpoints", "10000",
                        "--out", str(folder)], check=True, stdout=subprocess.DEVNULL)
    counts = [None if w.strip() == "default" else int(w) for w in args.workers.split(",")]
    results: dict[str, list[dict[str, Any]]] = {}
    for run in range(args.runs):
        for workers in counts:
            label = "default" if workers is None else f"{workers} workers"
            # A fresh server per run: its buckets start full, as a tenant not read for a while.
            proc = replay_server(bindir, folder)
            try:
                info = json.loads(proc.stdout.readline() if proc.stdout else "{}")
                result = collect_once(info["base_url"], info["ca_bundle"], workers, proc.pid)
                results.setdefault(label, []).append(result)
                print(label, f"run {run + 1}", json.dumps(result), file=sys.stderr, flush=True)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
