"""One plmon instance for the two-process test: writes finding transitions and delivers alerts through a
shared Table store, as two Function instances would. Run as a script; prints a JSON summary on stdout.

Each round it moves one finding a step (opened -> resolved -> opened ...), reading its sequence and
writing with ``expected_seq`` so that a concurrent instance's write makes it re-read and retry, and then
runs one delivery pass. At the end it drains the outbox. Retry waits are short so the test stays fast.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta

from plmon.alerts.delivery import DeliveryWorker, RetryPolicy
from plmon.alerts.outbox import outbox_rows
from plmon.alerts.webhook import WebhookChannel
from plmon.monitor.state.store import ChangeSet, ConflictError, FindingRecord, FindingState
from plmon.monitor.wiring import open_state_url


def step(rec: FindingRecord | None, check_id: str, key: str, now: datetime) -> FindingRecord:
    if rec is None:
        return FindingRecord(check_id=check_id, resource_key=key, resource_id=key, state=FindingState.OPEN,
                             severity="high", first_seen=now, last_seen=now, resolved_at=None, last_alert_at=now,
                             seq=1, finding={"check_id": check_id, "resource_id": key}, channels=("hook",))
    opening = rec.state is FindingState.RESOLVED
    return FindingRecord(check_id=check_id, resource_key=key, resource_id=key,
                         state=FindingState.OPEN if opening else FindingState.RESOLVED, severity="high",
                         first_seen=rec.first_seen, last_seen=now, resolved_at=None if opening else now,
                         last_alert_at=now, seq=rec.seq + 1, finding=rec.finding, channels=("hook",))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--webhook", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--findings", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--name", required=True)
    ap.add_argument("--start-at", type=float, default=0.0)
    args = ap.parse_args()

    store = open_state_url(args.url)
    channel = WebhookChannel("hook", args.webhook, args.secret, timeout=5.0, digest_threshold=10_000)
    worker = DeliveryWorker(store, {"hook": channel},
                            RetryPolicy(max_attempts=20, base=timedelta(milliseconds=20),
                                        cap=timedelta(milliseconds=200), lease=timedelta(seconds=60)))
    while time.time() < args.start_at:  # both instances begin together, so their writes really race
        time.sleep(0.005)
    written: list[str] = []
    conflicts = 0
    delivered = 0
    for r in range(args.rounds):
        key = f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/privateEndpoints/pe-{r % args.findings}"
        while True:
            now = datetime.now(UTC)
            old = store.get_finding("endpoint.test", key.lower())
            new = step(old, "endpoint.test", key.lower(), now)
            kind = "opened" if new.state is FindingState.OPEN else "resolved"
            rows = outbox_rows(new, kind, now, ["hook"], tenant_id="t")
            try:
                store.apply(ChangeSet(findings=[(new, old.seq if old else None)], outbox=rows))
            except ConflictError:
                conflicts += 1
                continue
            written.append(rows[0].alert_id)
            break
        delivered += worker.run_once().delivered
    report = worker.drain(timeout=60, max_wait=0.05)
    delivered += report.delivered
    print(json.dumps({"name": args.name, "written": written, "conflicts": conflicts, "delivered": delivered,
                      "dead": report.dead}))
    store.close()


if __name__ == "__main__":
    main()
