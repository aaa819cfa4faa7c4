"""``plmon serve`` figures for ``make bench``: event-to-alert latency per event kind and a 5,000-event burst.

The daemon runs as the product runs it (``plmon serve --from <synth tenant>`` in its own process, JSON logs at
warning); alerts go to a webhook receiver (http.server on 127.0.0.1) in this process. The approach is the
daemon's e2e harness (tests/kit/daemonkit.py) without importing from tests/: a change in Azure is a file rewritten
on disk (the recorded tenant reads it on the next re-read), then the Event Grid write event is posted.
Each event kind issue 14 names (endpoint, route table, virtual network, NSG, firewall policy, Private Link
Service, PaaS target) gets a change that opens one finding and its reverse that resolves it (:func:`mutations`),
and the alert for that check and subject must arrive: an event that changes nothing measures only the intake.

Every wait has a deadline: a daemon that stops answering costs at most the deadline, never a hung bench.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

SECRET = "bench-secret"
PUBLIC_CHECK = "public-access.enabled-with-private-endpoint"
# Resource types the burst's events touch: what Event Grid sends most for a private-link estate.
BURST_TYPES = ("microsoft.network/privateendpoints", "microsoft.network/routetables",
               "microsoft.network/networksecuritygroups", "microsoft.storage/storageaccounts",
               "microsoft.keyvault/vaults")


@dataclass
class Receiver:
    """Alerts the daemon delivered, with the monotonic time each arrived."""

    url: str = ""
    got: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, match: Callable[[dict[str, Any]], bool], after: int, timeout: float) -> float | None:
        """Arrival time of the first alert from index ``after`` on that matches, or None at the deadline."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for at, alert in self.got[after:]:
                    if match(alert):
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            at = time.monotonic()
            with contextlib.suppress(ValueError), rec.cond:
                rec.got.append((at, json.loads(body)))
                rec.cond.notify_all()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


def event(resource_id: str, type_: str) -> dict[str, Any]:
    """An Event Grid schema ResourceWriteSuccess event, as ARM sends it."""
    sub = resource_id.split("/")[2]
    return {"id": str(uuid.uuid4()), "eventType": "Microsoft.Resources.ResourceWriteSuccess",
            "subject": resource_id, "eventTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "dataVersion": "2", "metadataVersion": "1", "topic": f"/subscriptions/{sub}",
            "data": {"operationName": f"{type_}/write", "resourceUri": resource_id, "status": "Succeeded",
                     "subscriptionId": sub, "correlationId": str(uuid.uuid4())}}


def _arm_file(folder: Path, resource_id: str) -> Path:
    return folder / "arm" / (resource_id.strip("/") + ".json")


def _lists(folder: Path, kind: str) -> Iterator[dict[str, Any]]:
    for path in sorted((folder / "arm" / "subscriptions").glob(f"*/providers/Microsoft.Network/{kind}.json")):
        yield from json.loads(path.read_text())["value"]


def flip_target(folder: Path) -> str:
    """A storage account with an Approved endpoint and public access off: flipping it opens/resolves a finding."""
    for pe in _lists(folder, "privateEndpoints"):
        for conn in pe["properties"].get("privateLinkServiceConnections", []):
            props = conn["properties"]
            tid = props.get("privateLinkServiceId", "")
            state = props.get("privateLinkServiceConnectionState", {}).get("status")
            if "/microsoft.storage/storageaccounts/" not in tid.lower() or state != "Approved":
                continue
            file = _arm_file(folder, tid)
            if file.is_file() and json.loads(file.read_text())["properties"].get("publicNetworkAccess") == "Disabled":
                return tid
    raise RuntimeError("the synth tenant has no private storage account with an Approved endpoint")


def burst_resources(folder: Path, distinct: int, seed: int) -> list[str]:
    """``distinct`` resource ids of the tenant, of the types in BURST_TYPES, chosen at random."""
    ids = sorted({str(p.relative_to(folder / "arm").with_suffix("")) for p in (folder / "arm").rglob("*.json")})
    pool: list[str] = []
    for kind in ("privateEndpoints", "routeTables", "networkSecurityGroups"):
        pool += [item["id"] for item in _lists(folder, kind)]
    pool += ["/" + i for i in ids if "/providers/microsoft.storage/storageaccounts/" in i.lower()
             or "/providers/microsoft.keyvault/vaults/" in i.lower()]
    pool = sorted(set(pool))
    return random.Random(seed).sample(pool, min(distinct, len(pool)))


