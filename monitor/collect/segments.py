"""What a collection read, as segments: the shared inventory's unit of storage (issue 15, design 2.1).

A shard's reads are kept as ARM answered them (the merged body without ``nextLink``, as
:class:`~plmon.monitor.collect.record.RecordingReader` writes it, or the error's status and code), never as typed
units: every replica parses the same bytes with its own builder through the unchanged
:func:`~plmon.monitor.collect.plan.collect`, so there is no second schema to keep in step with the inventory, and a
rolling upgrade reads an older writer's segments.

Layout of one segment (binary, big-endian)::

    b"PLMSEG"  u16 version  u8 zlib level  u32 crc32 of everything after this fixed head  u32 header length
    zlib(orjson(header))                       header = {"shard", "chunks": [[compressed, raw], ...],
                                                         "entries": [[key, kind, read_at_ms, status, code, message,
                                                                      chunk, start, end], ...]}
    zlib(chunk 0) zlib(chunk 1) ...           each chunk: the orjson bodies of consecutive entries, ~64 KiB raw

Why this shape: a loader must index every path of a collection without holding the decoded tenant (440-500 MB of
parsed JSON at 100k resources, against a 600 MB RSS budget). So the keys sit in a small header of their own, the
segments stay compressed in memory (~25 MB at 100k), and a read decompresses only the chunk that holds its body,
through a byte-bounded LRU of raw chunks; the parsed body goes to the plan, which parses it into units and drops
it. Chunks rather than one stream per segment, because the plan reads round-robin across subscriptions: with one
stream, every read would decompress a whole subscription. The version and a CRC come first, so an unknown format
or a corrupt blob is refused whole when loaded, in one line, never half-way through a collection.

The writer holds no more than the loader: :class:`RecordingTap` serialises each answer as the plan reads it into
its shard's open chunk and compresses a chunk as soon as it is full, so a collection being recorded costs its
compressed segments (~11-15 MB at 100k resources), not its parsed answers; its :class:`Recording` is written as
:func:`encode_segment` would write the same responses, byte for byte.

``collect`` sits below ``state`` in the import layers, so :data:`FORMAT_VERSION` repeats
``plmon.monitor.state.scaleout.FORMAT_VERSION`` (a test holds the two equal) and a failed shard is anything with
``shard``, ``scopes``, ``code`` and ``message`` (``scaleout.FailedShard`` is one).
"""

from __future__ import annotations

import json
import struct
import threading
import time
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, overload

import orjson
import structlog

from plmon.monitor import outside_json
from plmon.monitor.collect.inventory import Child, ListUnit, Prebuilt, TargetUnit
from plmon.monitor.collect.plan import ArmReader, ReadError

__all__ = [
    "FORMAT_VERSION", "FailedScope", "GrowingSegmentReader", "PatchReader", "Recording", "RecordingTap", "Response",
    "Segment", "SegmentError", "SegmentReader", "UnsupportedSegment", "by_subscription", "cut", "decode_responses",
    "encode_segment", "path_key",
]

log = structlog.get_logger(__name__)

# The major version of pointer, manifest, segments and patches (= state.scaleout.FORMAT_VERSION).
FORMAT_VERSION = 1
MAGIC = b"PLMSEG"
_HEAD = struct.Struct(">6sHBII")
# Raw bytes per chunk: large enough that zlib finds the repetition across bodies (ids, property names), small
# enough that a read decompresses little more than its own body. At 100k resources 64 KiB costs 4% more bytes than
# 256 KiB (11.3 vs 10.9 MB at level 6) and lets the cache below be 8 MiB instead of 32 (-25 MB of max RSS).
CHUNK_BYTES = 64 * 1024
# Decompressed chunks kept: the plan reads round-robin across subscriptions, each in the order its shard recorded
# it, so the cache needs about one open chunk per segment (100 subscriptions x 64 KiB).
CACHE_BYTES = 8 * 1024 * 1024
TENANT_SHARD = "s0"
# A firewall policy is read by id as a "target" but parsed as a list item: never typed (as in recorded.py).
_FIREWALL_POLICY = "/providers/microsoft.network/firewallpolicies/"


class SegmentError(ValueError):
    """A segment that cannot be read (corrupt, truncated, not a segment, or not JSON): one line naming it."""


class UnsupportedSegment(SegmentError):
    """A segment of a major format version this plmon does not read: keep serving the last collection."""


