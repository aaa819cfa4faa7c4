"""The recorded-tenant source: a folder of ARM responses read as ARM would answer them.

Format: ``shared/spec/recorded-tenant.md``. Lookup is case-insensitive on the whole path, so the
folder is indexed once; ``.error.json`` files fail the read with their status; a missing collection
path is an empty list, a resource held only in a list file is that list's item
(:mod:`plmon.monitor.collect.list_items`), and any other missing path a 404, exactly as ARM answers.

The folder may change while a daemon reads it (a test or an operator adds the file for a new resource,
then posts its event). File contents are read on every request; a path the index does not know is
looked up on disk, directory by directory and case-insensitively, before it counts as missing, through
cached directory listings of which only the one lacking the name is checked for a change (its mtime):
a miss costs one ``stat``, not a re-index, and a hit one ``stat`` (a file deleted since reads as missing).
(An ``.error.json`` added beside an already indexed ``.json`` is not seen until a restart.)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plmon.monitor import outside_json
from plmon.monitor.collect.inventory import Child, ListUnit, Prebuilt, TargetUnit
from plmon.monitor.collect.list_items import ListItems
from plmon.monitor.collect.plan import ReadError
from plmon.monitor.errors import InputError
from plmon.monitor.model.clock import parse_time

if TYPE_CHECKING:
    from plmon.monitor.collect.ahead import ReadAhead

__all__ = ["RecordedTenant", "error_of", "is_collection_path"]


def is_collection_path(path: str) -> bool:
    """True when the last segment names a resource type rather than a resource.

    ``subscriptions``, ``providers/<Namespace>/<type>``, ``.../<type>/<name>/<childType>``: the
    segments after each ``providers/<Namespace>`` alternate type/name, so an odd count ends on a type.
    """
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts:
        return False
    lower = [p.lower() for p in parts]
    if lower == ["subscriptions"]:
        return True
    if "providers" not in lower:
        # /subscriptions/<s>/resourceGroups: a collection of groups
        return len(parts) % 2 == 1
    last = len(lower) - 1 - lower[::-1].index("providers")
    tail = parts[last + 2 :]
    return len(tail) % 2 == 1


class RecordedTenant:
    """An :class:`~plmon.monitor.collect.plan.ArmReader` over a recorded-tenant folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError(f"recorded tenant folder not found: {self.folder}")
        self.manifest = self._read_manifest()
        arm = self._arm = self.folder / "arm"
        # lower-case path below arm/ -> the file's path, as a string: a Path per file was most of the start-up
        self._index: dict[str, str] = {}
        # Whether the index holds every file below arm/ (no folder skipped: a symlinked or unreadable one).
        self._complete = True
        if arm.is_dir():
            self._index, self._complete = _index_folder(str(arm))
        # Set by trust_index(): a path the (complete) index lacks is absent, without looking on disk.
        self._trusted = False
        self._refusing: set[str] = set()
        # Set by trust_index(): the bulk lists (typed.TYPED_LISTS: kind -> how its path ends) are decoded straight into
        # their units by typed.decode_unit; the decoder (and msgspec) is imported then, so no other command loads it.
        self._typed = False
        self._typed_lists: dict[str, str] = {}
        self._decode_unit: Callable[[str, bytes], ListUnit | Child | None] | None = None
        self._decode_target: Callable[[bytes], TargetUnit | None] | None = None
        self._ahead: ReadAhead | None = None  # set by read_ahead(): the helper decoding the files read last
        self._ahead_kinds: frozenset[str] = frozenset()  # the kinds it decodes (ahead.KINDS)
        # directory -> (its mtime, when it was listed, {lower-case name: name}) for lookups on a miss
        self._listings: dict[str, tuple[int, int, dict[str, str]]] = {}
        self._folders: dict[str, str] = {}  # lower-case folder below arm/ -> its path, walked through _listings
        self._list_items = ListItems(self.file_for, self._load, self._decode)

    def _read_manifest(self) -> dict[str, Any]:
        path = self.folder / "manifest.json"
        if not path.exists():
            if not (self.folder / "arm").is_dir():
                raise InputError(f"not a recorded tenant (no manifest.json or arm/): {self.folder}")
            return {}
        data = self._load(path)
        if not isinstance(data, dict):
            raise InputError(f"{path}: manifest must be a JSON object")
        for key in ("tenant_id", "recorded_at", "cloud"):
            if key in data and not isinstance(data[key], str):
                raise InputError(f"{path}: '{key}' must be a string")
        # recorded_at is "now" for every age computation of a replay: a typo must not silently become
        # the wall clock.
        if "recorded_at" in data and parse_time(data["recorded_at"]) is None:
            raise InputError(f"{path}: 'recorded_at' is not an ISO-8601 time (e.g. 2026-11-01T12:00:00Z)")
        return data

    @classmethod
    def _load(cls, path: Path | str) -> Any:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as err:
            raise InputError(f"{path}: cannot read ({err.strerror})") from None
        return cls._decode(data, path)

    @staticmethod
    def _decode(data: bytes, path: Path | str) -> Any:
        """The JSON document in a file's bytes, read as ``Path.read_text(encoding="utf-8")`` reads the text."""
        doc = outside_json.fast_loads(data)
        if doc is not outside_json.UNPARSED:
            return doc
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InputError(f"{path}: not UTF-8 text ({err.reason})") from None
        if "\r" in text:  # read_text's universal newlines, so an error's line and column stay the same
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        try:
            return outside_json.loads(text)
        except outside_json.TooDeep:
            raise InputError(f"{path}: malformed JSON: nested too deeply") from None
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: malformed JSON at line {err.lineno} column {err.colno}: "
                             f"{err.msg}") from None

    def file_for(self, path: str) -> tuple[Path | None, bool]:
        """The file that answers GET ``path`` and whether it is an error file."""
        rel = path.strip("/").split("?", 1)[0].lower()
        for suffix, is_error in ((".error.json", True), (".json", False)):
            found = self._index.get(rel + suffix)
            if found is not None:
                if os.path.isfile(found):
                    return Path(found), is_error
                del self._index[rel + suffix]  # deleted since it was indexed
        return self._found_on_disk(rel)

    def trust_index(self) -> None:
        """For a one-shot command: read the folder as it was when indexed, so a path the index lacks is absent.

        A scan of a 100k-resource tenant asks for ~6,000 paths that no file answers (endpoints without zone groups,
        lists of types a subscription does not have); each walked cached folder listings and stat-ed a folder, for
        itself and for each scope above it (a refused scope is looked for there), 23k walks in all: about 0.4 s of
        CPU. The index already says they are absent, unless it skipped a folder (a symlinked or unreadable one, which
        only the walk on disk sees): then the walk stays. A daemon, whose folder may change, never calls this.

        The bulk lists are then decoded by the typed decoder (:mod:`plmon.monitor.collect.typed`), which hands the
        plan their units (only a one-shot command's plan, which keeps them as they are, meets its bodies)."""
        from plmon.monitor.collect import typed

        self._trusted = self._complete
        self._typed = True
        self._typed_lists, self._decode_unit, self._decode_target = typed.TYPED_LISTS, typed.decode_unit, \
            typed.decode_target
        # The scopes (lower case, no suffix) an error file refuses, so a trusted miss below none of them answers
        # without walking its scopes through refused_scope (6k misses at 100k resources, each a walk of 3-5 scopes).
        self._refusing = {rel[:-11] for rel in self._index if rel.endswith(".error.json")} if self._trusted else set()

    def read_ahead(self) -> bool:
        """For a one-shot collection of every subscription on this one thread, after :meth:`trust_index`: fork a
        helper that decodes on another core the files this process reads last (the virtual-network and NIC lists, the
        endpoints' zone-group lists, the targets read by id) while this process parses the others
        (:mod:`plmon.monitor.collect.ahead`); True if one was started.

        Not for a scoped collection: it reads a part of those files, and the helper would decode all of them.

        Started whatever the machine's load looks like now: the helper only takes CPU time nothing else wants (it
        runs in a scheduling group of the lowest weight, :func:`plmon.monitor.collect.ahead._detach`), so on a busy
        machine it does little and costs the scan nothing but the fork. (It used to start only if half a CPU had sat
        idle during the index walk: a reading of under a second, which a moment's noise turned either way, so the
        same scan in the same benchmark ran with or without it, 7.8 or 11.7 s of CPU.)"""
        if not self._trusted or self._ahead is not None:
            return False
        from plmon.monitor.collect import ahead

        # The helper starts from the end: the lists the plan reads soonest go last.
        small: list[tuple[str, str, str]] = []
        lists: dict[str, list[tuple[str, str, str]]] = {kind: [] for kind in ahead.LISTS}
        ends = {f"{self._typed_lists[kind]}.json": kind for kind in ahead.LISTS}
        for rel, path in self._index.items():
            if rel.endswith("/privatednszonegroups.json"):
                small.append((rel, path, ahead.ZONE_GROUPS))
            elif _is_target_file(rel):
                small.append((rel, path, ahead.TARGET))
            elif rel.endswith(".json") and (kind := ends.get(rel[rel.rfind("/providers/"):])) is not None:
                lists[kind].append((rel, path, kind))
        self._ahead = ahead.start([*small, *(job for kind in reversed(ahead.LISTS) for job in lists[kind])],
                                  _read_bytes)
        self._ahead_kinds = ahead.KINDS
        return self._ahead is not None

    def _found_on_disk(self, rel: str) -> tuple[Path | None, bool]:
        """``file_for`` for a path the index does not (or no longer) hold: looked up on disk, then indexed.

        Both spellings (``.error.json`` first) are looked up in one walk: a miss costs one ``stat`` of the folder
        that should hold them, not one per spelling."""
        if self._trusted:
            return None, False
        for suffix, is_error, found in self._on_disk_pair(rel):
            if found is not None:
                self._index[rel + suffix] = str(found)
                return found, is_error
        return None, False

    def _on_disk_pair(self, rel: str) -> list[tuple[str, bool, Path | None]]:
        """(suffix, is error, the file at ``arm/<rel><suffix>`` matched case-insensitively) for both suffixes."""
        folder, _, leaf = rel.rpartition("/")
        names = ((".error.json", True), (".json", False))
        out: list[tuple[str, bool, Path | None]] = [(suffix, is_error, None) for suffix, is_error in names]
        for fresh in (False, True):
            here = self._folder_on_disk(folder, fresh)
            if here is None:
                break
            listing = self._listing(here, fresh)
            if not fresh and leaf + ".error.json" not in listing:
                # Only the folder that lacks a name is checked for a change: one stat per miss.
                listing = self._listing(here, True)
            listed = [listing.get(leaf + suffix) for suffix, _ in names]
            files = [f"{here}/{name}" if name is not None else None for name in listed]
            out = [(suffix, is_error, Path(file) if file is not None and os.path.isfile(file) else None)
                   for (suffix, is_error), file in zip(names, files, strict=True)]
            if all((file is None) == (found is None) for file, (_, _, found) in zip(files, out, strict=True)):
                break
            # A cached listing named something since removed (a file replaced): walk once more, fresh.
        return out

    def _folder_on_disk(self, rel: str, fresh: bool) -> str | None:
        """The folder at ``arm/<rel>`` matched case-insensitively, walking cached directory listings.

        A walk through cached listings is remembered until a listing is taken again (:meth:`_listing`), since until
        then it would find the same names: most misses are below the same few folders."""
        if not fresh and (known := self._folders.get(rel)) is not None:
            return known
        # Plain strings, not Path objects: pathlib's joins were most of a miss's cost.
        here = str(self._arm)
        for part in rel.split("/") if rel else ():
            name = self._listing(here, fresh).get(part)
            if name is None and not fresh:
                # Only the directory that lacks the name is checked for a change: one stat per miss.
                name = self._listing(here, True).get(part)
            if name is None:
                return None
            here = f"{here}/{name}"
        if not fresh:
            self._folders[rel] = here
        return here

    def _read_indexed(self, rel: str, kind: str = "") -> tuple[Any, bool, str] | None:
        """The parsed body of the indexed file answering ``rel``, whether it is an error file and its path, or None.

        A hit costs no ``stat``: the read itself tells a file deleted since it was indexed (it is then dropped
        from the index, as :meth:`file_for` drops it), so a scan of a 57,000-file tenant makes no stat per read.
        """
        for suffix, is_error in ((".error.json", True), (".json", False)):
            found = self._index.get(rel + suffix)
            if found is None:
                continue
            if self._ahead is not None and not is_error and kind in self._ahead_kinds and (
                    _FIREWALL_POLICY not in rel if kind == "target" else rel.endswith(self._typed_lists[kind])):
                ready = self._ahead.take(rel + suffix, kind)  # the helper's unit for this file, as decoded below
                if ready is not None:
                    return (Prebuilt(ready) if kind == "target" else {"value": Prebuilt(ready)}), False, found
            try:
                data = _read_bytes(found)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                del self._index[rel + suffix]  # deleted (or replaced by a folder) since it was indexed
                continue
            except OSError as err:
                raise InputError(f"{found}: cannot read ({err.strerror})") from None
            if self._typed and not is_error:
                if rel.endswith(self._typed_lists.get(kind, "\0")) and self._decode_unit is not None:
                    unit = self._decode_unit(kind, data)
                    if unit is not None:  # else refused: decoded and parsed the generic way
                        return {"value": Prebuilt(unit)}, False, found
                elif kind == "target" and self._decode_target is not None and _FIREWALL_POLICY not in rel:
                    # A private-link target read by id (the plan reads a firewall policy by id as a "target" too,
                    # and parses its body as a list item: that one stays generic).
                    target = self._decode_target(data)
                    if target is not None:
                        return Prebuilt(target), False, found
            return self._decode(data, found), is_error, found
        return None

    def _listing(self, folder: str, check: bool) -> dict[str, str]:
        """``folder``'s entries by lower-case name; ``check`` re-lists it if it changed since cached."""
        cached = self._listings.get(folder)
        if cached is not None and not check:
            return cached[2]
        try:
            mtime = os.stat(folder).st_mtime_ns
        except OSError:
            return {}
        # A listing taken within 2 s of the directory's last change may have missed a same-tick addition
        # (file systems stamp times coarsely), so it is taken again; older ones are trusted until it changes.
        if cached is not None and cached[0] == mtime and cached[1] - mtime > 2_000_000_000:
            return cached[2]
        try:
            names = {entry.name.lower(): entry.name for entry in os.scandir(folder)}
        except OSError:
            return {}
        self._listings[folder] = (mtime, time.time_ns(), names)
        if cached is not None:
            self._folders.clear()  # a walk remembered through the old listing may not be what this one gives
        return names

    def get(self, path: str, *, kind: str = "") -> Any:
        hit = self._read_indexed(path.strip("/").split("?", 1)[0].lower(), kind)
        where: Path | str
        if hit is not None:
            body, is_error, where = hit
        else:
            body, is_error, where = self._get_unindexed(path)
        if is_error:
            status, code, message = error_of(body, where)
            raise ReadError(status, code, message)
        return body

    def _get_unindexed(self, path: str) -> tuple[Any, bool, Path | str]:
        """:meth:`get` for a path with no indexed file: on disk, under a refused scope, in a list, or none.

        With the index trusted, :meth:`_read_indexed` has just found (and pruned) both spellings absent from it, so
        no file answers the path itself, and no scope above it is refused unless an error file names one of them.
        """
        found: Path | None = None
        is_error = False
        if not self._trusted:
            found, is_error = self.file_for(path)
        if found is None and (not self._trusted or self._under_refusing(path)):
            refused = self._list_items.refused_scope(path)
            if refused is not None:
                found, is_error = refused, True  # under a refused scope: refused too, as ARM answers
        if found is None:
            if is_collection_path(path):
                return {"value": []}, False, ""
            held = self._list_items.find(path)
            if held is None:
                raise ReadError(404, "ResourceNotFound", f"The resource '/{path.strip('/')}' was not found.")
            if held[1] is None:
                return held[0], False, ""  # held only in its list: ARM answers the GET all the same
            found, is_error = held[1], True  # its list is refused: so is the read of what it holds
        return self._load(found), is_error, found

    def _under_refusing(self, path: str) -> bool:
        """Whether some scope above ``path`` (a leading run of its segments) has an error file in the index."""
        rel = path.strip("/").split("?", 1)[0].lower()
        if "//" in rel:
            return True  # refused_scope drops empty segments: let it decide
        refusing = self._refusing
        cut = rel.find("/")
        while cut > 0:
            if rel[:cut] in refusing:
                return True
            cut = rel.find("/", cut + 1)
        return False

    def forget(self) -> None:
        """Drop the folder's index and cached listings; later reads still answer, walking the folder on disk.

        For a one-shot scan whose collection is done: at 100k resources the index of 57k paths is 25 MB that would
        otherwise stay alive under the evaluation's peak of memory."""
        if self._ahead is not None:
            self._ahead.close()
            self._ahead = None
        self._index = {}
        self._trusted = False  # an empty index no longer says what the folder holds
        self._refusing = set()
        self._typed = False  # later reads answer plain bodies, whoever asks
        self._listings.clear()
        self._folders.clear()
        self._list_items.forget()

    def paths(self) -> list[str]:
        """Every recorded GET path (lower case), for the replay server and tools."""
        return sorted(self._index)


