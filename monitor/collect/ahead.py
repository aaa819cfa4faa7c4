"""Read-ahead for a one-shot scan of a large recorded folder: a forked helper decodes its small files on a second core.

At 100k resources a scan reads 57k files on one core of two. A helper forked once the folder is indexed reads and
decodes some of them (with the same typed decoders, :mod:`plmon.monitor.collect.typed`) while this process parses the
others, and hands their units back pickled: loading a unit costs about a third of decoding it. The helper takes the
files this process reads last: the virtual-network and NIC lists (read after the endpoint lists), then the small files
read after all lists, each endpoint's zone groups (30k) and the private-link targets read by id (27k). Which of the
small files the plan reads is only known from the lists, so the helper decodes every file that could be one (the
folder's zone-group files, and its resource files outside Microsoft.Network) and the plan takes what it asks for.

The two share the work through a table in shared memory, one byte per file: the helper claims a file before it
decodes it, and skips one the scan claimed; the scan claims a file the helper has not, and decodes it itself, as it
does a file the helper claimed but has not handed back yet (its results come in frames of :data:`_FRAME` files). So
the scan never waits for the helper (which runs at the lowest priority, in a session of its own): on a busy
machine, where it gets little of a core, the scan does what it did not get to, as before. The frames go through a
memory file, so the helper never blocks on a reader that is still parsing lists.

The helper's results are what this process's own decode of the same bytes gives: ids come back through
:func:`~plmon.monitor.model.arm_id.adopt` (the collection's instance of the same string when it has one), records
through the builder's fast constructors. Whatever the helper did not hand back (it failed, a file was unreadable, the
typed decoder refused it) is read here as before: a missing result costs time, never a different answer.

Only where a fork is safe and pays: a process with one thread (a collection on the calling thread), a POSIX ``fork``,
two or more usable CPUs, and at least :data:`MIN_FILES` files to decode.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import mmap
import operator
import os
import pickle
import signal
import struct
import sys
import tempfile
import threading
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from plmon.monitor.collect import inventory, typed
from plmon.monitor.collect.builder import _NO_TAGS, _fast_constructor
from plmon.monitor.collect.inventory import Child, ListUnit, TargetUnit
from plmon.monitor.model import snapshot
from plmon.monitor.model.arm_id import ArmId, adopt, adopt_canonical, interning

__all__ = ["MIN_FILES", "TARGET", "ZONE_GROUPS", "ReadAhead", "start", "usable_cpus"]

# The decoders a result was made by: the plan's kind for a list the typed decoder reads, and a target read by id.
ZONE_GROUPS = "privateDnsZoneGroups"
TARGET = "target"
LISTS = ("virtualNetworks", "networkInterfaces")  # bulk lists, each written in a frame of its own
KINDS = frozenset({ZONE_GROUPS, TARGET, *LISTS})
# Below this many files the helper's fork, pickling and loading cost more than the decode they move (a 10k-resource
# tenant has ~6k such files, decoded in ~0.25 s).
MIN_FILES = 8192
_FRAME = 128  # files per frame of results: at most what the scan decodes again, reaching files not yet handed back
# The shared table: the bytes of frames written so far (8 bytes), whether the helper is done (1), then a claim per file.
_WRITTEN, _DONE, _CLAIMS = 0, 8, 16
_FREE, _HELPER, _SCAN = 0, 1, 2
_LENGTH = struct.Struct("<Q")


def _frozen_map(items: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    """A record's mapping (tags) as the builder froze it."""
    return MappingProxyType(items)


def _no_tags() -> Any:
    """The builder's one empty mapping, kept one instance across the processes."""
    return _NO_TAGS


def _record_loaders() -> dict[type, tuple[Callable[..., Any], tuple[str, ...]]]:
    """Per record class of the snapshot and the inventory: its fast constructor (named in this module, which is
    where the unpickler finds it) and its fields in the constructor's order."""
    loaders: dict[type, tuple[Callable[..., Any], tuple[str, ...]]] = {}
    for module in (snapshot, inventory):
        for cls in vars(module).values():
            if not (isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__):
                continue
            make = _fast_constructor(cls)
            if make is cls:
                continue  # no slots, or a field outside __init__: pickled the usual way
            name = f"_load_{cls.__name__}"
            make.__module__, make.__name__, make.__qualname__ = __name__, name, name
            globals()[name] = make
            loaders[cls] = (make, tuple(f.name for f in dataclasses.fields(cls)))
    return loaders


