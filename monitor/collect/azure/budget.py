"""ARM's read budget per subscription, as token buckets the live reader waits on before each request.

ARM throttles reads per subscription (and per tenant for tenant-level reads) with a token bucket of about
250 requests that refills at 25 per second. Spending our own bucket first means a large tenant is read
as fast as ARM allows without being answered 429 in a loop, and the time spent waiting is measurable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["BudgetSet", "TokenBucket"]


class TokenBucket:
    """A thread-safe token bucket; :meth:`take` blocks until a token is available."""

    def __init__(self, capacity: float = 250, refill_per_second: float = 25,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        if capacity < 1 or refill_per_second <= 0:
            raise ValueError("a token bucket needs capacity >= 1 and a positive refill rate")
        self.capacity = float(capacity)
        self.rate = float(refill_per_second)
        self._tokens = float(capacity)
        self._clock = clock
        self._sleep = sleep
        self._stamp = clock()
        self._lock = threading.Lock()

    def seed(self, tokens: float) -> None:
        """Start from ``tokens`` (clamped to 0..capacity) as of now: what a previous owner of this budget left."""
        with self._lock:
            self._tokens = max(0.0, min(self.capacity, float(tokens)))
            self._stamp = self._clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def take(self) -> float:
        """Spend one token, waiting for it if needed; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                self._refill()
                if self._tokens >= 1:
                    self._tokens -= 1
                    return waited
                # Reserve nothing: sleep for the deficit outside the lock, then compete again.
                delay = (1 - self._tokens) / self.rate
            self._sleep(delay)
            waited += delay


class BudgetSet:
    """One bucket per budget scope (a subscription id, or "tenant" for tenant-level reads)."""

    def __init__(self, capacity: float = 250, refill_per_second: float = 25) -> None:
        self.capacity = capacity
        self.refill_per_second = refill_per_second
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def bucket(self, scope: str) -> TokenBucket:
        key = scope.lower()
        found = self._buckets.get(key)  # every read looks its bucket up: no lock once it exists
        if found is not None:
            return found
        with self._lock:
            if key not in self._buckets:
                self._buckets[key] = TokenBucket(self.capacity, self.refill_per_second)
            return self._buckets[key]

    def take(self, scope: str) -> float:
        return self.bucket(scope).take()

    def seed(self, scope: str, tokens: float) -> None:
        """Carry a budget across owners: a shard of a fan-out collection (issue 15) may be read by another process
        than the one that last spent ``scope``'s budget; ARM's bucket for it is what that process left (plus the
        refill since), not a fresh 250, so the new owner starts from ``tokens`` rather than a full burst."""
        self.bucket(scope).seed(tokens)

    def left_after(self, spent: float, elapsed: float) -> float:
        """What ARM's bucket holds ``elapsed`` seconds after a full one had ``spent`` tokens taken from it."""
        return max(0.0, min(self.capacity, self.capacity - spent + self.refill_per_second * max(0.0, elapsed)))
