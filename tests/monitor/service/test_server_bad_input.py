"""The webhook on bodies from outside trials: a body nested 100,000 deep is a 400 with its reason, never a 5xx.

(Lone surrogates in an event's fields are already rejected per item with a reason: tests/monitor/events/test_parse.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from daemonkit import config, receiver, serving, tenant


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("server")
    with receiver() as rec, serving(tenant(tmp / "t"), config(rec.url), tmp / "state.db") as running:
        yield running


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"a":' * 100_000])
def test_deeply_nested_body_is_400_with_reason(srv: Any, raw: bytes) -> None:
    """A body nested 100,000 deep is a 400 saying so, and the server keeps serving."""
    r = srv.post(None, raw=raw, content_type="application/json")
    assert r.status_code == 400 and "nested too deeply" in r.json()["error"]
    assert srv.client.get(f"{srv.base}/healthz").status_code == 200