def _type_of(resource_id: str) -> str:
    parts = resource_id.strip("/").split("/")
    i = [p.lower() for p in parts].index("providers")
    return f"{parts[i + 1]}/{parts[i + 2]}"


_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$")


def metrics(client: httpx.Client, base: str) -> dict[str, float]:
    """The daemon's Prometheus samples, summed over labels."""
    out: dict[str, float] = {}
    for line in client.get(f"{base}/metrics").text.splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
    return out


def samples(client: httpx.Client, base: str) -> dict[str, float]:
    """The daemon's Prometheus samples as written (name and labels), e.g. ``x_sum{phase="total"}``."""
    out: dict[str, float] = {}
    for line in client.get(f"{base}/metrics").text.splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


REEVAL = "plmon_reevaluation_cpu_seconds"


def reeval_cpu(client: httpx.Client, base: str, before: dict[str, float], steps: int,
               timeout: float = 30) -> dict[str, float] | None:
    """The daemon's own CPU for the worker steps since ``before`` (samples()), by phase and in total, once
    ``steps`` more steps were recorded; None at the deadline. The daemon records a step's figures just after
    handing its alerts to the delivery lanes, so the alert may arrive first: this waits for the count."""
    count = f'{REEVAL}_count{{phase="total"}}'
    deadline = time.monotonic() + timeout
    while True:
        now = samples(client, base)
        if now.get(count, 0.0) - before.get(count, 0.0) >= steps:
            break
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)
    out = {}
    for key, value in now.items():
        if key.startswith(f"{REEVAL}_sum{{"):
            phase = key.split('phase="', 1)[1].split('"', 1)[0]
            out[phase] = value - before.get(key, 0.0)
    return out


def pending(db: Path) -> int:
    """Queued events not yet settled (done or set aside as failed), read from the daemon's sqlite intake."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM intake_events WHERE done_at IS NULL AND failed_at IS NULL")
                   .fetchone()[0])


class ServeProcess:
    """``plmon serve --from <folder>`` in its own process, ready (first collection done) on start."""

    def __init__(self, folder: Path, config: Path, ready_timeout: float = 180) -> None:
        plmon = Path(sys.executable).parent / "plmon"
        env = {**os.environ, "PLMON_LOG_LEVEL": "warning", "PLMON_LOG_FORMAT": "json"}
        self.stderr = open(config.with_suffix(".log"), "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([str(plmon), "serve", "--from", str(folder), "--config", str(config),
                                      "--port", "0"], stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                     env=env)
        self.client = httpx.Client(timeout=60)
        try:
            self.base = self._url(ready_timeout)
            deadline = time.monotonic() + ready_timeout
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if self.client.get(f"{self.base}/readyz").status_code == 200:
                        break
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"plmon serve not ready after {ready_timeout:.0f} s")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise

    def _url(self, timeout: float) -> str:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline() if self.proc.stdout else ""),
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        if not line or not line[0]:
            raise RuntimeError("plmon serve printed no URL")
        return str(json.loads(line[0])["url"])

    def post(self, events: list[dict[str, Any]]) -> httpx.Response:
        """Post one delivery; once more on a fresh connection if a kept-alive one was closed while idle (the
        daemon's first alerts at 100k can take minutes to deliver, longer than its server keeps a connection)."""
        body = json.dumps(events)
        for attempt in range(2):
            try:
                return self.client.post(f"{self.base}/api/eventgrid", params={"code": SECRET}, content=body,
                                        headers={"Content-Type": "application/json"})
            except httpx.TransportError:
                if attempt or self.proc.poll() is not None:
                    raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.stderr.close()


def run_burst(serve: ServeProcess, folder: Path, work: Path, *, burst: int, distinct: int, seed: int,
              drain_timeout: float) -> dict[str, Any]:
    """``burst`` events over ``distinct`` resources in one delivery, as Event Grid batches them, until drained."""
    ids = burst_resources(folder, distinct, seed)
    rng = random.Random(seed)
    batch = [event(rid, _type_of(rid)) for rid in (ids + [rng.choice(ids) for _ in range(burst - len(ids))])]
    rng.shuffle(batch)
    m0 = metrics(serve.client, serve.base)
    t0 = time.perf_counter()
    r = serve.post(batch)
    ack = time.perf_counter() - t0
    # The intake table is the truth (the pending gauge is only set when a worker step ends).
    deadline = time.monotonic() + drain_timeout
    drained = False
    while time.monotonic() < deadline:
        if pending(work / "state.db") == 0:
            drained = True
            break
        time.sleep(0.05)
    drain = time.perf_counter() - t0
    m1 = metrics(serve.client, serve.base)

    def delta(name: str) -> float:
        return m1.get(name, 0.0) - m0.get(name, 0.0)

    return {
        "events": len(batch), "distinct_resources": len(set(i.lower() for i in ids)), "status": r.status_code,
        "answer": r.json() if r.status_code == 200 else r.text[:200], "ack_s": ack,
        "drained": drained, "drain_s": drain if drained else None,
        "rereads": delta("plmon_rereads_total"), "ignored": delta("plmon_events_ignored_total"),
        "arm_requests": delta("plmon_arm_requests_total"), "failures": delta("plmon_event_failures_total"),
    }


# --- event kinds: one mutation per kind that opens a finding, and its reverse that resolves it --------------

# The kinds issue 14 names, in the order they are measured, and the check each mutation trips
# (shared/spec/checks.md): a change that opens or resolves nothing would measure only the intake.
KIND_CHECKS = {
    "private endpoint": "endpoint.provisioning-failed",
    "route table": "route.udr-bypassed",
    "virtual network": "nsg.not-enforced-on-endpoints",
    "nsg": "nsg.multi-port-range-rule",
    "firewall policy": "route.nva-missing-snat",
    "private link service": "pls.auto-approval-wildcard",
    "paas target": PUBLIC_CHECK,
}
SNAT_NEVER = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]  # endpoint IPs inside: the firewall does not SNAT


