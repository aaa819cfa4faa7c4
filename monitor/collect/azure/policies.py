"""The policy every live ARM request passes on each attempt: read-only guard, read budget, counters.

It sits after azure-core's RetryPolicy (``per_retry_policies``), so it sees every attempt, including
retries after a 429 or a 5xx, and the auto-registration POST that azure-mgmt-core would send on a
``MissingSubscriptionRegistration`` answer. That POST, or any other write, is refused here before a
byte leaves the process: plmon is read-only by construction, not by convention.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import structlog
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import (
    ContentDecodePolicy,
    CustomHookPolicy,
    HeadersPolicy,
    NetworkTraceLoggingPolicy,
    ProxyPolicy,
    SansIOHTTPPolicy,
)

from plmon.monitor.collect.azure.budget import BudgetSet
from plmon.monitor.outside_json import UNPARSED, fast_loads

__all__ = ["TYPED_OPTION", "ArmGuardPolicy", "FastJsonDecodePolicy", "RequestStats", "WriteRefused", "budget_scope",
           "drop_idle_policies", "use_fast_json"]

log = structlog.get_logger(__name__)


class WriteRefused(Exception):
    """A request other than GET was about to be sent to ARM."""


class RequestStats:
    """Counts over every HTTP attempt a live reader made (thread-safe).

    Writers only append to a deque (atomic, no lock): with dozens of workers, a lock taken twice per attempt
    formed a convoy (a holder losing the GIL kept every other worker waiting), which cost more than the count.
    Readers fold what was appended into the totals under a lock; writers fold too once enough piles up, so a
    long-running daemon that never reads the counts does not grow them.
    """

    _FOLD_AT = 4096

    def __init__(self) -> None:
        self._totals: dict[str, float] = dict.fromkeys(_COUNTS, 0)
        self._by_status: dict[int, int] = {}
        self._pending: deque[tuple[str, float] | int] = deque()
        self._lock = threading.Lock()

    def add(self, **deltas: float) -> None:
        for name, delta in deltas.items():
            if name not in self._totals:
                raise AttributeError(f"RequestStats has no count {name!r}")
            if delta:
                self._pending.append((name, delta))
        self._fold_if_long()

    def status(self, code: int) -> None:
        self._pending.append(code)
        self._fold_if_long()

    def _fold_if_long(self) -> None:
        if len(self._pending) > self._FOLD_AT and self._lock.acquire(blocking=False):
            try:
                self._fold()
            finally:
                self._lock.release()

    def _fold(self) -> None:
        """Move what writers appended into the totals (the caller holds the lock)."""
        pending, totals, by_status = self._pending, self._totals, self._by_status
        while pending:
            try:
                item = pending.popleft()
            except IndexError:
                break
            if isinstance(item, int):
                by_status[item] = by_status.get(item, 0) + 1
            else:
                totals[item[0]] += item[1]

    def _total(self, name: str) -> float:
        with self._lock:
            self._fold()
            return self._totals[name]

    @property
    def attempts(self) -> int:
        """HTTP requests sent to ARM, retries included."""
        return int(self._total("attempts"))

    @property
    def retries(self) -> int:
        """Attempts beyond the first of a request."""
        return int(self._total("retries"))

    @property
    def throttled(self) -> int:
        """Answers 429."""
        return int(self._total("throttled"))

    @property
    def server_errors(self) -> int:
        """Answers 5xx."""
        return int(self._total("server_errors"))

    @property
    def budget_wait(self) -> float:
        """Seconds spent waiting on our own read budget."""
        return self._total("budget_wait")

    @property
    def by_status(self) -> dict[int, int]:
        """Answers by HTTP status (a copy)."""
        with self._lock:
            self._fold()
            return dict(self._by_status)

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            self._fold()
            t = self._totals
            return {"attempts": int(t["attempts"]), "retries": int(t["retries"]), "throttled": int(t["throttled"]),
                    "server_errors": int(t["server_errors"]), "budget_wait_s": round(t["budget_wait"], 3),
                    "by_status": dict(sorted(self._by_status.items()))}

    def __repr__(self) -> str:
        return f"RequestStats({self.as_dict()})"


_COUNTS = ("attempts", "retries", "throttled", "server_errors", "budget_wait")
_URL_UNSAFE = frozenset("\t\r\n[]")  # what urlsplit drops, and IPv6 brackets (which it validates)


# An absolute URL's first two path segments (empty slashes skipped), as urlsplit's path would give them.
_FIRST_SEGMENTS = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*/+([^/?#]+)/*([^/?#]*)")


def budget_scope(url: str) -> str:
    """The read budget a request spends: its subscription, or the tenant's for tenant-level paths."""
    found = _FIRST_SEGMENTS.match(url)
    if found is not None and not _URL_UNSAFE.intersection(url):
        # Every read asks this; one match spares urlsplit's parse and a list of every segment.
        first, second = found.groups()
        return second.lower() if second and first.lower() == "subscriptions" else "tenant"
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


# The request option (and context key) through which the live reader hands FastJsonDecodePolicy a typed decoder for
# one read: a callable from the answer's bytes to the decoded document, or None where it refuses them.
TYPED_OPTION = "plmon_typed_decoder"


