"""One replica writing the patch index for the two-process test: random (resource, read time) re-reads recorded
through :class:`plmon.monitor.state.inventory_blob.BlobInventoryStore`, as two replicas publishing patches would.
Run as a script; prints a JSON list of what it wrote on stdout.

Read times come from a small range, so both processes often write the same resource, and sometimes the same
read time (then the instance name decides): the races the newest-read-wins loop must survive.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from datetime import UTC, datetime

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from plmon.monitor.state.inventory_blob import BlobInventoryStore
from plmon.monitor.state.scaleout import PatchRef, container_name

ENDPOINTS = "/subscriptions/s/resourcegroups/rg/providers/microsoft.network/privateendpoints"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conn-env", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--writes", type=int, default=200)
    ap.add_argument("--keys", type=int, default=12)
    ap.add_argument("--start-at", type=float, default=0.0)
    args = ap.parse_args()

    conn = os.environ[args.conn_env]
    store = BlobInventoryStore(
        BlobServiceClient.from_connection_string(conn).get_container_client(container_name(args.prefix)),
        TableServiceClient.from_connection_string(conn).create_table_if_not_exists(f"{args.prefix}patches"))
    rng = random.Random(args.seed)
    while time.time() < args.start_at:  # both processes begin together, so their writes really race
        time.sleep(0.005)
    wrote: list[list[object]] = []
    for _ in range(args.writes):
        key = f"{ENDPOINTS}/pe-{rng.randrange(args.keys)}"
        read_at = 1_764_000_000_000 + rng.randrange(400)
        ref = PatchRef(resource_key=key, read_at_ms=read_at, instance=args.name,
                       blob=f"patches/{read_at}-{args.name}.z", collection="c1")
        newest = store.record_patch(ref, datetime.now(UTC))
        wrote.append([key, read_at, args.name, newest])
    print(json.dumps(wrote))
    store.close()


if __name__ == "__main__":
    main()
