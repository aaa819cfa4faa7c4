"""The webhook on bodies from outside trials: deep nesting and lone surrogates get a 4xx or a 200, never a 5xx."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemonkit import config, event, receiver, serving, tenant


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("server")
    with receiver() as rec, serving(tenant(tmp / "t"), config(rec.url), tmp / "state.db") as running:
        yield running


def _metric(srv: Any, name: str) -> float:
    text = srv.client.get(f"{srv.base}/metrics").text
    return float(next(ln for ln in text.splitlines() if ln.startswith(name)).split()[-1])


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"a":' * 100_000])
def test_deeply_nested_body_is_400_with_reason(srv: Any, raw: bytes) -> None:
    """A body nested 100,000 deep is a 400 saying so, and the server keeps serving."""
    r = srv.post(None, raw=raw, content_type="application/json")
    assert r.status_code == 400 and "nested too deeply" in r.json()["error"]
    assert srv.client.get(f"{srv.base}/healthz").status_code == 200


def test_event_with_lone_surrogates_is_queued(srv: Any, tmp_path: Path) -> None:
    """An event whose id and subject hold lone surrogate escapes is accepted (200) and queued, not a 5xx:
    the queue (SQLite, UTF-8) stores the visible escape."""
    before = _metric(srv, "plmon_events_accepted_total")
    item = event(event_id="evt-\ud83d-1")
    item["subject"] += "\udc00"
    raw = json.dumps([item]).encode()  # ensure_ascii: the surrogates travel as \ud83d, \udc00 escapes
    assert b"\\ud83d" in raw
    r = srv.post(None, raw=raw, content_type="application/json")
    assert r.status_code == 200, r.text
    assert _metric(srv, "plmon_events_accepted_total") == before + 1
