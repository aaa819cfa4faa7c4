"""Scale-out on Azurite (issue 15 item 5): K ``plmon serve`` replicas on one Table store against a replay of ARM.

Every measured part is a process of its own, as deployed: Azurite (blob, queue and table, in memory), ``plmon
replay-server`` at 50 ms a request with ARM's read limits, and ``plmon serve`` x K on a fresh table prefix per K
(so each K's first collection is cold and complete), then one cold replica more. Alerts go to a webhook receiver in
this process (bench/serve.py's). A change in Azure is a recorded file rewritten on disk (the replay server parses a
changed file again), then its Event Grid write event is posted to a replica.

Each replica is capped at 4 ARM reads in flight (``scale.shards_in_flight: 1``, ``shard_workers: 4``, and
``--workers 4`` for what one process still collects alone), so one replica is latency-bound as a small Function
instance is: uncapped, one replica on 2 shared cores is CPU-bound and K replicas could show no gain on those cores.

How each key of the last stdout line is measured (design15 2.5):

- ``collection_s`` (per K): the first collection's ``published_at - started_at`` on the holder's clock, from
  ``/readyz``'s ``collection`` when the replicas have it, else from its row in the collection book (the same two
  stamps, written by the holder); the holder's ``plmon_collection_duration_seconds`` is kept beside it.
- ``arm_requests`` (per K): the replay server's ``/.plmon/stats`` request count from the replicas' start to the
  publish (pages, retries and 429s included; the 429s go to work/scaleout.json).
- ``cold_start_ready_s``, ``cold_start_arm_requests``: after the largest K's first publish, in a quiet window (every
  collection published, the next tick at least 20 s away, no event posted), from starting replica K+1 to its first
  ``/readyz`` 200, and the replay server's request count over that time. Every K's first collection runs on an
  hour's tick, so the window exists however long a collection takes on a loaded machine.
- ``collections_per_tick``: the largest K's replicas then restart on the same store with ``--tick`` (45 s quick,
  60 s); from the first tick they collect in to the latest published (at least 3 ticks, the kill run's inside), full
  collections started summed over the replicas (``plmon_collections_started_total``, or ``plmon_collections_total``
  before the fan-out; the killed replica's last scrape included) over the ticks; the book's rows per tick beside it.
- ``first_event_alert_s``: a private storage account set to public access on disk, its write event posted to the
  cold replica, until the receiver has the ``opened`` alert (then put back and resolved before the kill run).
- ``alerts_sent``, ``alerts_delivered``, ``duplicates``, ``lost``: the kill run. At a tick, once the holder is in
  stage 1 (and has shards in progress, where the fan-out says so), 10 resources (the bench/serve.py mutation kinds,
  and more endpoints) are made bad and their events posted round-robin to every replica; the holder is SIGKILLed;
  each resolve is posted to a survivor once its opened alert arrived. Sent: outbox rows delivered since the run
  began (the killed replica's included, read from the store); delivered: distinct alert ids at the receiver
  (digests expanded); duplicates: receptions - distinct; lost: expected transitions with no alert + outbox rows
  still pending or failed at the deadline.

Every wait has a deadline; a phase that fails prints ``error`` on stderr and leaves its figures null. All child
processes are killed on exit, Ctrl-C included. Run alone (``--quick``: K in {1, 3}; else {1, 3, 5}) or from
``make bench`` (bench/run.py's scale-out phase); it installs Azurite and the storage SDKs when they are missing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

KEYS = ("collection_s", "arm_requests", "collections_per_tick", "cold_start_ready_s", "cold_start_arm_requests",
        "first_event_alert_s", "alerts_sent", "alerts_delivered", "duplicates", "lost")
AZURITE = ROOT / ".tools" / "azurite" / "node_modules" / ".bin" / "azurite"
PLMON = Path(sys.executable).parent / "plmon"
# The storage SDKs with pyproject's ranges: product dependencies (make demo installs them), installed here if absent.
SDKS = {"azure.data.tables": "azure-data-tables>=12.5,<13", "azure.storage.blob": "azure-storage-blob>=12.19,<13",
        "azure.storage.queue": "azure-storage-queue>=12.9,<13"}
OPENED, RESOLVED = "io.plmon.finding.opened", "io.plmon.finding.resolved"
QUIET_BEFORE_TICK = 20.0   # the cold start's window: at least this long before the next tick
LONG_TICK = 3600.0         # the schedule interval while a first collection and the cold start are measured


def err(phase: str, error: BaseException | str) -> None:
    """One JSON line on stderr: the phase that failed and why (its figures stay null)."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    print(json.dumps({"error": text, "phase": phase}), file=sys.stderr, flush=True)


