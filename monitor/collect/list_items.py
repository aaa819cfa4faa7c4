"""Resources that a recorded tenant holds only inside a list file, found by their id.

ARM answers ``GET <resource id>`` for any resource it lists; a recorder (or a hand-made tenant) often stores
the list alone. ``recorded-tenant.md``: "A GET of a resource id with no file of its own is answered with that
resource's item from the list file that holds it (its subscription's or resource group's list of that type)".
Without that, a by-id read of a resource outside the scan's subscriptions (a Private Link Service or RMPL in
another subscription) came back 404 and became a false "target missing" / "association dangling".

A scope recorded as an ``.error.json`` (``subscriptions/<s>.error.json``: the identity cannot read that
subscription) refuses every read below it with its error, and a list recorded only as an ``.error.json`` (the
identity may not list that type there) answers a by-id read of what it would hold with its error, as ARM
does: a 403 must stay a 403 (a coverage gap), never become an empty list or a 404 (evidence of absence, and
a finding such as "association dangling").

One lookup serves both the recorded source (:mod:`plmon.monitor.collect.recorded`) and the replay server
(:mod:`plmon.monitor.replay.server`). Each list file is indexed (id -> item) once and re-indexed only when its
``stat`` changes, because the folder may change while plmon serves from it: a lookup costs one ``stat`` per
candidate list, never a re-read of an unchanged list.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plmon.monitor.model.arm_id import normalise

__all__ = ["ListItems", "lists_holding"]

# A list indexed within this long of its last change may have missed a same-tick rewrite (file systems
# stamp times coarsely): it is indexed again on its next use rather than trusted.
_SETTLE_NS = 2_000_000_000


def lists_holding(path: str) -> list[str]:
    """The list paths (as recorded, without ``.json``) whose items may include the resource at ``path``.

    The resource's own collection (``.../<type>`` for ``.../<type>/<name>``: the resource group's list, or
    the parent's child list) and, for a top-level resource in a resource group, its subscription's list.
    """
    parts = [p for p in path.split("?", 1)[0].strip("/").split("/") if p]
    low = [p.lower() for p in parts]
    if len(parts) < 2 or "providers" not in low:
        return []
    last = len(low) - 1 - low[::-1].index("providers")
    if len(parts[last + 2:]) % 2 == 1 or len(parts) < last + 4:
        return []  # a collection path, or a provider namespace without a resource
    out = ["/".join(parts[:-1])]
    if len(parts) == 8 and low[0] == "subscriptions" and low[2] == "resourcegroups" and last == 4:
        out.append("/".join([*parts[:2], *parts[4:7]]))
    return out


def _names_a_resource(parts: list[str]) -> bool:
    """True when the path names a resource or scope, not a collection (recorded.is_collection_path's rule)."""
    low = [p.lower() for p in parts]
    if "providers" not in low:
        return len(parts) % 2 == 0
    last = len(low) - 1 - low[::-1].index("providers")
    return len(parts) > last + 2 and len(parts[last + 2:]) % 2 == 0


def _key(rid: str) -> str:
    """:func:`normalise` of ``rid``, without its split and join for the shape nearly every id has (a leading slash,
    no empty segment, nothing to strip): then it is the id lower-cased. An endpoint event re-indexes its
    subscription's list (~600 ids at 100k resources) whenever the list changed."""
    if rid[:1] == "/" and "//" not in rid and rid[-1] != "/" and not rid[-1].isspace():
        return rid.lower()
    return normalise(rid)


class ListItems:
    """Finds a resource's item in the list files that hold it; thread-safe (the replay server is threaded).

    ``resolve`` maps a recorded path (lower case, no suffix) to its file and whether that is an error file, or
    (None, False); ``load`` parses a file the way its caller parses every other file (so malformed JSON fails
    the same way).
    """

    def __init__(self, resolve: Callable[[str], tuple[Path | None, bool]], load: Callable[[Path], Any]) -> None:
        self._resolve = resolve
        self._load = load
        self._lock = threading.Lock()
        # file -> (its stat signature, when indexed, {normalised id: item})
        self._indexes: dict[str, tuple[tuple[int, int, int], int, dict[str, Any]]] = {}

    def refused_scope(self, path: str) -> Path | None:
        """The error file of the nearest scope above ``path`` (a subscription, resource group, management group
        or resource recorded as ``.error.json``), or None: ARM refuses everything under a scope it refuses, so
        a list or resource below it is that error, never an empty list or a 404 (evidence of absence)."""
        parts = [p for p in path.split("?", 1)[0].strip("/").split("/") if p]
        for n in range(len(parts) - 1, 1, -1):
            if _names_a_resource(parts[:n]):
                file, is_error = self._resolve("/".join(parts[:n]).lower())
                if file is not None and is_error:
                    return file
        return None

    def find(self, path: str) -> tuple[Any, Path | None] | None:
        """``(a copy of the item, None)`` from a list that holds the resource at ``path``; ``(None, error file)``
        when the only lists that could hold it are recorded as errors; None when no list holds it (a 404)."""
        key = normalise(path.split("?", 1)[0])
        error: Path | None = None
        listed = False
        for list_path in lists_holding(path):
            file, is_error = self._resolve(list_path.lower())
            if file is None:
                continue
            if is_error:
                error = error or file
                continue
            listed = True
            items = self._index(file)
            if key in items:
                return copy.deepcopy(items[key]), None
        return (None, error) if error is not None and not listed else None

    def _index(self, file: Path) -> dict[str, Any]:
        name = str(file)
        try:
            st = os.stat(name)
        except OSError:
            return {}
        sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            cached = self._indexes.get(name)
        if cached is not None and cached[0] == sig and cached[1] - st.st_mtime_ns > _SETTLE_NS:
            return cached[2]
        body = self._load(file)
        items: dict[str, Any] = {}
        values = body.get("value") if isinstance(body, dict) else None
        for item in values if isinstance(values, list) else []:
            rid = item.get("id") if isinstance(item, dict) else None
            if isinstance(rid, str) and rid.strip():
                items.setdefault(_key(rid), item)
        with self._lock:
            self._indexes[name] = (sig, time.time_ns(), items)
        return items