@dataclass
class Mutation:
    """A change in Azure, made on disk: ``apply(True)`` opens ``check`` on ``subject``, ``apply(False)`` resolves it.

    ``file`` is the recorded file the daemon re-reads for the event (the subscription's list of that type, or
    the target read by id); ``edit`` changes the one item of it named ``resource_id`` in place.
    """

    kind: str
    resource_id: str
    check: str
    subject: str
    file: Path
    edit: Callable[[dict[str, Any], bool], None]

    def apply(self, bad: bool) -> None:
        body = json.loads(self.file.read_text())
        items = body["value"] if isinstance(body, dict) and "value" in body else [body]
        item = next(i for i in items if str(i.get("id", "")).lower() == self.resource_id.lower())
        self.edit(item, bad)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, self.file)  # atomically: the daemon may be reading it

    def event(self) -> dict[str, Any]:
        return event(self.resource_id, _type_of(self.resource_id))


def _list_files(folder: Path, kind: str) -> list[Path]:
    return sorted((folder / "arm" / "subscriptions").glob(f"*/providers/Microsoft.Network/{kind}.json"))


def _first(folder: Path, kind: str, fits: Callable[[dict[str, Any]], bool]) -> tuple[Path, dict[str, Any]]:
    """The first item of the tenant's ``kind`` lists (in file order) that ``fits``: the same one on every run."""
    for path in _list_files(folder, kind):
        for item in json.loads(path.read_text())["value"]:
            if fits(item):
                return path, item
    raise RuntimeError(f"the synth tenant has no {kind} item fit for a mutation")


def _approved(pe: dict[str, Any]) -> bool:
    conns = pe["properties"].get("privateLinkServiceConnections", []) + \
        pe["properties"].get("manualPrivateLinkServiceConnections", [])
    return bool(conns) and all(c["properties"]["privateLinkServiceConnectionState"]["status"] == "Approved"
                               for c in conns)