class FailedScope(Protocol):
    """A shard that never completed (``state.scaleout.FailedShard``): its scopes are gaps, never absences."""

    @property
    def shard(self) -> str: ...

    @property
    def scopes(self) -> Sequence[str]: ...

    @property
    def code(self) -> str: ...

    @property
    def message(self) -> str: ...


def path_key(path: str) -> str:
    """The key a read is answered by: lower case, no leading ``/``, no query, as recorded.py keys its files."""
    return path.strip("/").split("?", 1)[0].lower()


@dataclass(frozen=True, slots=True)
class Response:
    """One read's answer: a body, or an error (``status`` None = no answer), and when it came back."""

    key: str
    kind: str
    read_at_ms: int
    body: Any = None
    status: int | None = 200
    code: str = ""
    message: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.code)

    def answer(self) -> Any:
        """The body, or the read's :class:`ReadError` raised again."""
        if self.failed:
            raise ReadError(self.status, self.code, self.message)
        return self.body


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def by_subscription(key: str) -> str:
    """The shard of a read: ``s1-<sid>`` below a subscription, ``s0`` for tenant-level reads (design 2.3)."""
    parts = key.split("/", 2)
    if len(parts) >= 2 and parts[0] == "subscriptions" and parts[1]:
        return f"s1-{parts[1]}"
    return TENANT_SHARD


