"""The one protocol every alert transport implements, and the registry that builds them from config.

A transport is a module in ``alerts/`` with a class decorated ``@channel_type("<type>")`` whose ``from_config``
takes the channel's config and the :class:`ChannelContext`: adding one is one new module (plus its type in the
config's list of types), nothing else to edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from plmon.monitor.config import AlertChannelConfig
from plmon.monitor.state.store import OutboxRow

__all__ = ["Channel", "ChannelContext", "DeliveryError", "build_channels", "channel_type", "scrub"]


class DeliveryError(Exception):
    """A send that did not arrive. ``retryable`` False (a 4xx that retrying cannot fix) dead-letters
    at once; the reason must never contain the channel URL or secret (see :func:`scrub`)."""

    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.retryable = retryable


class Channel(Protocol):
    name: str
    digest_threshold: int

    def send(self, alert: OutboxRow) -> None:
        """Deliver one alert or raise :class:`DeliveryError`."""
        ...

    def send_digest(self, alerts: Sequence[OutboxRow]) -> None:
        """Deliver one message that stands for all ``alerts`` (a burst) or raise :class:`DeliveryError`."""
        ...


@dataclass(frozen=True, slots=True)
class ChannelContext:
    """What a channel may need beyond its own config, given by the composition root (plmon.monitor.wiring), which
    alone reads the environment: ``credential`` makes the Azure identity (an azure-core ``TokenCredential``) on
    first use, for channels that send to Azure."""

    credential: Callable[[], Any] | None = None


_TYPES: dict[str, Callable[[AlertChannelConfig, ChannelContext], Channel]] = {}


def channel_type(name: str) -> Callable[[type], type]:
    def register(cls: type) -> type:
        _TYPES[name] = cls.from_config  # type: ignore[attr-defined]
        return cls
    return register


def build_channels(configs: Sequence[AlertChannelConfig], context: ChannelContext | None = None) -> dict[str, Channel]:
    """Channels by name, for every configured ``alerts`` entry."""
    package = importlib.import_module(__name__.rpartition(".")[0])  # this package, whatever its import name
    for mod in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{mod.name}")
    out: dict[str, Channel] = {}
    for cfg in configs:
        channel = _TYPES[cfg.type](cfg, context or ChannelContext())
        out[channel.name] = channel
    return out


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with every secret (URL, signing key) replaced, so an error can be logged and stored."""
    for s in secrets:
        if s:
            text = text.replace(s, "[redacted]")
    return text[:300]
