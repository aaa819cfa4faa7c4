"""A one-off measurement of incremental evaluation per event (issue 14 item 3; not in make test or make bench).

Loads a recorded tenant (default /tmp/t100k) as the daemon does (collect, link the typed units, a full
evaluation through checks.incremental.Units), then for each event kind mutates one resource in an overlay of the
reader (the folder stays read-only), re-reads it through the daemon's path (reevaluate.reread_into), rebuilds, and
times ``Units.update`` (CPU, process time) apart from the rebuild. With --verify each event's result is compared
with a full evaluation of the new snapshot. Usage: python bench/units_events.py [DIR] [--runs N] [--verify]
[--profile KIND,KIND]

Figures on /tmp/t100k (2 cores shared with other jobs; process CPU of Units.update, median (min-max) of 3 runs):
- before the umem lane (units lane report; a 2-run check here agreed): max RSS 969 MB after the build, 1,746 MB
  after Units.full; full evaluation under Units 13.7-18 s CPU; per event: endpoint 164 ms, route table 271,
  subnet policy 249, NSG 51, firewall policy 167, PLS 70, PaaS target 44.
- after (compact read maps, one read per shared entry, per-unit merge, index entries moved only when gained or
  lost): max RSS 893-898 MB after the build, 1,268-1,279 MB after Units.full; full under Units 10.4-11.6 s CPU
  (plain 6.1-7.4); per event: endpoint 84 (82-99), route table 177 (148-217), subnet policy 248 (175-266),
  NSG 30 (30-39), firewall policy 112 (88-121), PLS 72 (63-102), PaaS target 42 (42-53).
- what remains: a hub appliance's SNAT finding is rebuilt whole (path_text for ~9k paths) when any of its
  endpoints' paths move, and a route table / subnet policy event re-derives the paths of every endpoint in the
  peered hub (~1.3k at 100k) for each of the four route indexes.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import resource
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from plmon.checks.engine import evaluate
from plmon.checks.incremental import Units
from plmon.monitor.collect.builder import link, paused_gc, relink
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.service.reevaluate import reread_into

AT = datetime(2026, 12, 1, tzinfo=UTC)


class Overlay:
    """The recorded reader with some responses replaced (what a mutation on disk would make it answer)."""

    def __init__(self, inner: RecordedTenant) -> None:
        self.inner, self.bodies = inner, {}  # type: ignore[var-annotated]

    def get(self, path: str, *, kind: str = "") -> Any:
        key = path.strip("/").lower()
        if key in self.bodies:
            return copy.deepcopy(self.bodies[key])
        for body in self.bodies.values():  # a GET by id answers the item of a mutated list, as ARM would
            for item in body.get("value", ()) if isinstance(body.get("value"), list) else ():
                if isinstance(item, dict) and str(item.get("id", "")).strip("/").lower() == key:
                    return copy.deepcopy(item)
        return self.inner.get(path, kind=kind)


def _list_path(rid: str, type_: str) -> str:
    sub = parse_id(rid).subscription
    return f"subscriptions/{sub}/providers/{type_}"


def _mutations(snap: Any, reader: Overlay) -> dict[str, Callable[[], str]]:
    """One mutation per event kind: each returns the id the event names."""
    def in_list(type_: str, pick: Callable[[dict[str, Any]], bool], change: Callable[[dict[str, Any]], None]
                ) -> Callable[[], str]:
        def run() -> str:
            for sub in sorted(snap.subscriptions):
                path = f"subscriptions/{sub}/providers/{type_}"
                try:
                    body = reader.get(path)
                except Exception:
                    continue
                for item in body.get("value", []):
                    if pick(item):
                        change(item)
                        reader.bodies[path.lower()] = body
                        return str(item["id"])
            raise SystemExit(f"nothing to mutate for {type_}")
        return run

    def flip_status(item: dict[str, Any]) -> None:
        conns = item["properties"].get("privateLinkServiceConnections") or \
            item["properties"].get("manualPrivateLinkServiceConnections")
        st = conns[0]["properties"]["privateLinkServiceConnectionState"]
        st["status"] = "Rejected" if st.get("status") != "Rejected" else "Approved"

    def route_hop(item: dict[str, Any]) -> None:
        r = item["properties"]["routes"][0]["properties"]
        r["nextHopIpAddress"] = "10.255.255.254" if r.get("nextHopIpAddress") != "10.255.255.254" else "10.0.0.4"

    def subnet_policy(item: dict[str, Any]) -> None:
        for s in item["properties"].get("subnets", []):
            p = s["properties"]
            p["privateEndpointNetworkPolicies"] = "Disabled" if p.get("privateEndpointNetworkPolicies") == \
                "Enabled" else "Enabled"
            return

    def nsg_rule(item: dict[str, Any]) -> None:
        item["properties"].setdefault("securityRules", []).append({
            "name": f"r{time.time_ns()}", "properties": {
                "direction": "Inbound", "access": "Deny", "priority": 4000, "protocol": "*",
                "sourceAddressPrefix": "VirtualNetwork", "destinationAddressPrefix": "*",
                "sourcePortRange": "*", "destinationPortRanges": ["1", "2"]}})

    def fw_policy(item: dict[str, Any]) -> None:
        snat = item["properties"].setdefault("snat", {})
        snat["privateRanges"] = ["255.255.255.255/32"] if snat.get("privateRanges") != ["255.255.255.255/32"] \
            else ["IANAPrivateRanges"]

    def pls_visibility(item: dict[str, Any]) -> None:
        vis = item["properties"].setdefault("visibility", {})
        vis["subscriptions"] = ["*"] if vis.get("subscriptions") != ["*"] else []

    def paas(reader: Overlay) -> Callable[[], str]:
        def run() -> str:
            for _key, t in sorted(snap.targets.items()):
                if t.state == "read" and t.has_public_network_access:
                    path = t.id.raw.strip("/")
                    body = reader.get(path)
                    props = body.setdefault("properties", {})
                    props["publicNetworkAccess"] = "Disabled" if props.get("publicNetworkAccess") != "Disabled" \
                        else "Enabled"
                    reader.bodies[path.lower()] = body
                    return t.id.raw
            raise SystemExit("no PaaS target")
        return run

    def has(key: str) -> Callable[[dict[str, Any]], bool]:
        return lambda item: bool(item.get("properties", {}).get(key))

    return {
        "private_endpoint": in_list("Microsoft.Network/privateEndpoints", has("privateLinkServiceConnections"),
                                    flip_status),
        "route_table": in_list("Microsoft.Network/routeTables", has("routes"), route_hop),
        "subnet_policy": in_list("Microsoft.Network/virtualNetworks", has("subnets"), subnet_policy),
        "nsg": in_list("Microsoft.Network/networkSecurityGroups", lambda i: True, nsg_rule),
        "firewall_policy": in_list("Microsoft.Network/firewallPolicies", lambda i: True, fw_policy),
        "pls": in_list("Microsoft.Network/privateLinkServices", lambda i: True, pls_visibility),
        "paas_target": paas(reader),
    }


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?", default="/tmp/t100k")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--verify", action="store_true")
    ap.add_argument("--profile", default="", help="event kinds (comma-separated) whose updates to profile")
    args = ap.parse_args()
    inner = RecordedTenant(args.folder)
    reader = Overlay(inner)
    t = time.perf_counter()
    inv = collect(reader, manifest=inner.manifest, workers=1)
    snap, links = link(inv, taken_at=AT)
    print(f"load+build {time.perf_counter() - t:.1f} s, max RSS {_rss()} MB", flush=True)
    units = Units()
    c = time.process_time()
    with paused_gc():
        units.full(snap)
    print(f"full evaluation under Units: {time.process_time() - c:.2f} s CPU, max RSS {_rss()} MB", flush=True)
    c = time.process_time()
    with paused_gc():
        evaluate(snap)
    print(f"plain full evaluation: {time.process_time() - c:.2f} s CPU", flush=True)
    times: dict[str, list[float]] = {}
    rebuild: dict[str, list[float]] = {}
    for run in range(args.runs):
        for kind, mutate in _mutations(snap, reader).items():
            rid = mutate()
            c = time.process_time()
            inv, result = reread_into(reader, inv, [parse_id(rid)])
            new, links = relink(snap, links, inv, result.touched, taken_at=AT)
            rebuild.setdefault(kind, []).append(time.process_time() - c)
            gc.collect()
            c = time.process_time()
            with paused_gc():
                if kind in args.profile.split(","):
                    import cProfile
                    import pstats
                    prof = cProfile.Profile()
                    ev, report = prof.runcall(units.update, snap, new, links.changed)
                    pstats.Stats(prof).sort_stats("tottime").print_stats(18)
                else:
                    ev, report = units.update(snap, new, links.changed)  # as the daemon: relink's hint
            spent = time.process_time() - c
            times.setdefault(kind, []).append(spent)
            print(f"run {run} {kind:17s} update {spent * 1000:8.1f} ms CPU  changed={report.changed} "
                  f"subjects={report.subjects} whole={','.join(report.whole)}", flush=True)
            if args.verify:
                want = evaluate(new)
                same = [f.to_dict() for f in ev.findings] == [f.to_dict() for f in want.findings]
                print(f"    identical to a full evaluation: {same}", flush=True)
            snap = new
    print(json.dumps({k: {"median_ms": round(statistics.median(v) * 1000, 1), "min_ms": round(min(v) * 1000, 1),
                          "max_ms": round(max(v) * 1000, 1),
                          "rebuild_median_ms": round(statistics.median(rebuild[k]) * 1000, 1)}
                      for k, v in times.items()}, indent=1))


if __name__ == "__main__":
    main()