_LOADERS = _record_loaders()


def _reduce_record(getter: Callable[[Any], tuple[Any, ...]], make: Callable[..., Any]) -> Callable[[Any], Any]:
    def reduce(obj: Any) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return make, getter(obj)
    return reduce


_ARM_ID_VALUES = operator.attrgetter("raw", *ArmId.__slots__)


_CANONICAL_SEGMENTS = operator.attrgetter("subscription", "resource_group", "provider", "types", "names")


def _reduce_arm_id(obj: ArmId) -> tuple[Callable[..., ArmId], tuple[Any, ...]]:
    if obj._raw is None:  # spelled canonically: its segments give back both long strings
        return adopt_canonical, _CANONICAL_SEGMENTS(obj)
    return adopt, _ARM_ID_VALUES(obj)


def _reduce_map(obj: MappingProxyType[Any, Any]) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    return (_no_tags, ()) if obj is _NO_TAGS else (_frozen_map, (dict(obj),))


# How the helper pickles: records as their fast constructors' arguments, ids as adopt_canonical()'s (or adopt()'s, for
# the few spelled otherwise), so the loader builds each with one call (the dataclasses' own pickling sets each slot
# through object.__setattr__).
_REDUCERS: dict[type, Callable[[Any], Any]] = {
    **{cls: _reduce_record(operator.attrgetter(*names), make) for cls, (make, names) in _LOADERS.items()},
    ArmId: _reduce_arm_id, MappingProxyType: _reduce_map}


def _decode_one(read: Callable[[str], bytes], path: str, decoder: str) -> ListUnit | Child | TargetUnit | None:
    """The typed decoder's unit for the file at ``path`` (read by ``read``), or None when it cannot be read or is
    refused."""
    try:
        data = read(path)
    except OSError:
        return None
    return typed.decode_target(data) if decoder == TARGET else typed.decode_unit(decoder, data)


def _helper(jobs: list[tuple[str, str, str]], read: Callable[[str], bytes], shared: mmap.mmap, out: int,
            parent: int) -> None:
    """The forked helper's work: each file the scan has not claimed, claimed and decoded, last first (the caller puts
    last what the scan reads last); results written to ``out`` in frames of
    (relative path, decoder, unit or None), each a length and a pickle, the length written published once written."""
    gc.disable()  # a heap of records that are all kept: a pass would free nothing
    written = 0
    frame: list[tuple[str, str, Any]] = []

    def flush() -> None:
        nonlocal written
        buffer = io.BytesIO()
        buffer.write(_LENGTH.pack(0))
        pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
        pickler.dispatch_table = _REDUCERS
        pickler.dump(frame)
        data = buffer.getbuffer()
        _LENGTH.pack_into(data, 0, len(data) - _LENGTH.size)
        view = data
        while view:
            view = view[os.pwrite(out, view, written + len(data) - len(view)):]
        written += len(data)
        _LENGTH.pack_into(shared, _WRITTEN, written)
        frame.clear()

    with interning():
        for j in range(len(jobs) - 1, -1, -1):
            if shared[_CLAIMS + j] != _FREE:
                continue
            if not frame and os.getppid() != parent:
                return  # the scan is gone: nobody will read the rest
            shared[_CLAIMS + j] = _HELPER
            rel, path, decoder = jobs[j]
            frame.append((rel, decoder, _decode_one(read, path, decoder)))
            if len(frame) >= _FRAME or decoder in LISTS:  # a list is handed back at once: the scan reaches them soon
                flush()
        if frame:
            flush()
    shared[_DONE] = 1


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def start(jobs: list[tuple[str, str, str]], read: Callable[[str], bytes], *, min_files: int | None = None) -> \
        ReadAhead | None:
    """Fork a helper decoding ``jobs`` (lower-case relative path, file, decoder), the files read by ``read``, or None
    where it would not pay or a fork is not safe (another thread could hold a lock the child would inherit taken)."""
    if len(jobs) < (MIN_FILES if min_files is None else min_files) or not hasattr(os, "fork") \
            or threading.active_count() > 1 or usable_cpus() < 2:
        return None
    try:
        shared = mmap.mmap(-1, _CLAIMS + len(jobs))  # shared and zeroed: every file free
        # The frames: in memory where the system allows (no file system to fill or to write back), else a temporary
        # file, unlinked. Either is only this process's and the helper's.
        out = os.memfd_create("plmon-read-ahead") if hasattr(os, "memfd_create") else \
            os.dup(tempfile.TemporaryFile().fileno())  # noqa: SIM115 - the duplicate is closed by ReadAhead.close
    except OSError:
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the helper: never returns into the scan, whatever happens
        code = 1
        try:
            _detach()
            _helper(jobs, read, shared, out, parent)
            code = 0
        finally:
            os._exit(code)
    return ReadAhead(pid, shared, out, {rel: j for j, (rel, _, _) in enumerate(jobs)})


