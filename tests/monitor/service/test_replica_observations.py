"""A replica loading another process's collection (issue 15) only reads the connection observations its maker
recorded, on Azurite: its load writes no observation row and attaches the maker's first times."""

from __future__ import annotations

from pathlib import Path

import azurite
import pytest

from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.config import parse_config
from plmon.monitor.replay.synth import SynthSpec, generate, write_tenant
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.service.shared_inventory import PointerWatcher, SharedInventory
from plmon.monitor.state.open import intake_beside, open_scaleout, open_store
from plmon.monitor.state.tables import TablesStore

ENV_VAR = "PLMON_TEST_AZURITE"


def test_a_replica_s_load_writes_no_observation_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A collects (recording observations) and publishes; B's load leaves every observation row as A wrote it
    (no observe call, same ETags, no new row) and B's snapshot carries A's first-seen times."""
    write_tenant(generate(SynthSpec(subscriptions=2, endpoints=30, seed=5, bad_share=0.3)), tmp_path / "t")
    url = f"azuretables:///{azurite.unique_prefix()}?connection_string_env={ENV_VAR}"
    env = {ENV_VAR: azurite.connection_string()}
    config = parse_config({"schedule": {"full_collection": "1h"}}, env={})
    daemons, scales = [], []
    for name in ("a", "b"):
        store = open_store(url, environ=env)
        scale = open_scaleout(store, url, env, instance=name)
        assert scale is not None
        scales.append(scale)
        daemons.append(Daemon(config, RecordedTenant(tmp_path / "t"), store, intake_beside(store, url),
                              manifest=RecordedTenant(tmp_path / "t").manifest, channels={},
                              shared=SharedInventory(scale.inventory, instance=name)))
    a, b = daemons
    try:
        a.full_collection()
        assert isinstance(a.store, TablesStore) and a.snapshot is not None
        rows = {e["RowKey"]: e.metadata["etag"] for e in a.store._obs.list_entities()}
        assert rows and len(rows) == len(a.snapshot.observations)
        writes: list[object] = []
        monkeypatch.setattr(b.store, "observe", lambda seen, at: writes.append((seen, at)))
        assert PointerWatcher(b).poll_once() is True and b.snapshot is not None
        assert writes == []
        assert {e["RowKey"]: e.metadata["etag"] for e in a.store._obs.list_entities()} == rows
        assert dict(b.snapshot.observations) == dict(a.snapshot.observations)
    finally:
        for d, s in zip(daemons, scales, strict=True):
            s.close()
            d.intake.close()
            d.store.close()
