"""Resource Graph collection: the per-subscription lists of the plan from a handful of KQL queries.

A large tenant costs the ARM path twelve list reads per subscription (plus their pages), each against the
subscription's read budget. Resource Graph answers the same lists for up to 1000 subscriptions in one
query, so :class:`ResourceGraphReader` prefetches them with a few fixed queries over the ``resources``
table and answers the plan's per-subscription list reads from memory, as the ARM lists would have
answered them. Everything the table does not hold (subscriptions, management groups, associations, zone
groups, virtual network links, CNAME record sets, targets by id) is read through the wrapped
:class:`~plmon.monitor.collect.azure.live.LiveReader`. So :func:`~plmon.monitor.collect.plan.collect` and the
builder stay the one path.

What Resource Graph does differently, and how it is made to look like ARM:

- ``type`` comes back lower-cased: it is put back in the ARM casing of the plan's list.
- Rows carry table columns ARM items lack (``tenantId``, ``resourceGroup``, ``subscriptionId``,
  ``managedBy``, ``plan`` and nulls): the query projects only ARM's item fields and nulls are dropped.
- Results are paged with ``$skipToken`` (the queries never use ``take``/``limit``, which cut silently).
- The per-user quota (``x-ms-user-quota-remaining`` / ``x-ms-user-quota-resets-after``) is obeyed: when it
  reaches 0, the next query waits for the reset instead of being answered 429.
- A query a batch of subscriptions cannot answer (4xx) is split in halves down to one subscription, then
  type by type, so a forbidden subscription or type costs only its own coverage; what still fails
  becomes coverage gaps (the plan's read of that list raises the error), never an empty list.

Known limit of the real service: Resource Graph returns nothing, rather than an error, for a subscription
the identity cannot read, so the subscriptions read come from ARM's subscription list (which only
holds readable ones) or ``--subscription``.

Benchmarks: ``plmon scan --via resource-graph --arm-endpoint <replay base_url> --ca-bundle <pem>`` against
``plmon replay-server`` (it answers these queries from the recorded folder); the live reader's
``stats.attempts`` (``scan --stats``) counts the Resource Graph POSTs together with the ARM GETs.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from plmon.monitor import outside_json
from plmon.monitor.collect.azure.live import CredentialError, LiveReader
from plmon.monitor.collect.azure.policies import ArmGuardPolicy, RequestStats
from plmon.monitor.collect.plan import SUBSCRIPTION_LISTS, ReadError
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.model.kinds import KINDS

__all__ = [
    "GRAPH_PATH", "MAX_BATCH", "QUERIES", "GraphQuery", "GraphQuota", "ResourceGraphReader", "parse_timespan",
]

log = structlog.get_logger(__name__)

GRAPH_PATH = "/providers/Microsoft.ResourceGraph/resources"
MAX_BATCH = 1000     # subscriptions Resource Graph accepts in one request
PAGE_ROWS = 1000     # the largest page Resource Graph serves ($top)
# The item fields of an ARM list; every other column of the resources table is left out.
ITEM_FIELDS = ("id", "name", "type", "location", "tags", "kind", "sku", "zones", "extendedLocation", "identity",
               "properties")
# ...but the row's subscription says which subscription's list it belongs to.
PROJECTED = (*ITEM_FIELDS, "subscriptionId")
_TYPE_OF_KIND = dict(SUBSCRIPTION_LISTS)


@dataclass(frozen=True)
class GraphQuery:
    """One fixed query: which plan list kinds it answers. Its KQL is derived, so the server can match it."""

    name: str
    kinds: tuple[str, ...]

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(_TYPE_OF_KIND[k] for k in self.kinds)

    @property
    def kql(self) -> str:
        types = ", ".join(f"'{t.lower()}'" for t in self.types)
        return (f"// plmon:{self.name}\nresources\n| where type in~ ({types})\n"
                f"| project {', '.join(PROJECTED)}")


# One query per ``graph`` group of the kinds table (plmon.monitor.model.kinds), in the table's order.
QUERIES: tuple[GraphQuery, ...] = tuple(
    GraphQuery(name, tuple(k.listed_as for k in KINDS if k.graph == name and k.listed_as))
    for name in dict.fromkeys(k.graph for k in KINDS if k.graph)
)
GRAPH_KINDS = frozenset(k for q in QUERIES for k in q.kinds)

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$")


def parse_timespan(raw: str | None) -> float | None:
    """Seconds of a .NET TimeSpan header value (``00:00:03``, ``1.00:00:00``, ``00:00:00.5``); None if not one."""
    m = _TIMESPAN.match((raw or "").strip())
    if not m:
        return None
    days, hours, minutes, seconds = m.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


class GraphQuota:
    """The caller's Resource Graph quota as the service last reported it; :meth:`before_send` waits on it.

    The remaining count is the service's figure minus the queries still unanswered, and within one window
    it only goes down, so concurrent queries never spend a last unit that only one of them has.
    """

    def __init__(self, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._remaining: int | None = None
        self._resets_at = 0.0
        self._in_flight = 0
        self.waits = 0
        self.waited = 0.0

    def before_send(self) -> float:
        """Take one unit of quota, waiting for the window to reset when none is left; returns the wait."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                if self._remaining is not None and now >= self._resets_at:
                    self._remaining = None  # the window the figure was about has passed
                if self._remaining is None or self._remaining > 0:
                    if self._remaining is not None:
                        self._remaining -= 1
                    self._in_flight += 1
                    if waited:
                        self.waits += 1
                        self.waited += waited
                    return waited
                delay = self._resets_at - now
            log.info("graph_quota_wait", seconds=round(delay, 3))
            self._sleep(delay)
            waited += delay

    def after_response(self, headers: Mapping[str, str]) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            raw = headers.get("x-ms-user-quota-remaining")
            resets = parse_timespan(headers.get("x-ms-user-quota-resets-after"))
            if raw is None or not raw.strip().lstrip("-").isdigit():
                return
            now = self._clock()
            figure = max(0, int(raw) - self._in_flight)
            if self._remaining is not None and now < self._resets_at:
                # Same window: an answer overtaken by a later one must not give back spent quota.
                figure = min(figure, self._remaining)
            self._remaining = figure
            if resets is not None:
                self._resets_at = now + resets


