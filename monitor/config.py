"""Configuration: the YAML of contracts.md, validated at start with an error that names the bad key.

Read once at the edge (CLI, daemon, Function) and passed down; nothing reads the environment later.
``${VAR}`` references are expanded from the environment here; values that hold secrets are kept as
``SecretStr`` so that they never print in logs, errors or reports.
"""

from __future__ import annotations

import os
import re
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from plmon.checks.engine import CheckSettings
from plmon.checks.finding import Severity
from plmon.checks.registry import all_checks, parse_duration
from plmon.checks.waivers import Waiver
from plmon.monitor.errors import InputError

if TYPE_CHECKING:
    from plmon.monitor.scope import Scope

__all__ = ["AlertChannelConfig", "Config", "ScaleConfig", "load_config"]

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Sev = Annotated[Severity, BeforeValidator(Severity.parse)]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# YAML aliases let a few lines stand for billions of values ("billion laughs"); no real config comes near this.
_MAX_VALUES = 100_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StateConfig(_Strict):
    url: str = "sqlite:///plmon-state.db"
    retention: Duration = timedelta(days=90)

    @field_validator("url")
    @classmethod
    def _url_shape(cls, url: str) -> str:
        """Checked here, not first when the store opens, so that an error about a URL from ``${VAR}`` (it may
        hold a SAS or a path that is nobody's business) names the variable instead of printing it."""
        scheme, sep, _ = url.partition("://")
        if not sep:
            raise ValueError(f"{url!r} is not a URL (expected e.g. sqlite:///plmon-state.db)")
        if scheme not in ("sqlite", "azuretables"):
            raise ValueError(f"unsupported scheme in {url!r} (supported: sqlite, azuretables)")
        return url


class AlertChannelConfig(_Strict):
    type: Literal["webhook", "slack", "teams", "azure-monitor"]
    url: SecretStr | None = None               # webhook, slack, teams: where to post (it may hold a token)
    name: str | None = None
    secret: SecretStr | None = None
    # azure-monitor (Logs Ingestion API): the DCE or DCR ingestion URL, the DCR's immutable id, its stream, and a
    # CA bundle for an endpoint behind a private CA (a test receiver, Azure Stack Hub).
    endpoint: str | None = None
    rule_id: str | None = None
    stream: str | None = None
    ca_bundle: Path | None = None
    min_severity: Sev = Severity.MEDIUM
    checks: tuple[str, ...] = ("*",)           # check-id glob patterns
    subscriptions: tuple[str, ...] = ()        # empty: every subscription
    digest_threshold: int = Field(default=20, ge=1)  # alerts per minute before a digest
    timeout: Duration = timedelta(seconds=10)

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> AlertChannelConfig:
        if self.type == "webhook" and self.secret is None:
            raise ValueError("a webhook channel needs 'secret' (alerts are signed with it)")
        if self.type == "webhook" and self.secret is not None:
            _signing_secret(self.secret.get_secret_value())
        return self

    @model_validator(mode="after")
    def _keys_of_the_type(self) -> AlertChannelConfig:
        """Each type's own keys, and no other type's: a key that would be silently ignored is an error."""
        monitor_keys = {"endpoint": self.endpoint, "rule_id": self.rule_id, "stream": self.stream}
        if self.type == "azure-monitor":
            missing = [k for k, v in monitor_keys.items() if not v]
            if missing:
                raise ValueError(f"an azure-monitor channel needs {', '.join(repr(k) for k in missing)}")
            if self.url is not None:
                raise ValueError("an azure-monitor channel takes 'endpoint', not 'url'")
            if not str(self.endpoint).startswith("https://"):
                raise ValueError("an azure-monitor 'endpoint' must be an https URL (a bearer token travels)")
            if self.ca_bundle is not None and not self.ca_bundle.is_file():
                raise ValueError(f"'ca_bundle' {str(self.ca_bundle)!r} is not a file")
        else:
            if self.url is None:
                raise ValueError(f"a {self.type} channel needs 'url'")
            extra = [k for k, v in {**monitor_keys, "ca_bundle": self.ca_bundle}.items() if v is not None]
            if extra:
                raise ValueError(f"{', '.join(repr(k) for k in extra)} only apply to azure-monitor channels")
        return self


def _signing_secret(secret: str) -> None:
    """A secret the Standard Webhooks signature can use: not empty, and a ``whsec_`` one valid base64."""
    if not secret:
        raise ValueError("a webhook 'secret' must not be empty")
    if secret.startswith("whsec_"):
        import base64
        import binascii

        try:
            encoded = secret[6:]
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a 'whsec_' webhook secret must be base64 after the prefix") from None
        if not key:
            raise ValueError("a 'whsec_' webhook secret must not be empty after the prefix")


