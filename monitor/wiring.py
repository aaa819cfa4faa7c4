"""The one composition root: configuration and the process environment become the parts plmon runs.

Every entry point (the CLI commands, ``plmon serve``, the Azure Function) builds its source, state store,
intake queue, alert channels, retry policy, daemon and logging here and nowhere else, so a setting one
entry point honours cannot be silently dropped by another (``delivery:`` once was, by ``serve`` and the
Function). It is also the only module that reads the process environment (besides ``${VAR}`` expansion in
:mod:`plmon.monitor.config`): every other module takes the values it needs as arguments.

Environment variables read here:
- ``PLMON_LOG_LEVEL``, ``PLMON_LOG_FORMAT``: logging (default ``warning``; ``json`` unless on a terminal);
- ``PLMON_ARM_TOKEN`` and ``PLMON_ARM_*`` tuning (:func:`plmon.monitor.collect.sources.live_settings_from_env`);
- the Table Storage connection string a ``state.url`` names (``PLMON_TABLES_CONNECTION_STRING`` or the
  variable its ``connection_string_env`` names);
- scale-out (a Table store shared by several processes, ``scale:``): ``PLMON_INSTANCE_ID`` (else
  ``WEBSITE_INSTANCE_ID``, the Function instance's, else ``HOSTNAME``, a pod's name) names this process as the
  schedule lease's holder and the intake's claimer; ``PLMON_INVENTORY_CONTAINER`` and ``PLMON_SHARD_QUEUE`` override
  the names derived from the Table prefix;
- the Function's app settings: ``PLMON_CONFIG``, ``PLMON_FROM``, ``PLMON_SUBSCRIPTIONS``,
  ``PLMON_MANAGEMENT_GROUP``, ``PLMON_ARM_ENDPOINT``, ``PLMON_CA_BUNDLE``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from plmon.monitor.collect.sources import Source
from plmon.monitor.collect.sources import open_source as _open_source
from plmon.monitor.logs import configure_logging

if TYPE_CHECKING:
    from plmon.alerts.channel import Channel
    from plmon.alerts.delivery import DeliveryWorker, RetryPolicy
    from plmon.alerts.outbox import Route
    from plmon.monitor.config import Config
    from plmon.monitor.service.daemon import Daemon
    from plmon.monitor.state.intake import IntakeQueue
    from plmon.monitor.state.scaleout import ScaleOut
    from plmon.monitor.state.store import StateStore

# The daemon, the state store and the alert channels are imported by the functions that build them: `plmon scan`
# needs only a source and logging from here, and importing the daemon's modules was ~0.15 s of its start-up.

__all__ = ["FunctionSettings", "build_daemon", "channels", "delivery_worker", "environment", "function_daemon",
           "instance_id", "open_intake", "open_scale", "open_source", "open_state", "open_state_url", "retry_policy",
           "routes", "setup_logging"]


def environment(env: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """The environment the parts are built from: ``env`` when a caller (a test) gives one, else the process's."""
    return os.environ if env is None else env


def setup_logging(env: Mapping[str, str] | None = None, *, level: str | None = None, fmt: str | None = None,
                  sink: Literal["stderr", "logging"] = "stderr") -> None:
    """structlog with its secret-redacting processor, for every entry point (the Function included).

    ``sink="logging"`` hands each rendered line to the standard library's logging, which is what the Azure
    Functions host collects; the CLI and ``plmon serve`` write to stderr."""
    e = environment(env)
    configure_logging(level or e.get("PLMON_LOG_LEVEL") or None, fmt or e.get("PLMON_LOG_FORMAT") or None,
                      sink=sink)


def open_source(from_dir: Path | None = None, *, env: Mapping[str, str] | None = None, **flags: Any) -> Source:
    """The reader for the source flags (``--from`` or live options), with the identity and ARM tuning
    the environment gives (see :mod:`plmon.monitor.collect.sources`)."""
    return _open_source(from_dir, environ=environment(env), **flags)