class GraphGuardPolicy(ArmGuardPolicy):
    """The live reader's guard, letting through exactly one write-shaped request: a Resource Graph query.

    Counts attempts into the live reader's :class:`RequestStats` and waits on the quota before each one.
    """

    def __init__(self, stats: RequestStats, quota: GraphQuota) -> None:
        super().__init__(stats, None)
        self.quota = quota

    def on_request(self, request: Any) -> None:
        http = request.http_request
        if http.method.upper() == "POST" and urlsplit(http.url).path.rstrip("/").lower() == GRAPH_PATH.lower():
            self.quota.before_send()
            retry = bool(request.context.get("retry_count", 0))
            self.stats.add(attempts=1, retries=1 if retry else 0)
            return
        super().on_request(request)

    def on_response(self, request: Any, response: Any) -> None:
        super().on_response(request, response)
        self.quota.after_response(response.http_response.headers)


def _arm_item(row: Any, kind: str) -> dict[str, Any] | None:
    """A row of the resources table as the ARM list of ``kind`` holds the item."""
    if not isinstance(row, dict) or not isinstance(row.get("id"), str):
        return None
    item = {k: v for k, v in row.items() if k in ITEM_FIELDS and v is not None and v != ""}
    item["type"] = _TYPE_OF_KIND[kind]
    return item


