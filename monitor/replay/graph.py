"""The replay server's Resource Graph: plmon's own fixed queries answered from a recorded tenant.

A recorded tenant holds ARM list answers, not a Resource Graph table, but plmon's queries are fixed
(:data:`plmon.monitor.collect.azure.resource_graph.QUERIES`): ``resources | where type in~ (...) | project ...``. So the
server can answer them by reading each requested subscription's list file of each named type, shaping
the items as rows of the ``resources`` table (lower-cased ``type``, the table's extra columns, nulls), and
paging them with ``$skipToken`` in the stable id order Resource Graph pages in. Any other query is refused
with 400, so a test cannot pass by sending a query the real service would answer differently.

Emulation choices where a recording cannot say what Resource Graph would do:

- A requested subscription whose list of a queried type is recorded as an error (``.error.json``) fails
  the whole query with that status and error: the closest analogue of ARM refusing that read.
- The per-user quota is a fixed window of ``quota`` queries per ``window`` seconds, reported in
  ``x-ms-user-quota-remaining`` / ``x-ms-user-quota-resets-after`` (a .NET TimeSpan); a query beyond it is
  answered 429 ``RateLimiting`` with ``Retry-After``. ``quota=0`` means no quota and no quota headers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["GraphEmulator", "format_timespan"]

MAX_SUBSCRIPTIONS = 1000
_QUERY = re.compile(
    r"^\s*(?://[^\n]*\n\s*)*resources\s*\|\s*where\s+type\s+in~\s*\(([^)]*)\)"
    r"\s*(?:\|\s*project\s+([A-Za-z_][\w\s,]*?))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_TYPE = re.compile(r"^[a-z0-9.]+/[a-z0-9./]+$")
# The columns of the resources table, in its order.
COLUMNS = ("id", "name", "type", "tenantId", "kind", "location", "resourceGroup", "subscriptionId", "managedBy",
           "sku", "plan", "properties", "tags", "identity", "zones", "extendedLocation")

Lookup = Callable[[str], tuple[int, Any]]   # request path -> (status, body) as ARM GET answers it


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def format_timespan(seconds: float) -> str:
    """``hh:mm:ss`` with a 7-digit fraction when there is one, as .NET formats a TimeSpan."""
    ticks = max(0, round(seconds * 10_000_000))
    whole, frac = divmod(ticks, 10_000_000)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}:{s:02d}" + (f".{frac:07d}" if frac else "")


def _row(item: dict[str, Any], type_: str, subscription: str, tenant_id: str) -> dict[str, Any]:
    """The table row of a list item. Its type is the list's: the table is indexed by what a resource is."""
    rid = item["id"]
    parts = rid.strip("/").split("/")
    group = parts[3].lower() if len(parts) > 3 and parts[2].lower() == "resourcegroups" else ""
    return {
        "id": rid, "name": item.get("name"), "type": type_.lower(), "tenantId": tenant_id,
        "kind": item.get("kind", ""), "location": item.get("location"), "resourceGroup": group,
        "subscriptionId": subscription, "managedBy": item.get("managedBy", ""), "sku": item.get("sku"),
        "plan": item.get("plan"), "properties": item.get("properties"), "tags": item.get("tags"),
        "identity": item.get("identity"), "zones": item.get("zones"),
        "extendedLocation": item.get("extendedLocation"),
    }