_OneOrMany = Annotated[tuple[str, ...], BeforeValidator(lambda v: (v,) if isinstance(v, str) else v),
                      Field(min_length=1)]


class EntraConfig(_Strict):
    """Microsoft Entra bearer tokens on the webhook (RS256), checked against these keys only: nothing is
    fetched at request time. Keys: a JWKS file (the tenant's ``discovery/v2.0/keys`` document) and/or PEMs."""

    audience: _OneOrMany
    issuer: _OneOrMany
    jwks_file: Path | None = None
    public_keys: tuple[str, ...] = ()
    leeway: Duration = timedelta(seconds=60)

    @model_validator(mode="after")
    def _needs_keys(self) -> EntraConfig:
        if self.jwks_file is None and not self.public_keys:
            raise ValueError("entra needs 'jwks_file' or 'public_keys' (tokens are checked against them)")
        return self


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    secret: SecretStr | None = None
    # With both secret and entra set, a delivery needs both (adding one never weakens the other).
    entra: EntraConfig | None = None
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # A queued event whose processing keeps failing is retried with backoff (``event_retry_base`` doubling
    # up to ``event_retry_max``), then set aside as failed after ``event_max_attempts``: ``plmon events``.
    event_max_attempts: int = Field(default=5, ge=1, le=100)
    event_retry_base: Duration = timedelta(seconds=5)
    event_retry_max: Duration = timedelta(minutes=10)


class ScheduleConfig(_Strict):
    full_collection: Duration = timedelta(minutes=30)
    reminder_interval: Duration = timedelta(hours=24)
    delivery_interval: Duration = timedelta(seconds=5)
    retention_interval: Duration = timedelta(hours=24)


class ScaleConfig(_Strict):
    """Several replicas (or Function instances) on one Table store (issue 15): one inventory shared through blob
    storage and one schedule held by a blob lease. Ignored for SQLite, which is one process by construction.

    ``lease_duration`` is bounded by what a blob lease allows (15-60 s); the holder renews every
    ``lease_renew``, so a missed renewal or two is not a takeover. ``pointer_interval``: how often a replica looks
    for a newer published collection (and syncs others' patches). ``event_claim_lease``: how long a replica's claim
    on a queued event keeps the others off it (a claimer that dies frees it after this). The ``shard*`` keys and
    ``collection_deadline`` size the fan-out: a shard whose taker dies reappears after ``shard_visibility``; one
    that fails ``shard_max_attempts`` times, or is unfinished at the deadline, becomes a coverage gap."""

    shared_inventory: bool | None = None   # None: on for azuretables, off for sqlite
    lease_duration: Duration = timedelta(seconds=30)
    lease_renew: Duration = timedelta(seconds=10)
    pointer_interval: Duration = timedelta(seconds=5)
    event_claim_lease: Duration = timedelta(seconds=60)
    # Fan-out of a full collection (design 2.3): shards on the shard queue, taken by every replica or instance.
    shards_in_flight: int | None = Field(default=None, ge=1, le=64)   # None: from the tenant size (1..16)
    shard_workers: int = Field(default=4, ge=1, le=32)                  # reads in flight within one shard
    shard_visibility: Duration = timedelta(seconds=60)                  # a taken shard's invisibility, renewed
    shard_timeout: Duration = timedelta(minutes=10)                     # then the attempt is abandoned
    shard_max_attempts: int = Field(default=5, ge=1, le=20)             # = host.json maxDequeueCount; then a gap
    collection_deadline: Duration = timedelta(minutes=20)               # then unfinished shards are gaps

    @field_validator("lease_duration")
    @classmethod
    def _blob_lease_bounds(cls, value: timedelta) -> timedelta:
        if not 15 <= value.total_seconds() <= 60:
            raise ValueError(f"{int(value.total_seconds())}s: a blob lease lasts 15 to 60 seconds")
        return value

    @field_validator("lease_renew", "pointer_interval", "event_claim_lease", "shard_visibility", "shard_timeout",
                     "collection_deadline")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value.total_seconds() <= 0:
            raise ValueError("must be longer than 0 seconds")
        return value

    @model_validator(mode="after")
    def _renew_inside_lease(self) -> ScaleConfig:
        if self.lease_renew >= self.lease_duration:
            raise ValueError(f"lease_renew ({int(self.lease_renew.total_seconds())}s) must be shorter than "
                             f"lease_duration ({int(self.lease_duration.total_seconds())}s)")
        return self


class DeliveryConfig(_Strict):
    """How alerts are retried: exponential backoff from ``backoff_base`` up to ``backoff_max``, then the
    dead letter after ``max_attempts``; ``scan --notify`` waits at most ``notify_timeout`` for delivery."""

    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_base: Duration = timedelta(seconds=5)
    backoff_max: Duration = timedelta(minutes=30)
    notify_timeout: Duration = timedelta(seconds=60)