_FIREWALL_POLICY = "/providers/microsoft.network/firewallpolicies/"
_CHUNK = 1 << 20


def _is_target_file(rel: str) -> bool:
    """Whether the file at ``rel`` (lower case) may answer a read of a private-link target by id, as the read-ahead
    helper guesses it: a resource (``subscriptions/<s>/resourcegroups/<rg>/providers/<ns>/<type>/<name>...``) outside
    Microsoft.Network (whose lists hold its kinds), not an error file. A guess only decides what the helper decodes."""
    if not rel.startswith("subscriptions/") or rel.endswith(".error.json") or "/microsoft.network/" in rel:
        return False
    parts = rel.split("/")
    return len(parts) >= 8 and not len(parts) & 1 and parts[2] == "resourcegroups" and parts[4] == "providers" \
        and rel.count("/providers/") == 1


def _read_bytes(path: str) -> bytes:
    """A file's bytes, as ``open(path, "rb").read()`` gives them and with its errors, through the file descriptor.

    A scan of a 57,000-file tenant reads every file once: the buffered file object that ``open`` builds and closes
    around each read was about 40% of the reads' CPU (0.2 s at 100k resources). A directory fails at the read
    (``IsADirectoryError``) instead of at the open.

    A read shorter than asked for ends a regular file, so a file smaller than :data:`_CHUNK` (all but the largest
    lists) takes one read, not a second that returns nothing: 57k fewer system calls, ~0.05 s of the scan's CPU."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunk = os.read(fd, _CHUNK)
        if len(chunk) < _CHUNK:
            return chunk
        chunks = [chunk]
        while chunk := os.read(fd, _CHUNK):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _index_folder(arm: str) -> tuple[dict[str, str], bool]:
    """Every ``.json`` file below ``arm`` by its lower-case relative path: one ``os.scandir`` walk, plain strings;
    and whether the walk saw every folder (none symlinked, none unreadable).

    Visited as ``Path.rglob`` visits (a folder's files, then its sub-folders in order, symlinked folders not
    followed), so where two names differ only in case the same one is kept. Iterative, with one ``is_dir`` that
    does not follow links per entry: at 100k resources the walk meets 57k files in 36k folders (one per endpoint)."""
    index: dict[str, str] = {}
    complete = True
    stack: list[tuple[str, str]] = [(arm, "")]
    while stack:
        folder, rel = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            complete = False
            continue
        subfolders = []
        for entry in entries:
            name = entry.name
            if name.endswith(".json"):
                index[f"{rel}{name}".lower()] = entry.path
            if entry.is_dir(follow_symlinks=False):
                subfolders.append((entry.path, f"{rel}{name}/"))
            elif complete and entry.is_symlink() and entry.is_dir():
                complete = False  # a symlinked folder: not indexed, but a lookup on disk goes through it
        stack.extend(reversed(subfolders))  # popped in listed order: depth first, as the recursive walk went
    return index, complete


def error_of(body: Any, where: Path | str) -> tuple[int, str, str]:
    """Status, ARM error code and message of an ``.error.json`` body."""
    if not isinstance(body, dict):
        raise InputError(f"{where}: error file must be a JSON object with 'status' and 'error'")
    status = body.get("status")
    if not isinstance(status, int) or not 400 <= status <= 599:
        raise InputError(f"{where}: 'status' must be an HTTP error status (400-599)")
    error: dict[str, Any] = e if isinstance(e := body.get("error"), dict) else {}
    code = c if isinstance(c := error.get("code"), str) else f"Http{status}"
    message = m if isinstance(m := error.get("message"), str) else ""
    return status, code, message
