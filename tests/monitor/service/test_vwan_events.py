"""The daemon on a Virtual WAN tenant (issue 18): an Event Grid event on a hub's child (a hub route table) re-reads
the hub with its connections, routing intent and route tables, and the finding it fixed resolves."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemonkit import config, event
from vwankit import HUB1, vwan_tenant

from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.state.intake import SqliteIntake
from plmon.monitor.state.sqlite import SqliteStore
from plmon.monitor.state.store import FindingState

PREFIXES = "vwan.private-prefixes-miss-endpoint"
TABLE = f"{HUB1}/hubRouteTables/defaultRouteTable"


def test_hub_route_table_event_resolves_the_prefix_finding(tmp_path: Path) -> None:
    """hub1 gains 100.64.0.0/10 as a private prefix; the write event on its defaultRouteTable re-reads hub1 (one
    re-read, not irrelevant) and vwan.private-prefixes-miss-endpoint resolves."""
    folder = vwan_tenant(tmp_path / "t")
    db = tmp_path / "state.db"
    d = Daemon(config("http://127.0.0.1:9/unused"), RecordedTenant(folder), SqliteStore(db), SqliteIntake(db),
               channels={})
    d.full_collection()
    assert d.store.get_finding(PREFIXES, TABLE.lower()).state == FindingState.OPEN
    path = folder / "arm" / f"{HUB1.strip('/')}/hubRouteTables.json"
    body = json.loads(path.read_text())
    body["value"][0]["properties"]["routes"].append({
        "name": "private_traffic", "destinationType": "CIDR", "destinations": ["100.64.0.0/10"],
        "nextHopType": "ResourceId", "nextHop": body["value"][0]["properties"]["routes"][0]["nextHop"]})
    path.write_text(json.dumps(body))
    d.accept(json.dumps([event(TABLE, op="Microsoft.Network/virtualHubs/hubRouteTables/write",
                               when=datetime.now(UTC) + timedelta(seconds=1))]).encode(), "application/json")
    report = d.process_pending()
    assert report.events == 1 and report.ignored == 0 and report.rereads == 1
    assert d.store.get_finding(PREFIXES, TABLE.lower()).state == FindingState.RESOLVED