def _date_not_number(value: Any) -> Any:
    """A waiver date is written as a date: pydantic would read ``20270131`` as seconds since 1970."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"expected a date such as 2027-01-31, got the number {value}")
    return value


class WaiverConfig(_Strict):
    check_id: str
    reason: str = Field(min_length=1)
    expires: Annotated[date | None, BeforeValidator(_date_not_number)] = None
    resource_id: str | None = None
    resource_pattern: str | None = None
    resource_tags: dict[str, str] | None = None  # {owner: partner-team}: every tag must be on the resource

    @model_validator(mode="after")
    def _one_subject(self) -> WaiverConfig:
        subjects = [s for s in (self.resource_id, self.resource_pattern, self.resource_tags) if s is not None]
        if len(subjects) != 1:
            raise ValueError("a waiver needs exactly one of 'resource_id', 'resource_pattern' or 'resource_tags'")
        if self.resource_tags is not None and not self.resource_tags:
            raise ValueError("resource_tags: name at least one tag")
        return self


class ScopeConfig(_Strict):
    """What ``plmon scan`` and ``plmon report`` judge and show by default; their flags override each key."""

    checks: tuple[str, ...] = ()
    exclude_checks: tuple[str, ...] = ()
    severity: tuple[str, ...] = ()
    resource_groups: tuple[str, ...] = ()
    include_tags: dict[str, str | None] = Field(default_factory=dict)   # {env: prod}; a null value: tag present
    exclude_tags: dict[str, str | None] = Field(default_factory=dict)


class DnsConfig(_Strict):
    # Zone name overrides for sovereign clouds, e.g.
    # {"privatelink.blob.core.windows.net": "privatelink.blob.core.usgovcloudapi.net"}
    zone_overrides: dict[str, str] = Field(default_factory=dict)


class Config(_Strict):
    state: StateConfig = StateConfig()
    checks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    waivers: tuple[WaiverConfig, ...] = ()
    scope: ScopeConfig = ScopeConfig()
    alerts: tuple[AlertChannelConfig, ...] = ()
    delivery: DeliveryConfig = DeliveryConfig()
    server: ServerConfig = ServerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    dns: DnsConfig = DnsConfig()
    scale: ScaleConfig = ScaleConfig()

    @model_validator(mode="after")
    def _shared_needs_tables(self) -> Config:
        if self.scale.shared_inventory and not self.state.url.startswith("azuretables://"):
            raise ValueError("scale.shared_inventory: needs state.url azuretables://... (SQLite is one process)")
        return self

    @property
    def shared(self) -> bool:
        """Whether this deployment shares one inventory and one schedule between processes."""
        return self.state.url.startswith("azuretables://") and self.scale.shared_inventory is not False

    def check_settings(self) -> dict[str, CheckSettings]:
        """Per-check settings, validated against the registry (unknown ids and params rejected)."""
        registry = all_checks()
        out: dict[str, CheckSettings] = {}
        for check_id, raw in self.checks.items():
            where = f"plmon.checks.{check_id}"
            if check_id not in registry:
                raise InputError(f"config: {where}: unknown check id (see 'plmon checks')")
            chk = registry[check_id]
            raw = dict(raw or {})
            enabled = raw.pop("enabled", True)
            if not isinstance(enabled, bool):
                raise InputError(f"config: {where}.enabled: expected true or false")
            severity = None
            if "severity" in raw:
                try:
                    severity = Severity.parse(raw.pop("severity"))
                except ValueError as err:
                    raise InputError(f"config: {where}.severity: {err}") from None
            params = {}
            for name, value in raw.items():
                if name not in chk.params:
                    known = ", ".join(["enabled", "severity", *chk.params]) or "enabled, severity"
                    raise InputError(f"config: {where}.{name}: unknown setting (known: {known})")
                try:
                    params[name] = chk.params[name].parse(value)
                except ValueError as err:
                    raise InputError(f"config: {where}.{name}: {err}") from None
            out[check_id] = CheckSettings(enabled=enabled, severity=severity, params=params)
        self._pass_dns_zone_overrides(out, registry)
        return out

    def _pass_dns_zone_overrides(self, out: dict[str, CheckSettings], registry: dict[str, Any]) -> None:
        """``dns.zone_overrides`` (sovereign clouds) becomes the ``zone_overrides`` parameter of every check
        that has one, unless that check's own settings already give it: checks only ever see parameters."""
        if not self.dns.zone_overrides:
            return
        for check_id, chk in registry.items():
            if "zone_overrides" not in chk.params:
                continue
            conf = out.get(check_id, CheckSettings())
            if "zone_overrides" in conf.params:
                continue
            try:
                value = chk.params["zone_overrides"].parse(self.dns.zone_overrides)
            except ValueError as err:
                raise InputError(f"config: dns.zone_overrides: {err}") from None
            out[check_id] = CheckSettings(enabled=conf.enabled, severity=conf.severity,
                                          params={**conf.params, "zone_overrides": value})

    def waiver_list(self) -> tuple[Waiver, ...]:
        return tuple(Waiver(check_id=w.check_id, reason=w.reason, expires=w.expires,
                            resource_id=w.resource_id, resource_pattern=w.resource_pattern,
                            resource_tags=tuple(sorted(w.resource_tags.items())) if w.resource_tags else None)
                     for w in self.waivers)

    def scan_scope(self) -> Scope:
        """The ``scope:`` key as a :class:`~plmon.monitor.scope.Scope` (bad severities named)."""
        from plmon.monitor.scope import Scope, severities

        sc = self.scope
        return Scope(checks=sc.checks, exclude_checks=sc.exclude_checks,
                     severities=severities(sc.severity, "config: scope.severity"),
                     resource_groups=sc.resource_groups, include_tags=tuple(sc.include_tags.items()),
                     exclude_tags=tuple(sc.exclude_tags.items()))