class ResourceGraphReader:
    """An :class:`~plmon.monitor.collect.plan.ArmReader`: per-subscription lists from Resource Graph, the rest from ARM.

    ``subscriptions`` are the ones the scan will read when known in advance (``--subscription``); if not,
    the subscriptions ARM lists (the plan's first read, passed through here) are queried.
    """

    def __init__(self, live: LiveReader, *, subscriptions: Iterable[str] | None = None,
                 batch_size: int = MAX_BATCH, page_rows: int = PAGE_ROWS, workers: int = 4,
                 quota: GraphQuota | None = None) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}")
        self.live = live
        self.stats = live.stats
        self.quota = quota or GraphQuota()
        self.batch_size = batch_size
        self.page_rows = page_rows
        self.workers = max(1, workers)
        self.queries_sent = 0       # Resource Graph requests that got an answer, pages included
        # The subscriptions to query when the scan names them; otherwise those ARM lists are queried.
        self.subscriptions: list[str] = [s for s in (subscriptions or ()) if s]
        self._listed: list[str] = []
        self._lists: dict[tuple[str, str], list[Any]] = {}   # (sub key, kind) -> items
        self._failed: dict[tuple[str, str], ReadError] = {}
        self._fetched: set[str] = set()
        self._lock = threading.Lock()        # held by the reader that prefetches; the others wait
        self._rows_lock = threading.Lock()   # results, counters and the client, written by query threads
        self._client: Any = None

    # -- the ArmReader protocol --------------------------------------------------------------------

    def get(self, path: str, *, kind: str) -> Any:
        if kind in GRAPH_KINDS:
            parts = path.strip("/").split("/", 3)
            if len(parts) == 4 and parts[0].lower() == "subscriptions" and parts[2].lower() == "providers" \
                    and parts[3].lower() == _TYPE_OF_KIND[kind].lower():
                return self._list(parts[1], kind)
        body = self.live.get(path, kind=kind)
        if kind == "subscriptions" and isinstance(body, dict) and isinstance(body.get("value"), list):
            self._listed = [s["subscriptionId"] for s in body["value"]
                            if isinstance(s, dict) and isinstance(s.get("subscriptionId"), str)]
        return body

    def _list(self, subscription: str, kind: str) -> dict[str, Any]:
        sub = subscription.lower()
        with self._lock:  # the first list read fetches every subscription; the others wait for it
            if sub not in self._fetched:
                wanted = [s for s in dict.fromkeys(x.lower() for x in [*(self.subscriptions or self._listed), sub])
                          if s not in self._fetched]
                self._prefetch(wanted)
        err = self._failed.get((sub, kind))
        if err is not None:
            raise err
        return {"value": list(self._lists.get((sub, kind), []))}

    # -- prefetch ----------------------------------------------------------------------------------

    def _prefetch(self, subs: list[str]) -> None:
        started = time.perf_counter()
        batches = [subs[i:i + self.batch_size] for i in range(0, len(subs), self.batch_size)]
        jobs = [(q, b) for b in batches for q in QUERIES]
        with ThreadPoolExecutor(max_workers=min(self.workers, len(jobs)) or 1,
                                thread_name_prefix="plmon-graph") as pool:
            for fut in [pool.submit(self._answer, q, b) for q, b in jobs]:
                fut.result()
        self._fetched.update(subs)
        log.info("graph_prefetch_done", subscriptions=len(subs), batches=len(batches),
                 queries=self.queries_sent, seconds=round(time.perf_counter() - started, 3))

    def _answer(self, query: GraphQuery, batch: list[str]) -> None:
        """Run one query for a batch; on a refusal split the batch, and record what still fails."""
        try:
            rows = self._query(query, batch)
        except ReadError as err:
            splittable = err.status is not None and 400 <= err.status < 500 and err.status != 429
            if len(batch) > 1 and splittable:
                half = len(batch) // 2
                self._answer(query, batch[:half])
                self._answer(query, batch[half:])
                return
            if len(query.kinds) > 1 and splittable:
                # One subscription refuses a query of several types: ask type by type, so that only the
                # types it refuses become gaps, as ARM's per-type lists would have it.
                for kind in query.kinds:
                    self._answer(GraphQuery(f"{query.name}.{kind}", (kind,)), batch)
                return
            log.info("graph_query_failed", query=query.name, subscriptions=len(batch), status=err.status,
                     code=err.code)
            with self._rows_lock:
                for sub in batch:
                    for kind in query.kinds:
                        self._failed[(sub, kind)] = err
            return
        kind_of_type = {t.lower(): k for k, t in zip(query.kinds, query.types, strict=True)}
        grouped: dict[tuple[str, str], list[Any]] = {(s, k): [] for s in batch for k in query.kinds}
        for row in rows:
            row_kind = kind_of_type.get(str(row.get("type", "")).lower()) if isinstance(row, dict) else None
            item = _arm_item(row, row_kind) if row_kind else None
            row_sub = row.get("subscriptionId") or parse_id(item["id"]).subscription if item else None
            key = (row_sub.lower(), row_kind) if isinstance(row_sub, str) and row_kind else None
            if item is None or key is None or key not in grouped:
                continue  # not one of ours: a row for another type or subscription is not trusted
            grouped[key].append(item)
        with self._rows_lock:
            self._lists.update(grouped)

    def _query(self, query: GraphQuery, batch: list[str]) -> list[Any]:
        from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

        rows: list[Any] = []
        token: str | None = None
        seen: set[str] = set()
        while True:
            request = QueryRequest(subscriptions=batch, query=query.kql, options=QueryRequestOptions(
                skip_token=token, top=None if token else self.page_rows, result_format="objectArray"))
            page = self._send(request)
            data = page.get("data")
            if not isinstance(data, list):
                raise ReadError(None, "MalformedResponse", f"Resource Graph query {query.name}: no data array")
            if str(page.get("resultTruncated", "false")).lower() == "true":
                raise ReadError(None, "ResultTruncated", f"Resource Graph truncated query {query.name}")
            rows.extend(data)
            token = page.get("$skipToken")
            if not token:
                break
            if not isinstance(token, str) or token in seen:
                raise ReadError(None, "PagingLoop", f"Resource Graph query {query.name}: $skipToken repeats")
            seen.add(token)
        total = page.get("totalRecords")
        if isinstance(total, int) and total != len(rows):
            raise ReadError(None, "IncompleteResult",
                            f"Resource Graph query {query.name}: {len(rows)} rows of {total} announced")
        return rows

    def _send(self, request: Any) -> dict[str, Any]:
        try:
            body = self._graph_client().resources(
                request, cls=lambda response, _model, _headers: outside_json.loads(response.http_response.text()),
                # A query only reads: retry it on 429 as a GET would be (azure-core spares POSTs otherwise).
                retry_on_methods=frozenset({"GET", "POST"}))
        except ClientAuthenticationError as err:
            raise CredentialError(f"cannot get an Azure token: {str(err.message).splitlines()[0]}") from None
        except HttpResponseError as err:
            if err.status_code is None:
                raise ReadError(None, "ResponseError", _first_line(err)) from None
            error = getattr(err, "error", None)
            code = getattr(error, "code", None) or f"Http{err.status_code}"
            raise ReadError(err.status_code, code, str(getattr(error, "message", "") or "")) from None
        except ServiceResponseError as err:
            code = "Timeout" if "timed out" in str(err).lower() else "ResponseError"
            raise ReadError(None, code, _first_line(err)) from None
        except ServiceRequestError as err:
            raise ReadError(None, "ConnectionFailed", _first_line(err)) from None
        except ValueError:
            raise ReadError(200, "MalformedResponse", "the Resource Graph answer is not JSON") from None
        if not isinstance(body, dict):
            raise ReadError(200, "MalformedResponse", "the Resource Graph answer is not an object")
        with self._rows_lock:
            self.queries_sent += 1
        return body

    def _graph_client(self) -> Any:
        with self._rows_lock:
            if self._client is None:
                from azure.mgmt.resourcegraph import ResourceGraphClient

                kwargs = self.live.client_kwargs(GraphGuardPolicy(self.stats, self.quota))
                self._client = ResourceGraphClient(self.live.credential, **kwargs)
            return self._client

    # -- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
        self.live.close()

    def __enter__(self) -> ResourceGraphReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _first_line(err: Exception) -> str:
    text = str(getattr(err, "message", None) or err)
    return text.splitlines()[0] if text else type(err).__name__
