"""The policy every live ARM request passes on each attempt: read-only guard, read budget, counters.

It sits after azure-core's RetryPolicy (``per_retry_policies``), so it sees every attempt, including
retries after a 429 or a 5xx, and the auto-registration POST that azure-mgmt-core would send on a
``MissingSubscriptionRegistration`` answer. That POST, or any other write, is refused here before a
byte leaves the process: plmon is read-only by construction, not by convention.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import structlog
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import SansIOHTTPPolicy

from plmon.monitor.collect.azure.budget import BudgetSet

__all__ = ["ArmGuardPolicy", "RequestStats", "WriteRefused", "budget_scope"]

log = structlog.get_logger(__name__)


class WriteRefused(Exception):
    """A request other than GET was about to be sent to ARM."""


@dataclass
class RequestStats:
    """Counts over every HTTP attempt a live reader made (thread-safe)."""

    attempts: int = 0        # HTTP requests sent to ARM, retries included
    retries: int = 0         # attempts beyond the first of a request
    throttled: int = 0       # answers 429
    server_errors: int = 0   # answers 5xx
    budget_wait: float = 0.0  # seconds spent waiting on our own read budget
    by_status: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: float) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def status(self, code: int) -> None:
        with self._lock:
            self.by_status[code] = self.by_status.get(code, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {"attempts": self.attempts, "retries": self.retries, "throttled": self.throttled,
                    "server_errors": self.server_errors, "budget_wait_s": round(self.budget_wait, 3),
                    "by_status": dict(sorted(self.by_status.items()))}


def budget_scope(url: str) -> str:
    """The read budget a request spends: its subscription, or the tenant's for tenant-level paths."""
    parts = [p for p in urlsplit(url).path.split("/") if p]
    if len(parts) >= 2 and parts[0].lower() == "subscriptions":
        return parts[1].lower()
    return "tenant"


class ArmGuardPolicy(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Refuses writes, waits on the read budget and counts each attempt."""

    def __init__(self, stats: RequestStats, budget: BudgetSet | None) -> None:
        self.stats = stats
        self.budget = budget

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        http = request.http_request
        if http.method.upper() != "GET":
            log.error("write_refused", method=http.method, path=urlsplit(http.url).path)
            raise WriteRefused(f"plmon is read-only: refused to send {http.method} {urlsplit(http.url).path}")
        # RetryPolicy numbers the attempts of one request in the shared context: 0 is the first.
        retry = bool(request.context.get("retry_count", 0))
        waited = self.budget.take(budget_scope(http.url)) if self.budget is not None else 0.0
        self.stats.add(attempts=1, retries=1 if retry else 0, budget_wait=waited)

    def on_response(self, request: PipelineRequest, response: PipelineResponse) -> None:  # type: ignore[type-arg]
        code = response.http_response.status_code
        self.stats.status(code)
        if code == 429:
            self.stats.add(throttled=1)
            log.info("arm_throttled", path=urlsplit(request.http_request.url).path,
                     retry_after=response.http_response.headers.get("Retry-After"))
        elif code >= 500:
            self.stats.add(server_errors=1)