class GraphEmulator:
    """Answers ``POST /providers/Microsoft.ResourceGraph/resources`` bodies; thread-safe."""

    def __init__(self, lookup: Lookup, *, tenant_id: str = "", page_size: int = 100, quota: int = 0,
                 window: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._lookup = lookup
        self.tenant_id = tenant_id
        self.page_size = page_size
        self.quota = quota
        self.window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._window_start: float | None = None
        self._used = 0

    def answer(self, raw: bytes) -> tuple[int, Any, dict[str, str]]:
        """Status, body and extra headers for one query request body."""
        headers, refused = self._spend()
        if refused is not None:
            return 429, _error("RateLimiting", "Please provide below info when asking for support: "
                                               "the replay server's Resource Graph quota is spent."), \
                {**headers, "Retry-After": str(math.ceil(refused))}
        try:
            request = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError):
            return 400, _error("InvalidRequestContent", "The request body is not JSON."), headers
        status, body = self._query(request)
        return status, body, headers

    def _spend(self) -> tuple[dict[str, str], float | None]:
        if not self.quota:
            return {}, None
        with self._lock:
            now = self._clock()
            if self._window_start is None or now >= self._window_start + self.window:
                self._window_start, self._used = now, 0
            resets = self._window_start + self.window - now
            refused = resets if self._used >= self.quota else None
            if refused is None:
                self._used += 1
            remaining = self.quota - self._used
        return {"x-ms-user-quota-remaining": str(remaining),
                "x-ms-user-quota-resets-after": format_timespan(resets)}, refused

    def _query(self, request: Any) -> tuple[int, Any]:
        if not isinstance(request, dict):
            return 400, _error("InvalidRequestContent", "The request body must be a JSON object.")
        subs = request.get("subscriptions")
        if request.get("managementGroups") or not isinstance(subs, list) or not subs \
                or not all(isinstance(s, str) and s for s in subs):
            return 400, _error("BadRequest", "The replay server answers queries over a list of subscriptions.")
        if len(subs) > MAX_SUBSCRIPTIONS:
            return 400, _error("BadRequest", f"At most {MAX_SUBSCRIPTIONS} subscriptions per query.")
        query = request.get("query")
        query = query if isinstance(query, str) else ""
        match = _QUERY.match(query)
        types = [a or b for a, b in _QUOTED.findall(match.group(1))] if match else []
        if not match or not types or not all(_TYPE.match(t.lower()) for t in types):
            return 400, _error("InvalidQuery", "The replay server answers only plmon's fixed queries: "
                                               "resources | where type in~ (...) | project ...")
        columns = [c.strip() for c in match.group(2).split(",")] if match.group(2) else list(COLUMNS)
        unknown = [c for c in columns if c not in COLUMNS]
        if unknown:
            return 400, _error("InvalidQuery", f"Unknown column(s) in project: {', '.join(unknown)}")
        options: dict[str, Any] = o if isinstance(o := request.get("options"), dict) else {}
        if options.get("resultFormat", "objectArray") != "objectArray":
            return 400, _error("BadRequest", "The replay server answers resultFormat objectArray only.")

        rows: list[dict[str, Any]] = []
        for sub in subs:
            for type_ in types:
                status, body = self._lookup(f"subscriptions/{sub}/providers/{type_}")
                if status != 200:
                    return status, body
                items = body.get("value") if isinstance(body, dict) else None
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, dict) and isinstance(item.get("id"), str):
                        rows.append(_row(item, type_, sub.lower(), self.tenant_id))
        rows.sort(key=lambda r: r["id"].lower())   # Resource Graph pages in a stable id order
        rows = [{c: r[c] for c in columns} for r in rows]
        return self._page(rows, query, subs, options)

    def _page(self, rows: list[dict[str, Any]], query: str, subs: list[str],
              options: Mapping[str, Any]) -> tuple[int, Any]:
        fingerprint = hashlib.sha256(json.dumps([query, subs]).encode()).hexdigest()[:16]
        start = 0
        token = options.get("$skipToken")
        if token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(str(token).encode()))
                start = int(decoded["offset"])
                valid = decoded["query"] == fingerprint and 0 <= start <= len(rows)
            except (ValueError, KeyError, TypeError):
                valid = False
            if not valid:
                return 400, _error("InvalidSkipToken", "The $skipToken does not belong to this query.")
        start += int(options.get("$skip") or 0) if not token else 0
        top = options.get("$top")
        size = min(top, self.page_size) if isinstance(top, int) and top > 0 else self.page_size
        page = rows[start:start + size]
        body: dict[str, Any] = {"totalRecords": len(rows), "count": len(page), "resultTruncated": "false",
                                "facets": [], "data": page}
        if start + size < len(rows):
            body["$skipToken"] = base64.urlsafe_b64encode(
                json.dumps({"offset": start + size, "query": fingerprint}).encode()).decode()
        return 200, body