def open_state_url(url: str, env: Mapping[str, str] | None = None, *, create: bool = True) -> StateStore:
    """The state store a URL names (a Table Storage URL may take its connection string from the environment);
    ``create=False`` for commands that only read state: a missing SQLite file is an InputError, not a new file."""
    from plmon.monitor.state.open import open_store
    return open_store(url, environment(env), create=create)


def open_state(config: Config, env: Mapping[str, str] | None = None, *, create: bool = True) -> StateStore:
    """The configured state store (``state.url``)."""
    return open_state_url(config.state.url, env, create=create)


def open_intake(store: StateStore, config: Config, *, claimer: str | None = None) -> IntakeQueue:
    """The daemon's intake queue beside ``store`` (its tables, or the same SQLite file).

    A Table intake is shared by every process on the store: it claims an event for ``scale.event_claim_lease``
    under ``claimer`` (the instance id with scale-out, so a restarted replica's name reads back in the table)."""
    from plmon.monitor.state.open import intake_beside
    from plmon.monitor.state.tables import TablesStore
    if isinstance(store, TablesStore):
        from plmon.monitor.state.intake_tables import TablesIntake
        return TablesIntake(store.service, store.prefix, claim_lease=config.scale.event_claim_lease, claimer=claimer)
    return intake_beside(store, config.state.url)


def instance_id(env: Mapping[str, str] | None = None) -> str:
    """This process's name among the replicas: ``PLMON_INSTANCE_ID``, the Function's ``WEBSITE_INSTANCE_ID``, a pod's
    ``HOSTNAME``, else the host name and a random suffix (two processes on one host must not share a name)."""
    e = environment(env)
    for var in ("PLMON_INSTANCE_ID", "WEBSITE_INSTANCE_ID", "HOSTNAME"):
        if e.get(var):
            return e[var]
    import socket
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


def open_scale(store: StateStore, config: Config, env: Mapping[str, str] | None = None, *,
               instance: str | None = None) -> ScaleOut | None:
    """The shared inventory, schedule lease, shard queue and collection book beside a Table store, or None: SQLite,
    or ``scale.shared_inventory: false`` (each process collects for itself, as before issue 15)."""
    if not config.shared:
        return None
    from plmon.monitor.state.open import open_scaleout
    from plmon.monitor.state.scaleout import INVENTORY_CONTAINER_ENV, SHARD_QUEUE_ENV
    e = environment(env)
    return open_scaleout(store, config.state.url, e, instance=instance or instance_id(e),
                         lease_duration=config.scale.lease_duration,
                         container=e.get(INVENTORY_CONTAINER_ENV) or None, queue=e.get(SHARD_QUEUE_ENV) or None)


def retry_policy(config: Config) -> RetryPolicy:
    """``delivery:`` as the retry policy every delivery worker uses (see :meth:`RetryPolicy.from_config`)."""
    from plmon.alerts.delivery import RetryPolicy
    return RetryPolicy.from_config(config)


def channels(config: Config, env: Mapping[str, str] | None = None) -> dict[str, Channel]:
    """The configured alert channels by name; a channel that sends to Azure (azure-monitor) gets the identity plmon
    reads Azure with (``PLMON_ARM_TOKEN``, else DefaultAzureCredential), made on its first send."""
    from plmon.alerts.channel import ChannelContext, build_channels
    e = environment(env)

    def credential() -> Any:
        from plmon.monitor.collect.azure.credentials import arm_credential
        return arm_credential(e)
    return build_channels(config.alerts, ChannelContext(credential=credential))


def routes(config: Config) -> tuple[Route, ...]:
    """Which channel gets which finding (each channel's ``min_severity``, ``checks`` and ``subscriptions``)."""
    from plmon.alerts.outbox import routes_from_config
    return routes_from_config(config.alerts)


def delivery_worker(store: StateStore, config: Config) -> DeliveryWorker:
    """The outbox's delivery worker for commands that deliver without a daemon (``scan --notify``, ``alerts``)."""
    from plmon.alerts.delivery import DeliveryWorker
    return DeliveryWorker(store, channels(config), retry_policy(config))