def note(text: str) -> None:
    print(f"[scaleout {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- what the benchmark needs, installed when missing --------------------------------------------------------------

def ensure_tools() -> Path:
    """Azurite where the Makefile puts it and the storage SDKs, so that the bench runs after ``make demo`` alone."""
    if not AZURITE.exists():
        note("installing Azurite 3.35.0 into .tools/azurite (npm)")
        subprocess.run(["npm", "install", "--prefix", str(ROOT / ".tools" / "azurite"), "--no-audit", "--no-fund",
                        "--loglevel=error", "azurite@3.35.0"], check=True, timeout=600)
    missing = []
    for module, spec in SDKS.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(spec)
    if missing:
        note(f"installing {', '.join(missing)} (pip)")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *missing], check=True, timeout=600)
        importlib.invalidate_caches()
    return AZURITE


# --- child processes -----------------------------------------------------------------------------------------------

_children: list[subprocess.Popen[str]] = []
_children_lock = threading.Lock()


def spawn(args: list[str], *, env: dict[str, str] | None = None, log: Path) -> subprocess.Popen[str]:
    """A child whose first stdout line is its JSON address; stderr to ``log``. Killed by :func:`kill_children`."""
    with open(log, "w") as sink:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=sink, stdin=subprocess.DEVNULL, text=True,
                                env=env)
    with _children_lock:
        _children.append(proc)
    return proc


def first_line(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The child's first stdout line as JSON, or RuntimeError at the deadline (a thread reads: never hangs)."""
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.readline() if proc.stdout else ""), daemon=True)
    reader.start()
    reader.join(timeout)
    if not got or not got[0].strip():
        raise RuntimeError(f"{proc.args!r} printed no address within {timeout:.0f} s (exit {proc.poll()})")
    return dict(json.loads(got[0]))