class RecordingTap:
    """An ArmReader that passes every read through to ``inner`` and records its answer as segment bytes.

    Why bytes: a shared-mode daemon records its whole collection, and keeping the parsed answers until publishing
    held the tenant's JSON (~500 MB at 100k resources) beside its inventory. So each answer is serialised (orjson)
    as it is read into its shard's open chunk (shards as :func:`cut` groups them), a full chunk is compressed at
    once, and the entry rows are kept compressed too: the recording holds ~11-15 MB of compressed chunks and never a
    reference to a body. :meth:`take` hands over a :class:`Recording` whose segments are byte-identical to
    :func:`encode_segment` of the same responses.

    The plan reads with many workers: a read is placed under a lock (list appends), a full chunk is compressed
    outside it (zlib releases the GIL), into the slot it reserved, so chunk order is read order. ``inner`` must
    answer JSON bodies: a body no segment can hold (a recorded folder's typed units after ``trust_index()``) is
    refused when the recording is encoded or decoded, never in the read itself.
    """

    def __init__(self, inner: ArmReader, *, now_ms: Callable[[], int] = _now_ms,
                 shard_of: Callable[[str], str] = by_subscription, level: int = 6,
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        self.inner = inner
        self._now_ms = now_ms
        self._shard_of = shard_of
        self.level = level
        self.chunk_bytes = chunk_bytes
        self._cond = threading.Condition()
        self._busy = 0   # chunks being compressed outside the lock
        self._shards: dict[str, _ShardBuffer] = {}
        self._order = array("I")   # the shard (its index in _shards) of each read, in read order
        self.reads = 0

    def get(self, path: str, *, kind: str) -> Any:
        key = path_key(path)
        try:
            body = self.inner.get(path, kind=kind)
        except ReadError as err:
            self._record(key, kind, self._now_ms(), None, err.status, err.code or "Unknown", err.message)
            raise
        if isinstance(body, dict) and "nextLink" in body:
            body = {k: v for k, v in body.items() if k != "nextLink"}
        try:
            data: bytes | SegmentError = _dumps(body, key)
        except SegmentError as err:
            data = SegmentError(str(err))   # a fresh one: the raised one's traceback holds the body's frame
        self._record(key, kind, self._now_ms(), data, 200, "", "")
        return body

    def _record(self, key: str, kind: str, read_at_ms: int, data: bytes | SegmentError | None, status: int | None,
                code: str, message: str) -> None:
        name = self._shard_of(key)
        with self._cond:
            buf = self._shards.get(name)
            if buf is None:
                buf = self._shards[name] = _ShardBuffer(name, len(self._shards))
            sealed = buf.add(key, kind, read_at_ms, data, status, code, message, self.chunk_bytes)
            self._order.append(buf.ordinal)
            self.reads += 1
            if sealed is not None:
                self._busy += 1
        if sealed is not None:
            self._compress(buf, *sealed)

    def _compress(self, buf: _ShardBuffer, slot: int, raw: bytes) -> None:
        packed = zlib.compress(raw, self.level)
        with self._cond:
            buf.chunks[slot] = packed
            buf.sizes[slot][0] = len(packed)
            self._busy -= 1
            self._cond.notify_all()

    @property
    def responses(self) -> list[Response]:
        """The answers recorded so far, decoded (for tests and small re-reads: this parses every body)."""
        with self._cond:
            self._cond.wait_for(lambda: self._busy == 0)
            return list(Recording(list(self._shards.values()), array("I", self._order), self.level,
                                  self.chunk_bytes))

    def take(self) -> Recording:
        """The recording so far, which the tap then forgets: its open chunks are compressed now."""
        with self._cond:
            self._cond.wait_for(lambda: self._busy == 0)
            shards, order = list(self._shards.values()), self._order
            self._shards, self._order = {}, array("I")
        for buf in shards:
            sealed = buf.seal()
            if sealed is not None:
                slot, raw = sealed
                buf.chunks[slot] = packed = zlib.compress(raw, self.level)
                buf.sizes[slot][0] = len(packed)
            buf.close_rows()
        return Recording(shards, order, self.level, self.chunk_bytes)


# Entry rows are kept as orjson, compressed in blocks of this many raw bytes (a shard's header is decoded only
# when its segment is written).
_ROW_BLOCK = 64 * 1024


class _ShardBuffer:
    """One shard's recording: compressed chunks (a slot is b"" while a worker compresses it), the open chunk's
    raw bodies, and the entry rows as compressed orjson blocks. Mutated under the tap's lock only."""

    __slots__ = ("chunks", "error", "filled", "name", "ordinal", "pending", "reads", "row_blocks", "rows", "sizes")

    def __init__(self, name: str, ordinal: int) -> None:
        self.name = name
        self.ordinal = ordinal
        self.chunks: list[bytes] = []
        self.sizes: list[list[int]] = []
        self.pending: list[bytes] = []
        self.filled = 0
        self.rows = bytearray()
        self.row_blocks: list[bytes] = []
        self.reads = 0
        self.error: SegmentError | None = None

    def add(self, key: str, kind: str, read_at_ms: int, data: bytes | SegmentError | None, status: int | None,
            code: str, message: str, chunk_bytes: int) -> tuple[int, bytes] | None:
        """Place one answer; the chunk it sealed (slot, raw bytes) for the caller to compress, if it sealed one."""
        self.reads += 1
        sealed = None
        if isinstance(data, SegmentError):
            self.error = self.error or data
            row: list[Any] = [key, kind, read_at_ms, 200, "", "", -2, 0, 0]   # never written: the shard is refused
        elif data is None:
            row = [key, kind, read_at_ms, status, code, message, -1, 0, 0]
        else:
            if self.filled and self.filled + len(data) > chunk_bytes:
                sealed = self.seal()
            row = [key, kind, read_at_ms, 200, "", "", len(self.sizes), self.filled, self.filled + len(data)]
            self.pending.append(data)
            self.filled += len(data)
        self.rows += orjson.dumps(row)
        self.rows += b","
        if len(self.rows) >= _ROW_BLOCK:
            self.close_rows()
        return sealed

    def seal(self) -> tuple[int, bytes] | None:
        if not self.pending:
            return None
        raw = b"".join(self.pending)
        self.pending, self.filled = [], 0
        self.chunks.append(b"")
        self.sizes.append([0, len(raw)])
        return len(self.chunks) - 1, raw

    def close_rows(self) -> None:
        if self.rows:
            self.row_blocks.append(zlib.compress(bytes(self.rows), 1))
            self.rows = bytearray()

    def entries(self) -> list[list[Any]]:
        raw = b"".join(zlib.decompress(b) for b in self.row_blocks) + self.rows
        return list(orjson.loads(b"[" + raw[:-1] + b"]"))

    @property
    def stored_bytes(self) -> int:
        return sum(map(len, self.chunks)) + sum(map(len, self.row_blocks)) + self.filled + len(self.rows)


class Recording(Sequence[Response]):
    """What a :class:`RecordingTap` recorded: per shard, its compressed chunks and entry rows.

    :meth:`segments` writes each shard's segment without parsing a body (what publishing needs); iterating decodes
    every response in read order (a patch is small; tests compare). A shard that read a key twice is written as
    :func:`encode_segment` writes it: the newest read wins, so that one shard is decoded and encoded again."""

    def __init__(self, shards: list[_ShardBuffer], order: array[int], level: int, chunk_bytes: int) -> None:
        self._shards = shards
        self._order = order
        self.level = level
        self.chunk_bytes = chunk_bytes

    def __len__(self) -> int:
        return len(self._order)

    @property
    def compressed_bytes(self) -> int:
        """What the recording holds: compressed chunks and rows (plus any open chunk's raw bytes)."""
        return sum(b.stored_bytes for b in self._shards)

    def segments(self) -> Iterator[tuple[str, bytes, int]]:
        """(shard, segment bytes, reads) per shard, in the order the shards were first read."""
        for buf in self._shards:
            yield buf.name, self._encode(buf), buf.reads

    def _encode(self, buf: _ShardBuffer) -> bytes:
        if buf.error is not None:
            raise buf.error
        entries = buf.entries()
        if len({e[0] for e in entries}) == len(entries):
            return _assemble(buf.name, self.level, buf.sizes, buf.chunks, entries)
        # A key read twice: encode_segment's choice (the newest read, in the reads' order), from the bytes as read.
        raws = [zlib.decompress(c) for c in buf.chunks]
        rows: list[_Row] = [(key, kind, read_at, status, code, message,
                             None if chunk < 0 else partial(_cut_bytes, raws[chunk], start, end))
                            for key, kind, read_at, status, code, message, chunk, start, end in entries]
        return _encode_rows(buf.name, rows, level=self.level, chunk_bytes=self.chunk_bytes)

    def _decode(self, buf: _ShardBuffer) -> list[Response]:
        if buf.error is not None:
            raise buf.error
        raws: dict[int, bytes] = {len(buf.chunks): b"".join(buf.pending)}   # the open chunk (a live tap's)
        out = []
        for key, kind, read_at, status, code, message, chunk, start, end in buf.entries():
            if chunk < 0:
                out.append(Response(key, kind, read_at, None, status, code, message))
                continue
            raw = raws.get(chunk)
            if raw is None:
                raw = raws[chunk] = zlib.decompress(buf.chunks[chunk])
            out.append(Response(key, kind, read_at, _loads(raw[start:end], buf.name, key)))
        return out

    def __iter__(self) -> Iterator[Response]:
        decoded = [iter(self._decode(buf)) for buf in self._shards]
        for ordinal in self._order:
            yield next(decoded[ordinal])

    @overload
    def __getitem__(self, i: int) -> Response: ...

    @overload
    def __getitem__(self, i: slice) -> list[Response]: ...

    def __getitem__(self, i: int | slice) -> Response | list[Response]:
        return list(self)[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def cut(responses: Iterable[Response], shard_of: Callable[[str], str] = by_subscription) -> dict[str, list[Response]]:
    """Responses grouped by shard, each group in read order."""
    out: dict[str, list[Response]] = {}
    for r in responses:
        out.setdefault(shard_of(r.key), []).append(r)
    return out


def _dumps(body: Any, key: str) -> bytes:
    try:
        return orjson.dumps(body)
    except TypeError:
        pass
    try:
        # Integers beyond 64 bits (a long number in an ARM body): json writes them as the text had them.
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError) as err:
        raise SegmentError(f"/{key}: the body is not JSON ({err}); record through a reader that answers bodies, "
                           f"not typed units") from None


def encode_segment(shard: str, responses: Iterable[Response], *, level: int = 6,
                   chunk_bytes: int = CHUNK_BYTES) -> bytes:
    """One segment of ``responses`` (the newest read of a key wins), compressed at zlib ``level``."""
    return _encode_rows(shard, ((r.key, r.kind, r.read_at_ms, r.status, r.code, r.message,
                                 None if r.failed else partial(_dumps, r.body, r.key)) for r in responses),
                        level=level, chunk_bytes=chunk_bytes)


# key, kind, read_at_ms, status, code, message, and the body's bytes (a thunk: only the newest read's are made),
# or None for a failed read.
_Row = tuple[str, str, int, int | None, str, str, Callable[[], bytes] | None]


def _cut_bytes(raw: bytes, start: int, end: int) -> bytes:
    return raw[start:end]


def _encode_rows(shard: str, rows: Iterable[_Row], *, level: int, chunk_bytes: int) -> bytes:
    newest: dict[str, _Row] = {}
    for r in rows:
        old = newest.get(r[0])
        if old is None or r[2] >= old[2]:
            newest.pop(r[0], None)  # re-inserted: the order stays the reads' order
            newest[r[0]] = r
    entries: list[list[Any]] = []
    chunks: list[bytes] = []
    sizes: list[list[int]] = []
    pending: list[bytes] = []
    filled = 0

    def flush() -> None:
        nonlocal pending, filled
        if pending:
            raw = b"".join(pending)
            packed = zlib.compress(raw, level)
            chunks.append(packed)
            sizes.append([len(packed), len(raw)])
            pending, filled = [], 0

    for key, kind, read_at, status, code, message, body in newest.values():
        if body is None:
            entries.append([key, kind, read_at, status, code, message, -1, 0, 0])
            continue
        data = body()
        if filled and filled + len(data) > chunk_bytes:
            flush()
        entries.append([key, kind, read_at, 200, "", "", len(chunks), filled, filled + len(data)])
        pending.append(data)
        filled += len(data)
    flush()
    return _assemble(shard, level, sizes, chunks, entries)


def _assemble(shard: str, level: int, sizes: list[list[int]], chunks: list[bytes], entries: list[list[Any]]) -> bytes:
    """The segment of compressed ``chunks`` and their ``entries`` (one writer, so the tap's is encode_segment's)."""
    header = zlib.compress(orjson.dumps({"shard": shard, "chunks": sizes, "entries": entries}), level)
    payload = header + b"".join(chunks)
    return _HEAD.pack(MAGIC, FORMAT_VERSION, level, zlib.crc32(payload), len(header)) + payload


class Segment:
    """A loaded segment: its header decoded, its chunks still compressed; refused whole if unreadable."""

    __slots__ = ("_data", "_offsets", "chunks", "entries", "level", "name", "shard")

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        if len(data) < _HEAD.size or not data.startswith(MAGIC):
            raise SegmentError(f"segment {name}: not a plmon segment ({len(data)} bytes, no {MAGIC.decode()} head)")
        _magic, version, level, crc, header_len = _HEAD.unpack_from(data)
        if version != FORMAT_VERSION:
            raise UnsupportedSegment(f"segment {name}: format version {version} unsupported "
                                     f"(this plmon reads {FORMAT_VERSION})")
        payload = memoryview(data)[_HEAD.size:]
        if zlib.crc32(payload) != crc or header_len > len(payload):
            raise SegmentError(f"segment {name}: corrupt (checksum mismatch, {len(data)} bytes)")
        try:
            header = orjson.loads(zlib.decompress(payload[:header_len]))
            shard, sizes, entries = header["shard"], header["chunks"], header["entries"]
            offsets = [_HEAD.size + header_len]
            for packed, _raw in sizes:
                offsets.append(offsets[-1] + int(packed))
        except (zlib.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise SegmentError(f"segment {name}: corrupt header ({err})") from None
        if offsets[-1] != len(data) or not isinstance(shard, str) or not isinstance(entries, list):
            raise SegmentError(f"segment {name}: corrupt header (chunks do not add up to its {len(data)} bytes)")
        self._data = data
        self._offsets = offsets
        self.level: int = level
        self.shard: str = shard
        self.chunks: list[list[int]] = sizes
        self.entries: list[list[Any]] = entries

    @property
    def size(self) -> int:
        return len(self._data)

    def chunk(self, i: int) -> bytes:
        try:
            raw = zlib.decompress(self._data[self._offsets[i]:self._offsets[i + 1]])
        except (zlib.error, IndexError) as err:
            raise SegmentError(f"segment {self.name}: corrupt chunk {i} ({err})") from None
        return raw

    def responses(self) -> list[Response]:
        """Every response, decoded (a patch is small; a collection's segments are read through SegmentReader)."""
        raws: dict[int, bytes] = {}
        out = []
        for key, kind, read_at, status, code, message, chunk, start, end in self.entries:
            if chunk < 0:
                out.append(Response(key, kind, read_at, None, status, code, message))
                continue
            raw = raws.get(chunk)
            if raw is None:
                raw = raws[chunk] = self.chunk(chunk)
            out.append(Response(key, kind, read_at, _loads(raw[start:end], self.name, key)))
        return out


def _loads(data: bytes, segment: str, key: str) -> Any:
    """A body as a recorded folder's file gives it (outside_json: the same numbers, no lone surrogates)."""
    doc = outside_json.fast_loads(data)
    if doc is not outside_json.UNPARSED:
        return doc
    try:
        return outside_json.loads(data.decode("utf-8", "surrogatepass"))
    except (ValueError, UnicodeDecodeError) as err:
        raise SegmentError(f"segment {segment}: corrupt body of /{key} ({err})") from None


def decode_responses(name: str, data: bytes) -> list[Response]:
    """The responses of one segment (or patch) blob; :class:`SegmentError` in one line if it is unreadable."""
    return Segment(name, data).responses()


def _scope_key(scope: str) -> str:
    return path_key(scope)


class SegmentReader:
    """An ArmReader over a collection's segments and its failed shards, holding only compressed bytes and a
    bounded cache of raw chunks.

    A path under a failed shard's scope that no segment answers raises ``ReadError(None, "ShardFailed"|
    "ShardExpired")``, and any other unanswered path ``ReadError(None, "NotInCollection")``: status None is "no
    answer", which the plan records as a coverage gap and ``proves_absence`` never takes for absence. A segment's
    answer wins over a failed scope: a by-id read made in another shard is still what ARM said.
    """

    def __init__(self, segments: Iterable[Segment | tuple[str, bytes]], *, collection: str = "",
                 failed: Iterable[FailedScope] = (), cache_bytes: int = CACHE_BYTES, typed: bool = False) -> None:
        self.collection = collection
        # typed: the bulk lists and targets go straight from bytes to units (collect.typed, as a trusted recorded
        # folder does), which the plan accepts as they are; a body the typed decoder refuses is parsed generically.
        self._typed_lists: dict[str, str] = {}
        self._decode_unit: Callable[[str, bytes], ListUnit | Child | None] | None = None
        self._decode_target: Callable[[bytes], TargetUnit | None] | None = None
        if typed:
            from plmon.monitor.collect import typed as typed_decoder  # msgspec only for who asks

            self._typed_lists = typed_decoder.TYPED_LISTS
            self._decode_unit, self._decode_target = typed_decoder.decode_unit, typed_decoder.decode_target
        self.segments: list[Segment] = [s if isinstance(s, Segment) else Segment(*s) for s in segments]
        # key -> (segment index, entry): the newer read of a key in two segments wins (a later segment on a tie).
        self._index: dict[str, tuple[int, list[Any]]] = {}
        for i, seg in enumerate(self.segments):
            for entry in seg.entries:
                old = self._index.get(entry[0])
                if old is None or entry[2] >= old[1][2]:
                    self._index[entry[0]] = (i, entry)
        self._failed = sorted(((_scope_key(scope), f) for f in failed for scope in f.scopes),
                              key=lambda sf: -len(sf[0]))
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._cached = 0
        self._lock = threading.Lock()
        self.reads = 0
        self.chunks_decoded = 0
        self.cache_peak = 0

    @property
    def compressed_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    def paths(self) -> list[str]:
        return sorted(self._index)

    def get(self, path: str, *, kind: str = "") -> Any:
        key = path_key(path)
        with self._lock:
            self.reads += 1
        hit = self._index.get(key)
        if hit is None:
            raise self._unanswered(key)
        seg_i, (_, _, _, status, code, message, chunk, start, end) = hit
        if chunk < 0:
            raise ReadError(status, code, message)
        seg = self.segments[seg_i]
        data = self._chunk(seg_i, chunk)[start:end]
        if self._decode_unit is not None:
            if key.endswith(self._typed_lists.get(kind, "\0")):
                unit = self._decode_unit(kind, data)
                if unit is not None:
                    return {"value": Prebuilt(unit)}
            elif kind == "target" and self._decode_target is not None and _FIREWALL_POLICY not in key:
                target = self._decode_target(data)
                if target is not None:
                    return Prebuilt(target)
        return _loads(data, seg.name, key)

    def _unanswered(self, key: str) -> ReadError:
        for scope, f in self._failed:
            if not scope or key == scope or key.startswith(scope + "/"):
                return ReadError(None, f.code, f"{f.shard} of {self.collection}: {f.message}")
        return ReadError(None, "NotInCollection", f"/{key} is in no segment of {self.collection}")

    def _chunk(self, seg_i: int, chunk: int) -> bytes:
        at = (seg_i, chunk)
        with self._lock:
            raw = self._cache.get(at)
            if raw is not None:
                self._cache.move_to_end(at)
                return raw
        raw = self.segments[seg_i].chunk(chunk)
        with self._lock:
            self.chunks_decoded += 1
            if len(raw) <= self.cache_bytes and at not in self._cache:
                while self._cached + len(raw) > self.cache_bytes:
                    _, old = self._cache.popitem(last=False)
                    self._cached -= len(old)
                self._cache[at] = raw
                self._cached += len(raw)
                self.cache_peak = max(self.cache_peak, self._cached)
        return raw

    def drop_cache(self) -> None:
        """Let the decompressed chunks go (a loaded collection keeps only its compressed segments)."""
        with self._lock:
            self._cache.clear()
            self._cached = 0


class GrowingSegmentReader(SegmentReader):
    """A :class:`SegmentReader` read while its segments still arrive: the fan-out holder's one build (design15 2.3).

    Why: the holder used to decode every stage-1 segment twice, once to plan stage 2 and again to build the inventory
    once every shard was in, both after the last shard, on the collection's critical path. Here the build reads as the
    shards land, so its parse overlaps the other shards' ARM latency; a read of a path no segment holds yet waits until
    it arrives or until its stage is sealed (every shard of that stage terminal), and only then answers as the complete
    reader would (a failed scope, or ``NotInCollection``). ``reading`` is the stage the build reads in (1 up to the
    stage-2 plan, then 2); the driver adds segments (:meth:`add`), sets the failed shards and seals each stage
    (:meth:`seal`).
    Keys are unique across a collection's segments (each read is made once, in one shard), so what a read answers
    does not depend on the order segments arrive in."""

    def __init__(self, *, collection: str = "", cache_bytes: int = CACHE_BYTES, typed: bool = False) -> None:
        super().__init__((), collection=collection, cache_bytes=cache_bytes, typed=typed)
        self._grown = threading.Condition()
        self.reading = 1
        self.sealed = 0
        self.names: set[str] = set()
        self.waiting: str | None = None   # the path a read waits for now (a status, and tests)

    def add(self, name: str, data: bytes) -> None:
        """One more segment (its header decoded here, its chunks when read); a name already added is ignored."""
        if name in self.names:
            return
        seg = Segment(name, data)
        with self._grown:
            i = len(self.segments)
            self.segments.append(seg)
            self.names.add(name)
            for entry in seg.entries:
                old = self._index.get(entry[0])
                if old is None or entry[2] >= old[1][2]:
                    self._index[entry[0]] = (i, entry)
            self._grown.notify_all()

    def fail(self, failed: Iterable[FailedScope]) -> None:
        """The failed shards so far, all of them in the book's order (as the complete reader is given them)."""
        ordered = sorted(((_scope_key(scope), f) for f in failed for scope in f.scopes), key=lambda sf: -len(sf[0]))
        with self._grown:
            self._failed = ordered
            self._grown.notify_all()

    def seal(self, stage: int) -> None:
        """Every shard of ``stage`` (and before) is terminal: a path still unanswered there is answered as missing."""
        with self._grown:
            self.sealed = max(self.sealed, stage)
            self._grown.notify_all()

    def advance(self, stage: int) -> None:
        """The build reads ``stage``'s answers from now on (waits for them, until that stage is sealed)."""
        with self._grown:
            self.reading = stage

    def get(self, path: str, *, kind: str = "") -> Any:
        key = path_key(path)
        if key not in self._index:
            with self._grown:
                while key not in self._index and self.sealed < self.reading:
                    self.waiting = key
                    self._grown.wait()
                self.waiting = None
        return super().get(path, kind=kind)


class PatchReader:
    """An ArmReader that answers from a patch's recorded responses, so another replica's re-read replays through
    the unchanged ``reread_into`` without reading ARM; what the patch did not record is read through ``fallback``
    and counted (expected 0: a non-zero count means the replaying replica's inventory asked for more than the
    writer's did)."""

    def __init__(self, responses: Iterable[Response], fallback: ArmReader) -> None:
        self._answers: dict[str, Response] = {}
        for r in responses:
            old = self._answers.get(r.key)
            if old is None or r.read_at_ms >= old.read_at_ms:
                self._answers[r.key] = r
        self.fallback = fallback
        self.fallback_reads = 0
        self._lock = threading.Lock()

    def get(self, path: str, *, kind: str) -> Any:
        hit = self._answers.get(path_key(path))
        if hit is not None:
            return hit.answer()
        with self._lock:
            self.fallback_reads += 1
        log.info("patch_fallback_read", path=path, kind=kind)
        return self.fallback.get(path, kind=kind)
