"""Daemons built as ``plmon serve`` builds them (``wiring.build_daemon``), several on one Azurite prefix: what the
schedule and fan-out tests share. Each is closed (scale-out parts, intake, store) when the test ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import azurite

from plmon.monitor import wiring
from plmon.monitor.config import Config
from plmon.monitor.service.daemon import Daemon
from plmon.monitor.state.scaleout import ScaleOut

ENV_VAR = "PLMON_TEST_AZURITE"


def scale_of(d: Daemon) -> ScaleOut:
    assert d.scale is not None
    return d.scale


@contextmanager
def daemons_on_one_prefix(tenant: Path, config: Callable[..., Config]) -> Iterator[Callable[..., Daemon]]:
    """``make(instance, other_prefix=False, **scale)``: a daemon under its own instance id on the shared prefix (or
    a fresh one, for a reference collection), its config ``config(prefix, **scale)``."""
    prefix = azurite.unique_prefix()
    made: list[Daemon] = []

    def make(instance: str, *, other_prefix: bool = False, **scale: Any) -> Daemon:
        env = {ENV_VAR: azurite.connection_string(), "PLMON_INSTANCE_ID": instance}
        cfg = config(azurite.unique_prefix() if other_prefix else prefix, **scale)
        daemon = wiring.build_daemon(cfg, wiring.open_source(tenant, env=env), env=env, channels={})
        made.append(daemon)
        return daemon

    try:
        yield make
    finally:
        for d in made:
            scale_of(d).close()
            d.intake.close()
            d.store.close()