def build_daemon(config: Config, source: Source, *, store: StateStore | None = None,
                 env: Mapping[str, str] | None = None, **options: Any) -> Daemon:
    """The daemon core for ``plmon serve`` and the Function, built the same way for both.

    ``store`` is the already-open state store when the caller has one; otherwise ``state.url`` is opened.
    ``options`` are the daemon's test seams (``clock``, ``retry_policy``, ``channels``, ``metrics``).

    On a Table store shared by several processes (:func:`open_scale`) the daemon gets the shared inventory and the
    scale-out parts (``daemon.scale``: the runtime or the Function closes them)."""
    from plmon.monitor.service.daemon import Daemon
    store = store if store is not None else open_state(config, env)
    scale: ScaleOut | None = None
    try:
        scale = open_scale(store, config, env)
        # The claimer names this process, not only its instance: two processes of one host must not take each
        # other's claims (a pod's HOSTNAME is its own, but a test or a second worker shares it).
        intake = open_intake(store, config, claimer=f"{scale.instance}/{uuid.uuid4().hex[:6]}"
                             if scale is not None else None)
    except BaseException:
        if scale is not None:
            scale.close()
        store.close()
        raise
    parts: dict[str, Any] = {"channels": channels(config, env), "retry_policy": retry_policy(config), **options}
    if scale is not None:
        from plmon.monitor.service.shared_inventory import SharedInventory
        parts["scale"] = scale
        parts.setdefault("shared", SharedInventory(scale.inventory, instance=scale.instance))
    daemon = Daemon(config, source.reader, store, intake, manifest=source.manifest, workers=source.workers,
                    subscriptions=source.subscriptions, **parts)
    if scale is not None:   # /readyz's ``collection``: the fan-out's current row and its shards
        from plmon.monitor.service.fanout import CollectionStatus
        daemon.collection_status = CollectionStatus(scale.book)
    return daemon


@dataclass(frozen=True, slots=True)
class FunctionSettings:
    """The Function's app settings: where its config is and what it reads (see :mod:`plmon.monitor.function_host`)."""

    config_path: str | None = None
    from_dir: Path | None = None
    subscriptions: tuple[str, ...] = ()
    management_group: str | None = None
    arm_endpoint: str | None = None
    ca_bundle: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FunctionSettings:
        from_dir, ca = env.get("PLMON_FROM"), env.get("PLMON_CA_BUNDLE")
        return cls(config_path=env.get("PLMON_CONFIG") or None, from_dir=Path(from_dir) if from_dir else None,
                   subscriptions=tuple(s.strip() for s in env.get("PLMON_SUBSCRIPTIONS", "").split(",") if s.strip()),
                   management_group=env.get("PLMON_MANAGEMENT_GROUP") or None,
                   arm_endpoint=env.get("PLMON_ARM_ENDPOINT") or None, ca_bundle=Path(ca) if ca else None)


def function_daemon(env: Mapping[str, str] | None = None, **options: Any) -> tuple[Config, Daemon]:
    """Config and daemon of one Function instance, from its app settings; logging set up first, so that
    even a failure to build reaches the Functions host's log with secrets redacted."""
    e = environment(env)
    setup_logging(e, fmt=e.get("PLMON_LOG_FORMAT") or "json", sink="logging")
    settings = FunctionSettings.from_env(e)
    from plmon.monitor.config import load_config  # here: plmon scan needs no validator (scan.DEFAULTS)

    config = load_config(settings.config_path, env=dict(e))
    source = open_source(settings.from_dir, env=e, subscriptions=settings.subscriptions,
                         management_group=settings.management_group, arm_endpoint=settings.arm_endpoint,
                         ca_bundle=settings.ca_bundle)
    try:
        return config, build_daemon(config, source, env=e, **options)
    except BaseException:
        source.close()
        raise