def stop_process(proc: subprocess.Popen[str], grace: float = 15.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


def kill_children() -> None:
    """Every child still running, killed (exit, error, Ctrl-C): nothing outlives the benchmark."""
    with _children_lock:
        procs = list(_children)
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.wait(timeout=10)


def until(what: str, check: Callable[[], Any], timeout: float, every: float = 0.2) -> Any:
    """``check()``'s first truthy answer, polled; TimeoutError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            value = check()
            if value:
                return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


class Replay:
    """``plmon replay-server`` at 50 ms a request with ARM's read limits; :meth:`stats` counts its requests."""

    def __init__(self, folder: Path, work: Path, latency_ms: float) -> None:
        self.proc = spawn([str(PLMON), "replay-server", "--from", str(folder), "--latency-ms", f"{latency_ms:g}",
                           "--page-size", "100", "--arm-limits", "--preload"], log=work / "replay.log",
                          env={**os.environ, "PLMON_LOG_LEVEL": "warning"})
        address = first_line(self.proc, 120)
        self.base_url, self.ca_bundle = str(address["base_url"]), str(address["ca_bundle"])
        import httpx

        self.client = httpx.Client(verify=self.ca_bundle, timeout=10)

    def stats(self) -> dict[str, int]:
        return dict(self.client.get(f"{self.base_url}/.plmon/stats").json())


class Replica:
    """One ``plmon serve`` named ``instance`` (PLMON_INSTANCE_ID), and what the driver asks it over HTTP."""

    def __init__(self, instance: str, config: Path, replay: Replay, cs: str, work: Path, workers: int) -> None:
        import httpx

        self.instance = instance
        env = {**os.environ, "PLMON_ARM_TOKEN": "bench", "PLMON_INSTANCE_ID": instance, "PLMON_LOG_LEVEL": "warning",
               "PLMON_LOG_FORMAT": "json", "PLMON_TABLES_CONNECTION_STRING": cs}
        self.started = time.monotonic()
        self.proc = spawn([str(PLMON), "serve", "--config", str(config), "--arm-endpoint", replay.base_url,
                           "--ca-bundle", replay.ca_bundle, "--workers", str(workers), "--host", "127.0.0.1",
                           "--port", "0"], env=env, log=work / f"{config.stem}-{instance}.log")
        self.client = httpx.Client(timeout=20)
        self.base = ""
        self.last_metrics: dict[str, float] = {}

    def address(self, timeout: float) -> None:
        self.base = str(first_line(self.proc, timeout)["url"])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def readyz(self) -> tuple[int, dict[str, Any]]:
        r = self.client.get(f"{self.base}/readyz")
        return r.status_code, dict(r.json())

    def metrics(self) -> dict[str, float]:
        """Its Prometheus samples by name and labels; kept as its last scrape (a killed replica's counts)."""
        from serve import samples

        self.last_metrics = samples(self.client, self.base)
        return self.last_metrics

    def post(self, events: list[dict[str, Any]]) -> int:
        from serve import SECRET

        r = self.client.post(f"{self.base}/api/eventgrid", params={"code": SECRET}, content=json.dumps(events),
                             headers={"Content-Type": "application/json"})
        return r.status_code

    def stop(self) -> None:
        self.client.close()
        stop_process(self.proc)


def total(samples: dict[str, float], name: str) -> float:
    """A metric summed over its labels (``name`` or ``name{...}``)."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


# --- the store, read from outside (the collection book and the outbox) ---------------------------------------------

class Store:
    """The K-phase's tables as the replicas write them, read with the product's own Table backends."""

    def __init__(self, cs: str, prefix: str) -> None:
        from azure.data.tables import TableServiceClient

        from plmon.monitor.state.collections_tables import TablesCollectionBook
        from plmon.monitor.state.open import open_store

        self.prefix = prefix
        self.book = TablesCollectionBook(TableServiceClient.from_connection_string(cs), prefix)
        self.store = open_store(f"azuretables:///{prefix}", {"PLMON_TABLES_CONNECTION_STRING": cs})

    def rows(self) -> list[Any]:
        return sorted(self.book.collections(), key=lambda r: r.collection)

    def published(self) -> list[Any]:
        return [r for r in self.rows() if r.state == "published"]

    def outbox(self) -> list[Any]:
        return list(self.store.outbox())


# --- one K: replicas on a fresh prefix until their first collection is published ----------------------------------

def write_config(path: Path, prefix: str, hook: str, tick: float) -> Path:
    import yaml
    from serve import KIND_CHECKS, SECRET

    path.write_text(yaml.safe_dump({
        "state": {"url": f"azuretables:///{prefix}"},
        "server": {"secret": SECRET, "max_body_bytes": 16 * 1024 * 1024},
        # One alert per request: a digest would hide which alert arrived when (digests are still expanded).
        "alerts": [{"type": "webhook", "name": "bench", "url": hook, "secret": "k", "min_severity": "info",
                    "checks": sorted(set(KIND_CHECKS.values())), "digest_threshold": 1_000_000}],
        "schedule": {"full_collection": f"{int(tick)}s", "delivery_interval": "1s"},
        # Short timings so a kill is recovered within the run: the blob lease's minimum, claims and shards alike.
        "scale": {"shared_inventory": True, "lease_duration": "15s", "lease_renew": "5s", "pointer_interval": "2s",
                  "event_claim_lease": "15s", "shards_in_flight": 1, "shard_workers": 4, "shard_visibility": "20s",
                  "shard_timeout": "120s", "shard_max_attempts": 5, "collection_deadline": "600s"},
    }))
    return path


class Phase:
    """K replicas on a fresh prefix (``b<uuid8>``): started together, and the figures of their first collection."""

    def __init__(self, k: int, tick: float, *, replay: Replay, cs: str, hook: str, work: Path, workers: int) -> None:
        self.k, self.tick, self.replay, self.cs, self.work, self.workers = k, tick, replay, cs, work, workers
        self.hook = hook
        self.prefix = "b" + uuid.uuid4().hex[:8]
        self.config = write_config(work / f"k{k}-{self.prefix}.yaml", self.prefix, hook, tick)
        self.store = Store(cs, self.prefix)
        self.replicas: list[Replica] = []
        self.started = 0   # replicas ever started: names stay unique across a restart
        self.figures: dict[str, Any] = {"replicas": k, "prefix": self.prefix, "tick_s": tick,
                                        "load_avg_at_start": list(os.getloadavg())}

    def start(self, count: int) -> list[Replica]:
        new = [Replica(f"r{self.started + i + 1}", self.config, self.replay, self.cs, self.work, self.workers)
               for i in range(count)]
        self.started += count
        for r in new:
            r.address(120)
        self.replicas += new
        return new

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive()]

    def holder(self) -> Replica | None:
        """The replica ``/readyz`` names as the schedule lease's holder (asked of any live one)."""
        for r in self.live():
            with contextlib.suppress(Exception):
                name = r.readyz()[1].get("schedule", {}).get("holder")
                found = next((x for x in self.live() if x.instance == name), None)
                if found is not None:
                    return found
        return None

    def first_collection(self, timeout: float) -> None:
        """Start the K replicas and wait for the first published collection: its time and ARM requests."""
        s0 = self.replay.stats()
        t0 = time.monotonic()
        self.start(self.k)
        row = until(f"K={self.k}: first collection published", lambda: (self.store.published() or [None])[0],
                    timeout, every=0.2)
        s1 = self.replay.stats()
        self.figures["publish_seen_after_start_s"] = time.monotonic() - t0
        self.figures["arm_requests"] = s1["requests"] - s0["requests"]
        self.figures["arm_throttled"] = s1["throttled"] - s0["throttled"]
        self.figures["book"] = {"collection": row.collection, "started_by": row.started_by,
                                "book_s": (row.published_at - row.started_at).total_seconds()}
        holder = next((r for r in self.replicas if r.instance == row.started_by), None) or self.holder()
        readyz: dict[str, Any] = {}
        if holder is not None:
            with contextlib.suppress(Exception):
                readyz = until("holder's /readyz", lambda: holder.readyz()[1], 20)
        collection = readyz.get("collection") if isinstance(readyz.get("collection"), dict) else None
        seconds = self.figures["book"]["book_s"]
        if collection and collection.get("published_at") and collection.get("started_at"):
            seconds = (datetime.fromisoformat(collection["published_at"])
                       - datetime.fromisoformat(collection["started_at"])).total_seconds()
            self.figures["readyz_collection"] = collection
        self.figures["collection_s"] = seconds
        self.figures["collection_s_source"] = "readyz" if collection else "collection book"
        if holder is not None:
            with contextlib.suppress(Exception):
                m = holder.metrics()
                self.figures["holder_duration_histogram_s"] = total(m, "plmon_collection_duration_seconds_sum")
        note(f"K={self.k}: collection {seconds:.1f} s, {self.figures['arm_requests']} ARM requests "
             f"({self.figures['arm_throttled']} throttled)")

    def retick(self, tick: float) -> int:
        """Every replica stopped (gracefully) and K started again on the same store with ``tick`` as the schedule's
        interval; the tick they start in. They load the published collection (no ARM read) and the holder collects
        the current tick at once: the kill run and the ticks are counted from here, on these replicas' counters."""
        self.figures["metrics_before_retick"] = self.scrape()
        self.stop()
        self.replicas, self.tick = [], tick
        self.figures["tick_s"] = tick
        self.config = write_config(self.work / f"k{self.k}-{self.prefix}-tick.yaml", self.prefix, self.hook, tick)
        first = current_tick(tick)
        self.start(self.k)
        note(f"K={self.k}: restarted on a {tick:.0f} s tick")
        return first

    def scrape(self) -> dict[str, dict[str, float]]:
        """Each replica's scale-out metrics (its last scrape if it is dead)."""
        out = {}
        for r in self.replicas:
            if r.alive():
                with contextlib.suppress(Exception):
                    r.metrics()
            out[r.instance] = {k: v for k, v in r.last_metrics.items()
                               if k.startswith(("plmon_collections", "plmon_shards", "plmon_arm_requests",
                                                "plmon_arm_throttles", "plmon_schedule_leader", "plmon_patches",
                                                "plmon_inventory_load_seconds_sum", "plmon_alert_deliveries",
                                                "plmon_collection_duration_seconds_sum", "plmon_events_accepted"))}
        return out

    def stop(self) -> None:
        threads = [threading.Thread(target=r.stop) for r in self.replicas]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.figures["load_avg_at_end"] = list(os.getloadavg())


# --- the largest K: ticks, the cold replica, its first event, the kill run -----------------------------------------

def current_tick(tick: float) -> int:
    return math.floor(time.time() / tick)


def quiet_window(phase: Phase, timeout: float) -> None:
    """Wait until nothing collects (every book row published) and the next tick is at least 20 s away."""
    def quiet() -> bool:
        left = (current_tick(phase.tick) + 1) * phase.tick - time.time()
        rows = phase.store.rows()
        return left >= QUIET_BEFORE_TICK and bool(rows) and all(r.state in ("published", "abandoned") for r in rows) \
            and rows[-1].tick == current_tick(phase.tick)
    until("a quiet window between ticks", quiet, timeout, every=0.2)


def cold_start(phase: Phase, timeout: float) -> tuple[Replica, float, int | None]:
    """Replica K+1 started in a quiet window: seconds to its first /readyz 200, and ARM requests meanwhile. With no
    quiet window (collections back to back on a loaded machine) it starts all the same, for its time to ready and
    its first event; its request count is then null (the tick's collection is in it), with an error on stderr."""
    quiet = True
    try:
        quiet_window(phase, 2 * phase.tick + 60)
    except TimeoutError as error:
        err("cold start", error)
        quiet = False
    s0 = phase.replay.stats()
    [cold] = phase.start(1)

    def ready() -> bool:
        return cold.readyz()[0] == 200
    until("the cold replica ready", ready, timeout, every=0.05)
    seconds = time.monotonic() - cold.started
    requests = phase.replay.stats()["requests"] - s0["requests"] if quiet else None
    note(f"cold replica {cold.instance}: ready in {seconds:.2f} s with {requests} ARM requests"
         + ("" if quiet else " (no quiet window: a collection's requests are in it)"))
    return cold, seconds, requests


def alert_matches(alert: dict[str, Any], kind: str, check: str, subject: str) -> bool:
    data = alert.get("data") or {}
    return alert.get("type") == kind and data.get("check_id") == check \
        and str(data.get("resource_id", "")).lower() == subject.lower()


def first_event(phase: Phase, cold: Replica, rec: Any, folder: Path, timeout: float) -> float:
    """The paas mutation on disk, its event posted to the cold replica, until its opened alert; then undone (and
    its resolve awaited) so that the kill run starts from a healthy tenant."""
    from serve import mutations

    paas = next(m for m in mutations(folder) if m.kind == "paas target")
    try:
        before = len(rec.got)
        paas.apply(True)
        sent = time.monotonic()
        if cold.post([paas.event()]) != 200:
            raise RuntimeError("the cold replica refused the event")
        at = rec.wait_for(lambda a: alert_matches(a, OPENED, paas.check, paas.subject), before, timeout)
        if at is None:
            raise TimeoutError(f"no opened alert within {timeout:.0f} s")
        seconds = float(at - sent)
        note(f"first event on the cold replica: alert in {seconds:.2f} s")
        before = len(rec.got)
        paas.apply(False)
        cold.post([paas.event()])
        rec.wait_for(lambda a: alert_matches(a, RESOLVED, paas.check, paas.subject), before, timeout)
        return seconds
    finally:
        paas.apply(False)


def kill_mutations(folder: Path, count: int) -> list[Any]:
    """``count`` resources to break and mend: each bench/serve.py kind, then more private endpoints (other
    subscriptions first), each with the same change as the endpoint kind."""
    from serve import KIND_CHECKS, Mutation, _approved, _list_files, mutations

    out = list(mutations(folder))
    taken = {m.resource_id.lower() for m in out}

    def pe_edit(item: dict[str, Any], bad: bool) -> None:
        item["properties"]["provisioningState"] = "Failed" if bad else "Succeeded"
    files = _list_files(folder, "privateEndpoints")
    for path in files[::-1]:   # from the last subscription: away from the kinds' resources
        if len(out) >= count:
            break
        for item in json.loads(path.read_text())["value"]:
            if item["id"].lower() not in taken and item["properties"]["provisioningState"] == "Succeeded" \
                    and _approved(item):
                out.append(Mutation("private endpoint", item["id"], KIND_CHECKS["private endpoint"], item["id"], path,
                                    pe_edit))
                taken.add(item["id"].lower())
                break
    return out[:count]


def received_ids(rec: Any, after: int) -> list[str]:
    """Alert ids received from index ``after`` on, one per reception (a digest stands for its ``alert_ids``)."""
    ids: list[str] = []
    with rec.cond:
        got = list(rec.got[after:])
    for _, alert in got:
        data = alert.get("data") or {}
        ids += list(data["alert_ids"]) if isinstance(data.get("alert_ids"), list) else [str(alert.get("id"))]
    return ids


def wait_quiet(phase: Phase, rec: Any, timeout: float) -> None:
    """No outbox row pending and no alert for 2 s: the first collection's backlog is out before the kill run."""
    def quiet() -> bool:
        pending = [r for r in phase.store.outbox() if str(r.status.value if hasattr(r.status, "value") else r.status)
                   == "pending"]
        with rec.cond:
            last = rec.got[-1][0] if rec.got else 0.0
        return not pending and time.monotonic() - last >= 2
    until("the alert backlog delivered", quiet, timeout, every=0.5)


def status_of(row: Any) -> str:
    return str(row.status.value if hasattr(row.status, "value") else row.status)


def kill_run(phase: Phase, rec: Any, folder: Path, *, events: int, deadline_s: float, from_tick: int) -> dict[str, Any]:
    """Design15 2.5's kill run at the first tick from ``from_tick`` whose collection is under way; the four alert
    figures and what they rest on."""
    out: dict[str, Any] = {}
    wait_quiet(phase, rec, 120)
    delivered_before = {r.alert_id for r in phase.store.outbox() if status_of(r) == "delivered"}
    start_index = len(rec.got)
    muts = kill_mutations(folder, events // 2)
    out["resources"] = [{"kind": m.kind, "check": m.check, "subject": m.subject} for m in muts]

    # At a tick: its row created and the holder collecting (shards in progress, where the fan-out says so).
    tick = from_tick

    def collecting() -> Replica | None:
        rows = [r for r in phase.store.rows() if r.tick >= tick and r.state == "stage1"]   # stage 1: the lists
        if not rows:
            return None
        holder = next((r for r in phase.live() if r.instance == rows[-1].started_by), None)
        if holder is None:
            return None
        m = holder.metrics()
        if any(k.startswith("plmon_shards_in_progress") for k in m) and total(m, "plmon_shards_in_progress") <= 0:
            return None
        return holder
    holder = until("the holder collecting at a tick", collecting, phase.tick + 90, every=0.1)
    out["killed"] = holder.instance
    replicas = phase.live()
    posts: list[tuple[str, str, int]] = []
    for i, m in enumerate(muts):   # opened: round-robin over every replica, the holder included
        m.apply(True)
        target = replicas[i % len(replicas)]
        posts.append((m.resource_id, target.instance, target.post([m.event()])))
    with contextlib.suppress(Exception):
        holder.metrics()   # its last scrape: what it counted is in the figures though it dies
    holder.proc.send_signal(signal.SIGKILL)
    holder.proc.wait(timeout=10)
    killed_at = time.monotonic()
    note(f"kill run: SIGKILLed the holder {holder.instance} mid-collection after {len(muts)} events")
    survivors = phase.live()

    # Resolved: each posted to the next survivor once its opened alert arrived (else the re-read might see neither).
    mended: set[int] = set()
    deadline = time.monotonic() + deadline_s
    turn = 0
    while len(mended) < len(muts) and time.monotonic() < deadline:
        with rec.cond:
            got = [a for _, a in rec.got[start_index:]]
        for i, m in enumerate(muts):
            if i not in mended and any(alert_matches(a, OPENED, m.check, m.subject) for a in got):
                m.apply(False)
                target = survivors[turn % len(survivors)]
                turn += 1
                posts.append((m.resource_id, target.instance, target.post([m.event()])))
                mended.add(i)
        time.sleep(0.1)
    for i, m in enumerate(muts):
        if i not in mended:   # its opened alert never came: mend the tenant all the same
            m.apply(False)
            target = survivors[turn % len(survivors)]
            turn += 1
            posts.append((m.resource_id, target.instance, target.post([m.event()])))
    out["posts"] = [{"resource": p[0], "replica": p[1], "status": p[2]} for p in posts]

    def settled() -> bool:
        if not any(r.state == "published" and r.tick >= tick for r in phase.store.rows()):
            return False
        if any(s.readyz()[1].get("intake_pending", 1) != 0 for s in survivors):
            return False
        if any(status_of(r) == "pending" for r in phase.store.outbox()):
            return False
        with rec.cond:
            got = [a for _, a in rec.got[start_index:]]
        return all(any(alert_matches(a, kind, m.check, m.subject) for a in got) for m in muts
                   for kind in (OPENED, RESOLVED))
    try:
        until("the kill run settled (published, intake and outbox empty, every alert in)", settled,
              max(5.0, deadline - time.monotonic()), every=0.5)
        out["settled_s"] = time.monotonic() - killed_at
    except TimeoutError as error:
        err("kill run", error)
        out["settled_s"] = None
    time.sleep(2)   # a straggler (a duplicate) would arrive now

    rows = [r for r in phase.store.outbox() if r.alert_id not in delivered_before]
    ids = received_ids(rec, start_index)
    with rec.cond:
        got = [a for _, a in rec.got[start_index:]]
    missing = [{"kind": kind, "check": m.check, "subject": m.subject} for m in muts for kind in (OPENED, RESOLVED)
               if not any(alert_matches(a, kind, m.check, m.subject) for a in got)]
    stuck = [r.alert_id for r in rows if status_of(r) in ("pending", "failed")]
    # Transitions beyond the expected opened-then-resolved of each resource (a collection that read a resource
    # between its change and its event, or the tick's other findings): not duplicates (their ids differ), shown.
    expected = {(kind, m.check, m.subject.lower()) for m in muts for kind in (OPENED, RESOLVED)}
    seen: set[tuple[str, str, str]] = set()
    extra = []
    for a in got:
        data = a.get("data") or {}
        key = (str(a.get("type")), str(data.get("check_id")), str(data.get("resource_id", "")).lower())
        if key not in expected or key in seen:
            extra.append({"type": key[0], "check": key[1], "subject": key[2]})
        seen.add(key)
    out.update({"alerts_sent": sum(1 for r in rows if status_of(r) == "delivered"),
                "alerts_delivered": len(set(ids)), "duplicates": len(ids) - len(set(ids)),
                "lost": len(missing) + len(stuck), "missing_transitions": missing, "outbox_stuck": stuck,
                "receptions": len(ids), "expected_transitions": 2 * len(muts), "other_transitions": extra})
    note(f"kill run: sent {out['alerts_sent']}, delivered {out['alerts_delivered']}, duplicates {out['duplicates']}, "
         f"lost {out['lost']}")
    return out


def ticks_figures(phase: Phase, first_tick: int, timeout: float) -> dict[str, Any]:
    """Collections started per tick, from the first tick the replicas collected in (starting them can take a tick)
    to the latest, at a moment when that latest collection is published: the counters then hold whole collections.
    An older row left running is a dead holder's whose tick ended before a survivor took the lease (it starts the
    new tick, not the old one): listed as ``orphaned``, it collects nothing."""
    def enough() -> list[Any]:
        rows = sorted((r for r in phase.store.rows() if r.tick >= first_tick), key=lambda r: r.tick)
        done = rows and rows[-1].state in ("published", "abandoned")
        return rows if done and rows[-1].tick - rows[0].tick + 1 >= 3 else []
    rows = until("three ticks, the latest published", enough, timeout, every=0.3)
    per_replica = phase.scrape()
    ticks = rows[-1].tick - rows[0].tick + 1
    name = "plmon_collections_started_total"
    if not any(any(k.startswith(name) for k in m) for m in per_replica.values()):
        name = "plmon_collections_total"   # before the fan-out: full collections run (by outcome)
    started = sum(total(m, name) for m in per_replica.values())
    return {"ticks": ticks, "collections_started": started, "counter": name,
            "collections_per_tick": started / ticks, "book_rows": len(rows), "book_rows_per_tick": len(rows) / ticks,
            "orphaned": [r.collection for r in rows[:-1] if r.state not in ("published", "abandoned")],
            "book": [{"collection": r.collection, "tick": r.tick, "state": r.state, "started_by": r.started_by,
                      "epoch": r.epoch} for r in rows],
            "metrics": per_replica}


# --- the whole run -------------------------------------------------------------------------------------------------

def targets_summary(result: dict[str, Any]) -> list[str]:
    """The issue's targets against this run's figures, one line each (None: not measured)."""
    lines = []
    cs, reqs = result["collection_s"], result["arm_requests"]
    t1, r1 = cs.get("1"), reqs.get("1")
    for k in sorted((k for k in cs if k != "1"), key=int):
        tk, rk = cs.get(k), reqs.get(k)
        if t1 and tk:
            lines.append(f"K={k}: {tk:.1f} s <= 1.3 x T1/K = {1.3 * t1 / int(k):.1f} s: {tk <= 1.3 * t1 / int(k)}")
        if r1 and rk:
            lines.append(f"K={k}: {rk} requests <= 1.02 x {r1} = {1.02 * r1:.0f}: {rk <= 1.02 * r1}")
    cpt = result["collections_per_tick"]
    lines.append(f"collections per tick {cpt} == 1: {cpt == 1 if cpt is not None else None}")
    cold, biggest = result["cold_start_arm_requests"], max((v for v in reqs.values() if v), default=None)
    if cold is not None and biggest:
        lines.append(f"cold start {cold} requests < 1 % of {biggest}: {cold < 0.01 * biggest}; ready in "
                     f"{result['cold_start_ready_s']:.2f} s")
    first = result["first_event_alert_s"]
    lines.append(f"first event alert {first if first is None else round(first, 2)} s < 2 s: "
                 f"{first < 2 if first is not None else None}")
    sent, got = result["alerts_sent"], result["alerts_delivered"]
    ok = None if sent is None else (sent == got and result["duplicates"] == 0 and result["lost"] == 0)
    lines.append(f"alerts sent {sent} = delivered {got}, duplicates {result['duplicates']}, lost {result['lost']}: "
                 f"{ok}")
    return lines


def run(opts: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every phase; (the last line's figures, everything for work/scaleout.json)."""
    from serve import receiver

    from plmon.monitor.replay.azurite import start_azurite

    binary = ensure_tools()
    result: dict[str, Any] = {k: None for k in KEYS}
    result["collection_s"], result["arm_requests"] = {}, {}
    detail: dict[str, Any] = {"quick": opts.quick, "load_avg_at_start": list(os.getloadavg()), "phases": {},
                              "errors": []}
    work = Path(tempfile.mkdtemp(prefix="plmon-scaleout-"))
    detail["work"] = str(work)
    azurite = None
    started = time.monotonic()
    try:
        folder = work / "tenant"
        t0 = time.monotonic()
        subprocess.run([str(PLMON), "synth", "--subscriptions", str(opts.subscriptions), "--endpoints",
                        str(opts.endpoints), "--seed", "1", "--out", str(folder)], check=True, timeout=300,
                       stdout=subprocess.DEVNULL)
        detail["tenant"] = {"subscriptions": opts.subscriptions, "endpoints": opts.endpoints,
                            "files": sum(1 for _ in (folder / "arm").rglob("*.json")),
                            "synth_s": time.monotonic() - t0}
        azurite = start_azurite(binary)
        cs = azurite.connection_string
        replay = Replay(folder, work, opts.latency_ms)
        note(f"tenant {opts.subscriptions} subscriptions / {opts.endpoints} endpoints; Azurite and replay up")
        with receiver() as rec:
            ks = sorted(opts.replicas)
            for k in ks:
                last = k == ks[-1]
                # An hour's tick for the first collection: no second tick starts while it and the cold start are
                # measured, however long a collection takes on a loaded machine (the largest K then re-ticks).
                phase = Phase(k, LONG_TICK, replay=replay, cs=cs, hook=rec.url, work=work, workers=opts.workers)
                detail["phases"][str(k)] = phase.figures
                try:
                    phase.first_collection(opts.collection_timeout)
                    result["collection_s"][str(k)] = phase.figures["collection_s"]
                    result["arm_requests"][str(k)] = phase.figures["arm_requests"]
                    if last:
                        largest(phase, rec, folder, result, detail, opts)
                except Exception as error:
                    err(f"K={k}", error)
                    detail["errors"].append({"phase": f"K={k}", "error": f"{type(error).__name__}: {error}"})
                finally:
                    with contextlib.suppress(Exception):
                        phase.figures["metrics"] = phase.scrape()
                    phase.stop()
            detail["receptions_total"] = len(rec.got)
        detail["replay_stats_end"] = replay.stats()
        stop_process(replay.proc)
    finally:
        kill_children()
        if azurite is not None:
            azurite.stop()
        detail["wall_s"] = time.monotonic() - started
        detail["load_avg_at_end"] = list(os.getloadavg())
        if opts.keep_work:
            note(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return result, detail


def largest(phase: Phase, rec: Any, folder: Path, result: dict[str, Any], detail: dict[str, Any],
            opts: argparse.Namespace) -> None:
    """The largest K after its first collection: the cold replica and its first event (still on the hour's tick, so
    nothing else collects), then the same store re-ticked at ``--tick`` for the kill run and collections per tick."""
    cold = None
    try:
        cold, result["cold_start_ready_s"], result["cold_start_arm_requests"] = cold_start(phase, 120)
        detail["cold_start"] = {"replica": cold.instance, "ready_s": result["cold_start_ready_s"],
                                "arm_requests": result["cold_start_arm_requests"]}
    except Exception as error:
        err("cold start", error)
        detail["errors"].append({"phase": "cold start", "error": f"{type(error).__name__}: {error}"})
    if cold is not None:
        try:
            result["first_event_alert_s"] = first_event(phase, cold, rec, folder, 60)
        except Exception as error:
            err("first event", error)
            detail["errors"].append({"phase": "first event", "error": f"{type(error).__name__}: {error}"})
    first_tick = phase.retick(opts.tick)
    try:
        if phase.k < 2:
            raise RuntimeError(f"skipped: the kill run needs a survivor, and the largest K is {phase.k}")
        kill = kill_run(phase, rec, folder, events=opts.events, deadline_s=opts.kill_deadline, from_tick=first_tick)
        detail["kill_run"] = kill
        for key in ("alerts_sent", "alerts_delivered", "duplicates", "lost"):
            result[key] = kill[key]
    except Exception as error:
        err("kill run", error)
        detail["errors"].append({"phase": "kill run", "error": f"{type(error).__name__}: {error}"})
    try:
        ticks = ticks_figures(phase, first_tick, 4 * phase.tick + 120)
        detail["ticks"] = ticks
        result["collections_per_tick"] = round(ticks["collections_per_tick"], 3)
    except Exception as error:
        err("collections per tick", error)
        detail["errors"].append({"phase": "collections per tick", "error": f"{type(error).__name__}: {error}"})


@contextlib.contextmanager
def children_killed_on_signals() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP end the run alike (SIGINT too when the shell started it ignored): the ``finally``
    blocks kill every child."""
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        kill_children()
        for s, handler in previous.items():
            signal.signal(s, handler)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--quick", action="store_true", help="K in {1, 3}, 600 endpoints, 45 s ticks (about 5 min)")
    ap.add_argument("--replicas", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="replica counts, e.g. 1,3,5 (default: 1,3 with --quick, else 1,3,5)")
    ap.add_argument("--subscriptions", type=int, default=40)
    ap.add_argument("--endpoints", type=int, default=None, help="default 600 with --quick, else 1200")
    ap.add_argument("--latency-ms", type=float, default=50)
    ap.add_argument("--workers", type=int, default=4, help="ARM reads in flight per replica outside shards")
    ap.add_argument("--tick", type=float, default=None, help="the largest K's schedule interval (45 s quick, 60 s)")
    ap.add_argument("--events", type=int, default=20, help="kill run events (half break, half mend)")
    ap.add_argument("--kill-deadline", type=float, default=180)
    ap.add_argument("--collection-timeout", type=float, default=300)
    ap.add_argument("--out", type=Path, default=ROOT / "work" / "scaleout.json")
    ap.add_argument("--keep-work", action="store_true", help="keep the work folder (logs, configs, tenant)")
    opts = ap.parse_args()
    opts.replicas = opts.replicas or ([1, 3] if opts.quick else [1, 3, 5])
    opts.endpoints = opts.endpoints or (600 if opts.quick else 1200)
    opts.tick = opts.tick or (45.0 if opts.quick else 60.0)
    if opts.subscriptions < 1 or opts.endpoints < 1 or min(opts.replicas) < 1 or opts.events < 2:
        print("scaleout: --subscriptions, --endpoints, --replicas and --events must be positive", file=sys.stderr)
        return 2
    try:
        with children_killed_on_signals():
            result, detail = run(opts)
    except KeyboardInterrupt:
        print(json.dumps({"error": "interrupted", "phase": "run"}), file=sys.stderr)
        return 130
    detail["result"] = result
    detail["targets"] = targets_summary(result)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(detail, indent=2, default=str) + "\n")
    print("targets (issue 15):", file=sys.stderr)
    for line in detail["targets"]:
        print(f"  {line}", file=sys.stderr)
    print(json.dumps({k: result[k] for k in KEYS}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
