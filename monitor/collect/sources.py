"""From the source flags of scan, record, report and serve to an ARM reader and what to read with it.

``--from DIR`` is a recorded tenant; anything else is live ARM through
:class:`~plmon.monitor.collect.azure.live.LiveReader`
(``--arm-endpoint``/``--ca-bundle`` for sovereign clouds, Azure Stack Hub or a replay server). The
subscriptions to read come from ``--subscription``, ``--management-group`` (its descendants) or, by
default, every subscription the identity can list. Retry and budget tuning comes from the environment
(given by :mod:`plmon.monitor.wiring`, which reads it) so the same flags serve a user and a fast test.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plmon.monitor.collect.plan import ArmReader, ReadError
from plmon.monitor.errors import InputError
from plmon.monitor.model.clock import Clock, WallClock, source_clock

__all__ = ["Source", "check_subscriptions", "live_settings_from_env", "open_source"]

_ENV_FLOAT = {
    "PLMON_ARM_READ_TIMEOUT": "read_timeout",
    "PLMON_ARM_CONNECT_TIMEOUT": "connection_timeout",
    "PLMON_ARM_RETRY_BACKOFF": "retry_backoff_factor",
    "PLMON_ARM_RETRY_BACKOFF_MAX": "retry_backoff_max",
}
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass
class Source:
    reader: ArmReader
    manifest: dict[str, Any]
    subscriptions: list[str] | None = None
    workers: int | None = None  # None: plan.default_workers of the subscriptions read
    live: Any = None   # the LiveReader when the source is live, for its request counters
    clock: Clock = field(default_factory=WallClock)  # "now" for first_seen and ages (plmon.monitor.model.clock)

    def close(self) -> None:
        if self.live is not None:
            self.live.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def live_settings_from_env(arm_endpoint: str | None, ca_bundle: str | None, env: Mapping[str, str]) -> Any:
    """LiveSettings with PLMON_ARM_* overrides (timeouts, retries, ``PLMON_ARM_BUDGET=250/25|off``,
    ``PLMON_ARM_TRANSPORT=urllib3|requests``)."""
    from plmon.monitor.collect.azure.live import LiveSettings

    values: dict[str, Any] = {"arm_endpoint": arm_endpoint, "ca_bundle": ca_bundle}
    for name, attr in _ENV_FLOAT.items():
        if env.get(name):
            values[attr] = _positive(name, env[name])
    if env.get("PLMON_ARM_RETRY_TOTAL"):
        raw = env["PLMON_ARM_RETRY_TOTAL"]
        if not raw.isdigit():
            raise InputError(f"PLMON_ARM_RETRY_TOTAL must be a whole number, got {raw!r}")
        values["retry_total"] = int(raw)
    transport = env.get("PLMON_ARM_TRANSPORT", "").strip().lower()
    if transport:
        if transport not in ("urllib3", "requests"):
            raise InputError(f"PLMON_ARM_TRANSPORT must be urllib3 or requests, got {transport!r}")
        values["transport"] = transport
    budget = env.get("PLMON_ARM_BUDGET", "").strip().lower()
    if budget == "off":
        values["budget_capacity"] = None
    elif budget:
        cap, sep, rate = budget.partition("/")
        if not sep:
            raise InputError(f"PLMON_ARM_BUDGET must be CAPACITY/PER_SECOND or off, got {budget!r}")
        values["budget_capacity"] = _positive("PLMON_ARM_BUDGET", cap)
        values["budget_refill"] = _positive("PLMON_ARM_BUDGET", rate)
    return LiveSettings(**values)


def _positive(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise InputError(f"{name} must be a positive number, got {raw!r}")
    return value


def open_source(from_dir: Path | None = None, *, subscriptions: Iterable[str] = (),
                management_group: str | None = None, arm_endpoint: str | None = None,
                ca_bundle: Path | None = None, workers: int | None = None, via: str = "arm",
                environ: Mapping[str, str] | None = None, **_: Any) -> Source:
    """The reader for the chosen flags; bad combinations and unreadable files are InputErrors.

    ``environ`` is the environment :mod:`plmon.monitor.wiring` read (the token, ARM tuning); a live source
    opened without it uses DefaultAzureCredential and the default tuning.

    ``via="resource-graph"`` reads the per-subscription lists through Resource Graph queries
    (:mod:`plmon.monitor.collect.azure.resource_graph`) and everything else through ARM, with one set of request
    counters.
    """
    subs = [s.strip() for s in subscriptions if s and s.strip()]
    for sid in subs:
        if not _GUID.fullmatch(sid):
            # Checked before any read: a typo would otherwise scan nothing and report full coverage.
            shown = sid if sid.isprintable() else repr(sid)  # one line, whatever was typed
            raise InputError(f"--subscription {shown}: not a subscription id (expected a GUID such as "
                             f"00000000-0000-0000-0000-000000000000)")
    if via not in ("arm", "resource-graph"):
        raise InputError(f"--via must be arm or resource-graph, got {via!r}")
    if from_dir is not None:
        if arm_endpoint or ca_bundle:
            raise InputError("--from reads a recorded tenant: it cannot be combined with --arm-endpoint/--ca-bundle")
        if via != "arm":
            raise InputError("--from reads a recorded tenant: --via resource-graph needs live Azure "
                             "(or plmon replay-server)")
        from plmon.monitor.collect.recorded import RecordedTenant

        tenant = RecordedTenant(from_dir)
        # One reader thread unless --workers says otherwise: a local folder has no latency to hide, and at 100k
        # resources 64 threads parsing JSON under one GIL spent a third of the scan's CPU contending for it.
        source = Source(tenant, dict(tenant.manifest), subs or None, workers or 1,
                        clock=source_clock(tenant.manifest))
    else:
        from plmon.monitor.collect.azure.credentials import arm_credential, cloud_name
        from plmon.monitor.collect.azure.live import LiveReader

        if ca_bundle is not None and not Path(ca_bundle).is_file():
            raise InputError(f"--ca-bundle {ca_bundle}: no such file")
        env = environ or {}
        settings = live_settings_from_env(arm_endpoint, str(ca_bundle) if ca_bundle else None, env)
        reader = LiveReader(arm_credential(env), settings)
        source = Source(reader, {"cloud": cloud_name(reader.endpoint)}, subs or None, workers, live=reader)
        if via == "resource-graph":
            from plmon.monitor.collect.azure.resource_graph import ResourceGraphReader

            # Same stats object as the LiveReader's; closing it closes the LiveReader too.
            graph = ResourceGraphReader(reader, subscriptions=subs or None)
            source.reader = source.live = graph
    if subs:
        try:
            check_subscriptions(source.reader, subs)
        except InputError:
            source.close()
            raise
    if management_group:
        try:
            found = group_subscriptions(source.reader, management_group)
        except InputError:
            source.close()
            raise
        source.subscriptions = sorted({*(source.subscriptions or []), *found}, key=str.lower)
        if via == "resource-graph" and from_dir is None:  # the Resource Graph reader queries exactly these
            source.reader.subscriptions = list(source.subscriptions)  # type: ignore[attr-defined]
    return source


def check_subscriptions(reader: ArmReader, subs: list[str]) -> None:
    """Every ``--subscription`` names a subscription this identity can read, or an InputError.

    A subscription missing from the identity's list is read by id (the list may be filtered by rights
    while the subscription itself is readable); one that answers neither would be a scan of nothing that
    claims every scope was read. Only a definite answer (absent from the list and 403/404 by id) is an
    input error: a timeout or a 5xx leaves the scan to report its gaps.
    """
    try:
        body = reader.get("subscriptions", kind="subscriptions")
        items = body.get("value") if isinstance(body, dict) else None
        listed = {str(i["subscriptionId"]).lower() for i in items if isinstance(i, dict)
                  and isinstance(i.get("subscriptionId"), str)} if isinstance(items, list) else set()
    except ReadError:
        listed = set()
    for sid in subs:
        if sid.lower() in listed:
            continue
        try:
            found = reader.get(f"subscriptions/{sid}", kind="subscriptions")
        except ReadError as err:
            if err.status in (401, 403, 404):
                raise InputError(f"--subscription {sid}: not a subscription this identity can read "
                                 f"({err.status} {err.code})") from None
            continue
        if not (isinstance(found, dict) and str(found.get("subscriptionId", "")).lower() == sid.lower()):
            raise InputError(f"--subscription {sid}: not in the tenant's subscription list and not readable by id")


def group_subscriptions(reader: ArmReader, group: str) -> list[str]:
    """Every subscription below a management group (its descendants), for ``--management-group``."""
    path = f"providers/Microsoft.Management/managementGroups/{group}/descendants"
    try:
        body = reader.get(path, kind="managementGroupDescendants")
    except ReadError as err:
        raise InputError(f"--management-group {group}: cannot list its subscriptions "
                         f"({err.status or 'no answer'} {err.code})") from None
    items = body.get("value") if isinstance(body, dict) else None
    subs = [i["name"] for i in items if isinstance(i, dict) and isinstance(i.get("name"), str)
            and str(i.get("type", "")).lower().endswith("/subscriptions")] if isinstance(items, list) else []
    if not subs:
        raise InputError(f"--management-group {group}: it holds no subscription this identity can see")
    return subs
