"""The composition root on a shared store (issue 15): ``state.url`` and the environment become the scale-out parts, and
``scale:`` is validated in one line per bad key, as every other section is."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import azurite
import pytest

from plmon.monitor import wiring
from plmon.monitor.config import parse_config
from plmon.monitor.errors import InputError
from plmon.monitor.replay.synth import SynthSpec, generate, write_tenant
from plmon.monitor.state.intake_tables import TablesIntake
from plmon.monitor.state.lease_blob import BlobScheduleLease

ENV_VAR = "PLMON_TEST_AZURITE"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_tenant(generate(SynthSpec(subscriptions=1, endpoints=2, seed=1)), tmp_path / "t")
    return tmp_path / "t"


def test_a_table_store_builds_the_shared_inventory_lease_and_claiming_intake(folder: Path) -> None:
    """azuretables: the daemon gets the shared inventory and the scale-out parts, named by PLMON_INSTANCE_ID (the
    lease holder, the patches' writer, the intake's claimer), with scale:'s lease duration and claim lease, and the
    container PLMON_INVENTORY_CONTAINER names."""
    prefix = azurite.unique_prefix()
    env = {ENV_VAR: azurite.connection_string(), "PLMON_INSTANCE_ID": "pod-7", "HOSTNAME": "not-me",
           "PLMON_INVENTORY_CONTAINER": f"{prefix}-inv"}
    config = parse_config({"state": {"url": f"azuretables:///{prefix}?connection_string_env={ENV_VAR}"},
                           "scale": {"lease_duration": "20s", "event_claim_lease": "45s"}}, env={})
    d = wiring.build_daemon(config, wiring.open_source(folder, env=env), env=env, channels={})
    try:
        assert d.scale is not None and d.shared is not None
        assert d.scale.instance == d.shared.instance == "pod-7" and d.scale.container == f"{prefix}-inv"
        assert isinstance(d.scale.lease, BlobScheduleLease) and d.scale.lease.duration == 20
        assert isinstance(d.intake, TablesIntake) and d.intake.claim_lease == timedelta(seconds=45)
        assert d.intake.claimer.startswith("pod-7/")
    finally:
        assert d.scale is not None
        d.scale.close()
        d.intake.close()
        d.store.close()


def test_a_table_store_gives_readyz_the_fan_out_collection_and_the_runtime_its_shard_threads(folder: Path) -> None:
    """azuretables: /readyz has a ``collection`` key (None before the first), and plmon serve's runtime takes shards
    on scale.shards_in_flight threads beside the holder's drive thread."""
    from plmon.monitor.service.runtime import Runtime

    prefix = azurite.unique_prefix()
    env = {ENV_VAR: azurite.connection_string(), "PLMON_INSTANCE_ID": "pod-1"}
    config = parse_config({"state": {"url": f"azuretables:///{prefix}?connection_string_env={ENV_VAR}"},
                           "scale": {"shards_in_flight": 3}}, env={})
    d = wiring.build_daemon(config, wiring.open_source(folder, env=env), env=env, channels={})
    try:
        _, detail = d.readiness(60)
        assert "collection" in detail and detail["collection"] is None
        rt = Runtime(d, collect_at_start=False)
        rt.start()
        try:
            names = sorted(t.name for t in rt._shard_threads)
            assert names == ["plmon-drive", "plmon-shards_0", "plmon-shards_1", "plmon-shards_2"]
            assert rt.schedule is not None and rt.schedule.fanout is rt.driver is not None
        finally:
            rt.stop(flush_timeout=1.0)
    finally:
        assert d.scale is not None
        d.scale.close()
        d.intake.close()
        d.store.close()


def test_shared_inventory_false_keeps_a_table_store_per_process(folder: Path) -> None:
    """scale.shared_inventory: false is the Table store as before issue 15: no shared part is built."""
    prefix = azurite.unique_prefix()
    env = {ENV_VAR: azurite.connection_string()}
    config = parse_config({"state": {"url": f"azuretables:///{prefix}?connection_string_env={ENV_VAR}"},
                           "scale": {"shared_inventory": False}}, env={})
    d = wiring.build_daemon(config, wiring.open_source(folder, env=env), env=env, channels={})
    try:
        assert d.scale is None and d.shared is None and "instance" not in d.readiness(60)[1]
    finally:
        d.intake.close()
        d.store.close()


def test_instance_id_prefers_the_explicit_then_the_function_then_the_pod_name() -> None:
    assert wiring.instance_id({"PLMON_INSTANCE_ID": "a", "WEBSITE_INSTANCE_ID": "b", "HOSTNAME": "c"}) == "a"
    assert wiring.instance_id({"WEBSITE_INSTANCE_ID": "b", "HOSTNAME": "c"}) == "b"
    assert wiring.instance_id({"HOSTNAME": "c"}) == "c"
    assert wiring.instance_id({}) != wiring.instance_id({})   # no name: one of its own per process


@pytest.mark.parametrize(("scale", "message"), [
    ({"lease_duration": "90s"}, "config: scale.lease_duration: 90s: a blob lease lasts 15 to 60 seconds"),
    ({"lease_renew": "30s"}, "config: scale: lease_renew (30s) must be shorter than lease_duration (30s)"),
    ({"pointer_interval": "0s"}, "config: scale.pointer_interval: must be longer than 0 seconds"),
    ({"leese_duration": "20s"}, "config: scale.leese_duration: unknown key"),
    ({"shard_workers": 0}, "config: scale.shard_workers: "),
    ({"shard_visibility": "0s"}, "config: scale.shard_visibility: must be longer than 0 seconds"),
    ({"shared_inventory": True}, "scale.shared_inventory: needs state.url azuretables://"),
])
def test_bad_scale_keys_are_one_line_errors(scale: dict[str, object], message: str) -> None:
    with pytest.raises(InputError) as err:
        parse_config({"scale": scale}, env={})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_sqlite_config_has_no_shared_mode() -> None:
    assert parse_config({}, env={}).shared is False
    assert parse_config({"state": {"url": "azuretables://acct/p"}}, env={}).shared is True
