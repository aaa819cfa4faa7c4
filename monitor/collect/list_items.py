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
import functools
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import msgspec

from plmon.monitor.errors import InputError
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

    def __init__(self, resolve: Callable[[str], tuple[Path | None, bool]], load: Callable[[Path], Any],
                 decode: Callable[[bytes, Path], Any] | None = None) -> None:
        """``decode``: the caller's parse of a file's bytes (``load`` is reading them, then ``decode``). Given, a
        list is indexed by its items' ids and bytes and only the item asked for is parsed (:func:`_split`)."""
        self._resolve = resolve
        self._load = load
        self._decode = decode
        self._lock = threading.Lock()
        # file -> (its stat signature, when indexed, {normalised id: item, or its bytes when decode is given})
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
                item = items[key]
                if type(item) is bytes and self._decode is not None:
                    return self._decode(item, file), None   # parsed anew for each find: a copy already
                return copy.deepcopy(item), None
        return (None, error) if error is not None and not listed else None

    def forget(self) -> None:
        """Drop every list's index (its items, or their bytes): the next lookup in a list indexes it again."""
        with self._lock:
            self._indexes.clear()

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
        split = None
        if self._decode is not None:
            data = _read(file)
            split = _split(data)
        if split is not None:
            items: dict[str, Any] = split
        else:
            body = self._load(file) if self._decode is None else self._decode(data, file)
            items = {}
            values = body.get("value") if isinstance(body, dict) else None
            for item in values if isinstance(values, list) else []:
                rid = item.get("id") if isinstance(item, dict) else None
                if isinstance(rid, str) and rid.strip():
                    items.setdefault(_key(rid), item)
        with self._lock:
            self._indexes[name] = (sig, time.time_ns(), items)
        return items


def _read(file: Path) -> bytes:
    try:
        with open(file, "rb") as fh:
            return fh.read()
    except OSError as err:
        raise InputError(f"{file}: cannot read ({err.strerror})") from None


# What the split leaves to the whole parse: a \u escape of a surrogate (the parse writes it as text, an id's key
# must be that text) and any run of 19 digits (a number the fast parse hands to json).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_DEEP = 512


def _split(data: bytes) -> dict[str, bytes] | None:
    """A list file's items by normalised id, each as its own bytes, from one pass that builds no item: an endpoint
    event re-indexed its subscription's whole list (~1 MB, ~600 items at 100k resources, ~15 ms) to answer the GET
    of one item. None when the document is not plainly a list of that shape, or holds anything the whole parse
    might read otherwise (invalid UTF-8, a surrogate escape, a long number, deep nesting): then it is parsed whole,
    as before, with that parse's result and errors. An item's bytes parse to the very item the whole document
    holds (JSON values do not depend on what surrounds them)."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if _SURROGATE_ESCAPE.search(data) is not None or b"0" * 19 in data.translate(_DIGITS):
        return None
    listed_decoder, item_decoder, refused = _decoders()
    try:
        listed = listed_decoder.decode(data)
    except refused:
        return None
    if listed.value is None:
        return None
    out: dict[str, bytes] = {}
    for raw in listed.value:
        item = bytes(raw)
        if item.count(b"[") + item.count(b"{") > _DEEP:
            return None
        if item[:1] != b"{":
            continue   # not an object: the whole parse skips it too
        try:
            rid = item_decoder.decode(item).id
        except refused:
            return None
        if isinstance(rid, str) and rid.strip():
            out.setdefault(_key(rid), item)
    return out


@functools.cache
def _decoders() -> tuple[msgspec.json.Decoder[Any], msgspec.json.Decoder[Any], tuple[type[Exception], ...]]:
    """(a list document's decoder, an item's id decoder, their errors), made on the first split: msgspec is imported
    only when a by-id read needs a list's items (most commands never make one, and a start-up pays for each
    import)."""
    import msgspec

    # defstruct, not class bodies: this module's annotations are text, resolved in its globals, which lack msgspec.
    listed = msgspec.defstruct("_Listed", [("value", list[msgspec.Raw] | None, None)])
    item = msgspec.defstruct("_Item", [("id", Any, None)])
    return (msgspec.json.Decoder(listed), msgspec.json.Decoder(item),
            (msgspec.DecodeError, msgspec.ValidationError))