def _expand(value: Any, where: str, env: dict[str, str],
            used: dict[str, list[tuple[str, str]]] | None = None) -> Any:
    """``value`` with ``${VAR}`` replaced from ``env``; ``used`` collects {location: [(VAR, value)]} so that an
    error about an expanded value can name the variable instead of printing its (possibly secret) value."""
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}" if where else str(k), env, used) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}.{i}", env, used) for i, v in enumerate(value)]
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in env:
                raise InputError(f"config: {where}: environment variable {m.group(1)} is not set")
            if used is not None:
                used.setdefault(where, []).append((m.group(1), env[m.group(1)]))
            return env[m.group(1)]
        return _VAR.sub(sub, value)
    return value


def _count_values(data: Any) -> int:
    """How many values ``data`` holds, counting a value reached twice (a YAML alias) twice; stops early."""
    count, stack = 0, [data]
    while stack and count <= _MAX_VALUES:
        value = stack.pop()
        count += 1
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return count


def _hide_expanded(message: str, used: dict[str, list[tuple[str, str]]]) -> str:
    """``message`` with every value that came from ``${VAR}`` at a location it names shown as ``${VAR}``."""
    for where, pairs in used.items():
        if where not in message:
            continue
        for var, value in sorted(pairs, key=lambda p: -len(p[1])):
            if value:
                for form in (repr(value), value):
                    message = message.replace(form, f"${{{var}}}")
    return message


def _loc(err: ErrorDetails) -> str:
    return ".".join(str(p) for p in err.get("loc", ()) if not str(p).startswith("function-"))


def parse_config(data: Any, *, source: str = "config", env: dict[str, str] | None = None) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{source}: the top level must be a mapping of settings")
    if _count_values(data) > _MAX_VALUES:
        raise InputError(f"{source}: more than {_MAX_VALUES:,} values (YAML aliases expanding?)")
    used: dict[str, list[tuple[str, str]]] = {}
    data = _expand(data, "", dict(os.environ) if env is None else env, used)
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        msg = first.get("msg", "invalid value").removeprefix("Value error, ")
        if first.get("type") == "extra_forbidden":
            msg = "unknown key"
        raise InputError(_hide_expanded(f"{source}: {_loc(first) or 'top level'}: {msg}", used)) from None
    try:
        config.check_settings()  # validate check ids and parameters now, not at first use
    except InputError as err:
        raise InputError(_hide_expanded(str(err), used)) from None
    return config


@cache
def _config_loader() -> type[Any]:
    """YAML without implicit timestamps: ``expires: 2026-13-01`` stays text for the model to reject by key,
    where PyYAML's own date constructor would raise before validation could name the waiver. Made on first use, so
    PyYAML is imported only when a config file is read."""
    import yaml

    class ConfigLoader(yaml.SafeLoader):
        pass

    ConfigLoader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    return ConfigLoader


def load_config(path: str | Path | None, env: dict[str, str] | None = None) -> Config:
    """The configuration at ``path``, or the defaults when no file is given; ``${VAR}`` from ``env``
    (default: the process environment)."""
    if path is None:
        return parse_config({}, env=env)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(f"config {p}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise InputError(f"config {p}: not UTF-8 text (byte {err.start})") from None
    import yaml  # here, not at the top: a command with no config file (most scans) need not load PyYAML
    try:
        data = yaml.load(text, Loader=_config_loader())  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(f"config {p}: not valid YAML{where}") from None
    except RecursionError:
        raise InputError(f"config {p}: not valid YAML (nested too deeply)") from None
    except ValueError as err:  # an explicitly tagged value its constructor refuses (!!timestamp 2026-13-01)
        raise InputError(f"config {p}: not valid YAML ({err})") from None
    return parse_config(data, source=f"config {p}", env=env)