def mutations(folder: Path) -> list[Mutation]:
    """One healthy resource per kind and the change that makes it fail its check (the reverse restores it)."""
    out: list[Mutation] = []

    path, pe = _first(folder, "privateEndpoints",
                      lambda i: i["properties"]["provisioningState"] == "Succeeded" and _approved(i))

    def pe_edit(item: dict[str, Any], bad: bool) -> None:
        item["properties"]["provisioningState"] = "Failed" if bad else "Succeeded"
    out.append(Mutation("private endpoint", pe["id"], KIND_CHECKS["private endpoint"], pe["id"], path, pe_edit))

    # A spoke's route table that routes its endpoints through the hub: without its prefix routes only the
    # 0.0.0.0/0 is left, which never replaces an endpoint's /32 (route.udr-bypassed on the table).
    path, rt = _first(folder, "routeTables",
                      lambda i: len(i["properties"]["routes"]) >= 3
                      and any(r["properties"]["addressPrefix"] == "0.0.0.0/0" for r in i["properties"]["routes"])
                      and any("/subnets/snet-pe-" in s["id"] for s in i["properties"].get("subnets", [])))
    routes = rt["properties"]["routes"]

    def rt_edit(item: dict[str, Any], bad: bool, routes: list[Any] = routes) -> None:
        item["properties"]["routes"] = [r for r in routes if r["properties"]["addressPrefix"] == "0.0.0.0/0"] \
            if bad else routes
    out.append(Mutation("route table", rt["id"], KIND_CHECKS["route table"], rt["id"], path, rt_edit))

    # A spoke network whose endpoint subnet has an NSG and network policies on: policies off, the NSG stops
    # filtering endpoint traffic (nsg.not-enforced-on-endpoints on the subnet).
    def policed(v: dict[str, Any]) -> bool:
        return any(s["name"].startswith("snet-pe-") and s["properties"].get("networkSecurityGroup")
                   and s["properties"].get("privateEndpointNetworkPolicies") == "Enabled"
                   and s["properties"].get("privateEndpoints") for s in v["properties"]["subnets"])
    path, vnet = _first(folder, "virtualNetworks", policed)
    subnet = next(s for s in vnet["properties"]["subnets"] if s["name"].startswith("snet-pe-")
                  and s["properties"].get("networkSecurityGroup")
                  and s["properties"].get("privateEndpointNetworkPolicies") == "Enabled")

    def vnet_edit(item: dict[str, Any], bad: bool, name: str = subnet["name"]) -> None:
        sub = next(s for s in item["properties"]["subnets"] if s["name"] == name)
        sub["properties"]["privateEndpointNetworkPolicies"] = "Disabled" if bad else "Enabled"
    out.append(Mutation("virtual network", vnet["id"], KIND_CHECKS["virtual network"], subnet["id"], path,
                        vnet_edit))

    # An NSG on endpoint subnets whose app rule names one port: two ports make it a multi-range rule.
    def single_port(n: dict[str, Any]) -> bool:
        return any("/subnets/snet-pe-" in s["id"] for s in n["properties"].get("subnets", [])) and all(
            "destinationPortRanges" not in r["properties"] for r in n["properties"]["securityRules"])
    path, nsg = _first(folder, "networkSecurityGroups", single_port)
    rule = nsg["properties"]["securityRules"][0]["name"]

    def nsg_edit(item: dict[str, Any], bad: bool, name: str = rule) -> None:
        props = next(r for r in item["properties"]["securityRules"] if r["name"] == name)["properties"]
        port = (props.pop("destinationPortRanges", None) or [props.get("destinationPortRange", "443")])[0]
        props.pop("destinationPortRange", None)
        if bad:
            props["destinationPortRanges"] = [port, "1433"]
        else:
            props["destinationPortRange"] = port
    out.append(Mutation("nsg", nsg["id"], KIND_CHECKS["nsg"], nsg["id"], path, nsg_edit))

    # The policy of a firewall that SNATs always: RFC 1918 ranges as private ranges, and it SNATs no endpoint.
    path, pol = _first(folder, "firewallPolicies",
                       lambda p: p["properties"].get("snat", {}).get("privateRanges") == ["255.255.255.255/32"]
                       and bool(p["properties"].get("firewalls")))

    def pol_edit(item: dict[str, Any], bad: bool) -> None:
        item["properties"]["snat"]["privateRanges"] = SNAT_NEVER if bad else ["255.255.255.255/32"]
    out.append(Mutation("firewall policy", pol["id"], KIND_CHECKS["firewall policy"],
                        pol["properties"]["firewalls"][0]["id"], path, pol_edit))

    path, pls = _first(folder, "privateLinkServices",
                       lambda p: "*" not in p["properties"]["autoApproval"]["subscriptions"]
                       and "*" not in p["properties"]["visibility"]["subscriptions"]
                       and set(p["properties"]["autoApproval"]["subscriptions"])
                       <= set(p["properties"]["visibility"]["subscriptions"]))
    auto = pls["properties"]["autoApproval"]["subscriptions"]

    def pls_edit(item: dict[str, Any], bad: bool, auto: list[str] = auto) -> None:
        item["properties"]["autoApproval"]["subscriptions"] = ["*"] if bad else auto
    out.append(Mutation("private link service", pls["id"], KIND_CHECKS["private link service"], pls["id"], path,
                        pls_edit))

    target = flip_target(folder)

    def paas_edit(item: dict[str, Any], bad: bool) -> None:
        item["properties"]["publicNetworkAccess"] = "Enabled" if bad else "Disabled"
        item["properties"].setdefault("networkAcls", {})["defaultAction"] = "Allow" if bad else "Deny"
    out.append(Mutation("paas target", target, PUBLIC_CHECK, target, _arm_file(folder, target), paas_edit))
    return out