class FastJsonDecodePolicy(ContentDecodePolicy):
    """azure-core's ContentDecodePolicy, parsing a UTF-8 JSON answer with orjson where that is exact.

    The policy parses every JSON answer (the reader then takes that document); with json, after decoding the
    body to text, it was the largest single cost left in the client per read. orjson reads the bytes to the very
    document json gives (:func:`plmon.monitor.outside_json.fast_loads` hands back everything it might read
    differently: a byte-order mark, lone surrogates, NaN, integers beyond 64 bits); anything else, another
    charset, another content type or an empty body is azure-core's own path, errors included.
    """

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        # The reader's typed decoder for this read (TYPED_OPTION), kept in the context rather than left among the
        # options: whatever no policy takes off the options goes on to the transport.
        decode = request.context.options.pop(TYPED_OPTION, None)
        if decode is not None:
            request.context[TYPED_OPTION] = decode
        super().on_request(request)

    def on_response(self, request: PipelineRequest, response: PipelineResponse) -> None:  # type: ignore[type-arg]
        """With a typed decoder for the read (:data:`TYPED_OPTION`), a 2xx UTF-8 JSON answer goes to it first: what
        it builds is the decoded document; what it refuses (None) is decoded here as any other answer.

        At 100 subscriptions the reader's bulk lists, zone groups and targets are most of the ~19k answers; parsed
        into dicts and then walked by the builder they cost about a tenth more of the client's CPU per read (0.90-0.97
        against 1.02-1.05 ms in interleaved runs), and on a shared machine that CPU is what holds a collection above
        its floor. The typed decoder builds the builder's units straight from the bytes (as a one-shot scan of a
        recorded folder does), and refuses whatever it would read otherwise."""
        decode = request.context.get(TYPED_OPTION)
        http = response.http_response
        if (decode is not None and not response.context.options.get("stream", True)
                and 200 <= http.status_code < 300 and request.context.get("response_encoding") is None):
            content_type = getattr(http, "content_type", None)
            content = getattr(http, "_content", None)
            if (content_type and isinstance(content, bytes) and content and http.encoding == "utf-8"
                    and self.JSON_REGEXP.match(content_type.split(";")[0].strip().lower())):
                built = decode(content)
                if built is not None:
                    response.context[self.CONTEXT_NAME] = built
                    return
        super().on_response(request, response)

    @classmethod
    def deserialize_from_http_generics(cls, response: Any, encoding: str | None = None) -> Any:
        content_type = getattr(response, "content_type", None)
        content = getattr(response, "_content", None)
        if (encoding is None and content_type and isinstance(content, bytes) and content
                and cls.JSON_REGEXP.match(content_type.split(";")[0].strip().lower())
                and response.encoding == "utf-8"):
            doc = fast_loads(content)
            if doc is not UNPARSED:
                return doc
        return super().deserialize_from_http_generics(response, encoding)


def use_fast_json(client: Any) -> bool:
    """Put :class:`FastJsonDecodePolicy` in place of the ContentDecodePolicy of an SDK client's pipeline.

    The generated clients build their policy list themselves; this reaches into azure-core's pipeline (its
    policy runners) and does nothing when that is not shaped as expected (the client then decodes as azure-core
    does). True when the policy was replaced."""
    pipeline = getattr(getattr(client, "_client", None), "_pipeline", None)
    for runner in getattr(pipeline, "_impl_policies", None) or []:
        policy = getattr(runner, "_policy", None)
        if type(policy) is ContentDecodePolicy:
            fast = FastJsonDecodePolicy()
            fast._response_encoding = policy._response_encoding
            runner._policy = fast
            return True
    return False


def _idle(policy: Any) -> bool:
    """Whether a policy of an SDK client's pipeline can do nothing for the live reader's requests: it acts only on
    client settings plmon never gives (extra headers, proxies, raw hooks, network tracing) or per-request options
    the reader never passes (``headers``, ``raw_request_hook``, ``raw_response_hook``, ``logging_enable``)."""
    kind = type(policy)
    if kind is HeadersPolicy:
        return not policy.headers
    if kind is ProxyPolicy:
        return not policy.proxies
    if kind is CustomHookPolicy:
        return policy._request_callback is None and policy._response_callback is None
    if kind is NetworkTraceLoggingPolicy:
        return not policy.enable_http_logger
    return False


def drop_idle_policies(client: Any) -> int:
    """Take the :func:`_idle` policies out of an SDK client's pipeline; the number taken out.

    Every policy costs each read two calls through azure-core's runner, whether it acts or not: four of them that
    never act for plmon were about a third of the pipeline's own work per read. Like :func:`use_fast_json`, this
    reaches into azure-core's pipeline (its list of runners, each linked to the next) and leaves a pipeline that is
    not shaped as expected as it is. Only the reader's own clients are trimmed, and it passes none of the options
    these policies would take off a request (so none is left for the transport)."""
    pipeline: Any = getattr(getattr(client, "_client", None), "_pipeline", None)
    runners = getattr(pipeline, "_impl_policies", None)
    if not isinstance(runners, list) or not runners or not all(hasattr(r, "next") for r in runners):
        return 0
    kept = [r for r in runners if not _idle(getattr(r, "_policy", None))]
    if len(kept) == len(runners) or not kept:
        return 0
    last = runners[-1].next  # the transport's runner
    for runner, following in zip(kept, [*kept[1:], last], strict=True):
        runner.next = following
    pipeline._impl_policies = kept
    return len(runners) - len(kept)