def _detach() -> None:
    """The helper's standard streams on /dev/null (it writes nothing there, and a reader of the scan's output, a pipe,
    must see its end when the scan ends, not when the helper does), at the lowest priority."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    # A session of its own: where the kernel groups processes by session (autogroups, on by default), the processes
    # of one session share one session's CPU, so a helper in the scan's session would take its time from the scan
    # itself. Its own session is its own group, and that group gets the lowest weight (``/proc/self/autogroup``, the
    # group's nice value): a group of the default weight would compete with the scan's group as an equal on a busy
    # machine. And the lowest priority within it (and, without autogroups, against every other process): it is to
    # use CPU nothing else wants, so it can start on any machine without first asking whether a core looks idle.
    with contextlib.suppress(OSError):
        os.setsid()
    with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as group:
        group.write("19")
    with contextlib.suppress(OSError):
        os.nice(19)


class ReadAhead:
    """The running helper, the table the scan and it share, and the results read so far."""

    def __init__(self, pid: int, shared: mmap.mmap, out: int, jobs: dict[str, int]) -> None:
        self._pid: int | None = pid
        self._shared = shared
        self._out = out
        self._jobs = jobs          # relative path -> its place in the table
        self._read = 0             # bytes of frames loaded
        self._results: dict[str, tuple[str, Any]] = {}

    def take(self, rel: str, decoder: str) -> ListUnit | Child | TargetUnit | None:
        """The unit the helper decoded for the file at ``rel`` (lower case, with its suffix) with ``decoder``; None
        when the caller is to read the file itself: the helper did not claim it (it is now the caller's), has not
        written it yet, or could not decode it. Never waits: a file the helper is still decoding is decoded here too
        (the helper yields its core to anything else, this process included, so it may be a while)."""
        j = self._jobs.pop(rel, None)
        if j is None:
            return None
        shared = self._shared
        if shared[_CLAIMS + j] == _FREE:
            shared[_CLAIMS + j] = _SCAN  # (if the helper claimed it meanwhile too, its result is not used)
            if shared[_CLAIMS + j] == _SCAN:
                return None
        got = self._results.pop(rel, None)
        if got is None:
            self._load()
            got = self._results.pop(rel, None)
        unit: ListUnit | Child | TargetUnit | None = got[1] if got is not None and got[0] == decoder else None
        return unit

    def _load(self) -> None:
        """Load the frames written since the last call."""
        written = _LENGTH.unpack_from(self._shared, _WRITTEN)[0]
        fd = self._out
        while self._read < written:  # frame by frame: the frames written meanwhile may be ~60 MB
            size = _LENGTH.unpack(os.pread(fd, _LENGTH.size, self._read))[0]
            for rel, decoder, unit in pickle.loads(os.pread(fd, size, self._read + _LENGTH.size)):
                self._results[rel] = (decoder, unit)
            self._read += _LENGTH.size + size

    def _stop(self) -> None:
        pid, self._pid = self._pid, None
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)

    def close(self) -> None:
        """Stop the helper if it still runs and drop what it handed back (for a collection that is done)."""
        self._stop()
        self._results.clear()
        self._jobs.clear()
        os.close(self._out)
        self._shared.close()