def cpu_ticks(pid: int) -> int:
    """User + system CPU of ``pid`` so far, in clock ticks (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_kinds_config(path: Path, hook_url: str) -> Path:
    """The daemon's config for the kinds run: every severity, only the checks the mutations trip."""
    path.write_text(yaml.safe_dump({
        "state": {"url": f"sqlite:///{path.parent / 'state.db'}"},
        "server": {"secret": SECRET, "max_body_bytes": 16 * 1024 * 1024},
        # One alert per request (a burst of more than digest_threshold a minute would go out as one digest).
        "alerts": [{"type": "webhook", "name": "bench", "url": hook_url, "secret": "k", "min_severity": "info",
                    "checks": sorted(set(KIND_CHECKS.values())), "digest_threshold": 1_000_000}],
        "schedule": {"full_collection": "24h", "delivery_interval": "1s"},
    }))
    return path


def _quiet(rec: Receiver, seconds: float, timeout: float) -> None:
    """Wait until no alert arrived for ``seconds`` (the first collection's alerts are delivered), or the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with rec.cond:
            last = rec.got[-1][0] if rec.got else 0.0
        if time.monotonic() - last >= seconds:
            return
        time.sleep(0.2)


def _backlog(rec: Receiver, muts: list[Mutation], ready: float, first_post: float) -> dict[str, Any]:
    """The first collection's alerts (every alert not about a mutated subject): how many, how many still
    arrived after the first event was posted, and when the last arrived (seconds after readiness)."""
    subjects = {(m.check, m.subject.lower()) for m in muts}
    with rec.cond:
        times = [at for at, a in rec.got
                 if (a.get("data", {}).get("check_id"), str(a.get("data", {}).get("resource_id", "")).lower())
                 not in subjects]
    return {"alerts": len(times), "after_first_event": sum(1 for t in times if first_post and t > first_post),
            "last_after_ready_s": (max(times) - ready) if times else None}


def _quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if len(ordered) >= 2:
        q = statistics.quantiles(ordered, n=100, method="inclusive")
        p50, p99 = q[49], q[98]
    else:
        p50 = p99 = ordered[0]
    return {"p50_ms": p50 * 1000, "p99_ms": p99 * 1000, "max_ms": ordered[-1] * 1000}


def _reeval_figures(steps: list[dict[str, float]]) -> dict[str, Any]:
    """Re-evaluation CPU per event (the daemon's worker-thread CPU, plmon_reevaluation_cpu_seconds): each event's
    total and phases, the median and p99 of the totals, and the median of each phase."""
    if not steps:
        return {}
    totals = sorted(s["total"] * 1000 for s in steps)
    p99 = statistics.quantiles(totals, n=100, method="inclusive")[98] if len(totals) >= 2 else totals[0]
    return {"reeval_cpu_ms": [s["total"] * 1000 for s in steps], "reeval_cpu_p50_ms": statistics.median(totals),
            "reeval_cpu_p99_ms": p99,
            "reeval_phases_ms": {k: statistics.median(s.get(k, 0.0) * 1000 for s in steps)
                                 for k in steps[0] if k != "total"}}


def measure_kinds(folder: Path, work: Path, *, reps: int, alert_timeout: float = 120, ready_timeout: float = 900,
                  burst: int = 0, distinct: int = 1000, seed: int = 1, drain_timeout: float = 240,
                  only: tuple[str, ...] = ()) -> dict[str, Any]:
    """One daemon run: for each kind in turn, ``reps`` times, open its finding then resolve it; then a burst.

    Every event must bring its alert (opened, then resolved) for the mutated resource: one that does not
    within ``alert_timeout`` is counted missed, and the run goes on. CPU per event is the serve process's
    user + system time from the post to the alert (it includes the alert's delivery and anything else the
    daemon did meanwhile, so it is an upper bound on re-evaluation CPU). Re-evaluation CPU per event is the
    daemon's own account of the worker step (its thread's CPU by phase, from /metrics), which is what issue 14's
    target names: the HTTP intake, logging on other threads and the delivery lanes are not in it.

    The events start as soon as the daemon is ready, while the first collection's alerts (the backlog: every
    finding it opened) are still being delivered: a user who starts or restarts the daemon must see a new bad
    change within seconds all the same. (This run used to wait for two quiet seconds first, which returned at
    once when no alert had arrived yet and otherwise waited for the whole backlog: which of the two it measured
    depended on timing.) ``backlog`` says how many alerts the first collection sent, how many of them arrived
    after the first event was posted, and when the last one arrived, counted from readiness.
    """
    work.mkdir(parents=True, exist_ok=True)
    muts = [m for m in mutations(folder) if not only or m.kind in only]
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, Any] = {"kinds": {}, "load_average_at_start": list(os.getloadavg())}
    with receiver() as rec:
        started = time.perf_counter()
        serve = ServeProcess(folder, write_kinds_config(work / "plmon.yaml", rec.url), ready_timeout=ready_timeout)
        pid = serve.proc.pid
        out["ready_s"] = time.perf_counter() - started
        out["rss_after_first_collection_mb"] = rss_mb(pid)
        out["peak_rss_first_collection_mb"] = rss_mb(pid, "VmHWM")
        out["cpu_first_collection_s"] = cpu_ticks(pid) / tick
        ready, first_post = time.monotonic(), 0.0
        try:
            for m in muts:
                lat: list[float] = []
                cpu: list[float] = []
                reeval: list[dict[str, float]] = []
                missed = 0
                for _ in range(reps):
                    if missed:
                        break  # the daemon did not see this kind's change: the next reps would not either
                    for bad in (True, False):
                        kind = "io.plmon.finding.opened" if bad else "io.plmon.finding.resolved"
                        before = len(rec.got)
                        m.apply(bad)
                        s0 = samples(serve.client, serve.base)
                        c0 = cpu_ticks(pid)
                        sent = time.monotonic()
                        first_post = first_post or sent
                        if serve.post([m.event()]).status_code != 200:
                            missed += 1
                            continue
                        at = rec.wait_for(lambda a, k=kind, m=m: a.get("type") == k
                                          and a["data"].get("check_id") == m.check
                                          and str(a["data"].get("resource_id", "")).lower() == m.subject.lower(),
                                          before, alert_timeout)
                        if at is None:
                            missed += 1
                            m.apply(False)
                            break
                        lat.append(at - sent)
                        cpu.append((cpu_ticks(pid) - c0) / tick)
                        phases = reeval_cpu(serve.client, serve.base, s0, 1)
                        if phases is not None:
                            reeval.append(phases)
                out["kinds"][m.kind] = {"check": m.check, "resource": m.resource_id, "events": len(lat) + missed,
                                        "alerts": len(lat), "missed": missed, "latencies_ms": [x * 1000 for x in lat],
                                        "cpu_ms": [x * 1000 for x in cpu],
                                        **(_quantiles(lat) if lat else {}),
                                        **({"cpu_per_event_ms": statistics.mean(cpu) * 1000} if cpu else {}),
                                        **_reeval_figures(reeval)}
            out["rss_after_events_mb"] = rss_mb(pid)
            out["load_average_after_events"] = list(os.getloadavg())
            _quiet(rec, 2.0, 600)
            out["backlog"] = _backlog(rec, muts, ready, first_post)
            if burst:
                out["burst"] = run_burst(serve, folder, work, burst=burst, distinct=distinct, seed=seed,
                                         drain_timeout=drain_timeout)
        finally:
            serve.stop()
            for m in muts:  # leave the tenant as it was, whatever happened
                with contextlib.suppress(Exception):
                    m.apply(False)
    return out
