"""The read-ahead helper of a one-shot scan: what it hands back is what the scan would decode itself, and whatever it
cannot hand back the scan decodes itself, without waiting."""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plmon.monitor.collect import ahead
from plmon.monitor.collect.builder import _NO_TAGS, build_snapshot
from plmon.monitor.collect.inventory import Inventory
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant, _read_bytes
from plmon.monitor.collect.typed import decode_target, decode_unit
from plmon.monitor.model.arm_id import interning, parse_id
from plmon.monitor.replay.synth import SynthSpec, generate, write_tenant

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the read-ahead helper is forked")


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ahead")
    write_tenant(generate(SynthSpec(subscriptions=3, endpoints=90, seed=3, bad_share=0.3)), folder)
    return folder


@pytest.fixture
def any_size(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A helper for a folder of any size, on any machine (the size and CPU checks are what other tests are about)."""
    monkeypatch.setattr(ahead, "MIN_FILES", 0)
    monkeypatch.setattr(ahead, "usable_cpus", lambda: 2)
    yield


def _jobs(folder: Path) -> list[tuple[str, str, str]]:
    reader = RecordedTenant(folder)
    reader.trust_index()
    return [(rel, path, ahead.ZONE_GROUPS) for rel, path in reader._index.items()
            if rel.endswith("/privatednszonegroups.json")]


def _inventory(reader: RecordedTenant) -> Inventory:
    with interning():
        return collect(reader, manifest=reader.manifest, workers=1)


def _same(a: Inventory, b: Inventory) -> None:
    assert a.lists == b.lists and a.gaps == b.gaps and a.zone_groups == b.zone_groups and a.targets == b.targets
    assert a.target_errors.keys() == b.target_errors.keys() and a.stats.requests == b.stats.requests


def _wait_done(read_ahead: ahead.ReadAhead) -> None:
    deadline = time.monotonic() + 60
    while not read_ahead._shared[ahead._DONE] and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_collection_with_the_helper_equals_one_without(tenant: Path, any_size: None) -> None:
    """Proves: a collection whose virtual-network and NIC lists, zone groups and targets all came from a finished helper
    gives the same inventory (and snapshot) as one reading every file itself, and the helper did hand them over."""
    plain, fast = RecordedTenant(tenant), RecordedTenant(tenant)
    plain.trust_index()
    fast.trust_index()
    assert fast.read_ahead() and not fast.read_ahead()  # one helper per reader
    assert fast._ahead is not None
    _wait_done(fast._ahead)
    taken = fast._ahead._jobs.copy()
    assert all(fast._ahead._shared[ahead._CLAIMS + j] == ahead._HELPER for j in taken.values())  # all the helper's
    a, b = _inventory(plain), _inventory(fast)
    asked = taken.keys() - fast._ahead._jobs.keys()
    assert {rel.rsplit("/", 1)[-1] for rel in asked if "/providers/microsoft.network/" in rel} >= {
        "virtualnetworks.json", "networkinterfaces.json", "privatednszonegroups.json"}
    assert len(asked) > 100 and all(r in asked for r in taken if r.endswith("groups.json"))
    _same(a, b)
    with interning():
        assert build_snapshot(a, taken_at=None) == build_snapshot(b, taken_at=None)  # type: ignore[arg-type]
    fast.forget()


def test_a_collection_racing_the_helper_equals_one_without(tenant: Path, any_size: None) -> None:
    """Proves: while the helper is still decoding, the scan takes what it handed over and claims and decodes the rest
    itself: the inventory is the same, whichever of them got to each file first."""
    plain, fast = RecordedTenant(tenant), RecordedTenant(tenant)
    plain.trust_index()
    fast.trust_index()
    assert fast.read_ahead()
    _same(_inventory(plain), _inventory(fast))
    fast.forget()


def test_what_the_helper_hands_back_is_the_typed_decode_and_what_it_could_not_read_is_left(tenant: Path,
                                                                                            any_size: None) -> None:
    """Proves: each unit the helper hands back equals the typed decoder's on the same bytes; a file it could not read
    comes back as none, for the scan to read itself."""
    jobs = _jobs(tenant)
    unreadable = {path for _, path, _ in jobs[::3]}

    def read(path: str) -> bytes:
        if path in unreadable:
            raise PermissionError(13, "refused", path)
        return _read_bytes(path)

    helper = ahead.start(jobs, read)
    assert helper is not None
    _wait_done(helper)
    with interning():
        for rel, path, decoder in jobs:
            got = helper.take(rel, decoder)
            assert got == (None if path in unreadable else decode_unit(decoder, _read_bytes(path)))
    helper.close()


def test_a_helper_that_dies_leaves_every_file_to_the_scan(tenant: Path, any_size: None) -> None:
    """Proves: when the helper dies before writing its results, every take answers none (the scan reads the files
    itself) instead of waiting for it."""
    jobs = _jobs(tenant)

    def read(path: str) -> bytes:
        os._exit(3)

    helper = ahead.start(jobs, read)
    assert helper is not None
    _wait_gone = time.monotonic() + 60
    while helper._shared[ahead._CLAIMS + len(jobs) - 1] == ahead._FREE and time.monotonic() < _wait_gone:
        time.sleep(0.01)  # until the helper claimed its first file (the last one), and died on it
    assert [helper.take(rel, decoder) for rel, _, decoder in jobs] == [None] * len(jobs)
    helper.close()


def test_closing_stops_a_running_helper_and_reaps_it(tenant: Path, any_size: None) -> None:
    """Proves: a collection that ends before it asked the helper for anything leaves no process behind."""

    def read(path: str) -> bytes:
        time.sleep(1)
        return _read_bytes(path)

    helper = ahead.start(_jobs(tenant), read)
    assert helper is not None
    pid = helper._pid
    assert pid is not None
    helper.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_no_helper_for_a_small_folder_a_single_cpu_or_another_thread(tenant: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Proves: the helper is forked only where it pays and a fork is safe: enough files, two CPUs, one thread."""
    jobs = _jobs(tenant)
    assert ahead.start(jobs, _read_bytes, min_files=len(jobs) + 1) is None
    monkeypatch.setattr(ahead, "usable_cpus", lambda: 1)
    assert ahead.start(jobs, _read_bytes, min_files=0) is None
    monkeypatch.setattr(ahead, "usable_cpus", lambda: 2)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert ahead.start(jobs, _read_bytes, min_files=0) is None
    finally:
        stop.set()
        other.join()


def test_a_scoped_or_untrusted_reader_forks_no_helper(tenant: Path, any_size: None) -> None:
    """Proves: a reader whose index is not trusted (a daemon's) never reads ahead."""
    assert not RecordedTenant(tenant).read_ahead()


def test_records_and_ids_come_back_equal_and_ids_shared(tenant: Path) -> None:
    """Proves: the helper's pickling gives back equal records, the builder's one empty tag mapping, and within an
    interning scope the scope's own instance of an id it already holds."""
    target = next(path for rel, path in RecordedTenant(tenant)._index.items() if "/microsoft.storage/" in rel)
    with interning():
        unit = decode_target(_read_bytes(target))
    assert unit is not None and unit.target is not None
    import io
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = ahead._REDUCERS
    pickler.dump(unit)
    with interning():
        known = decode_target(_read_bytes(target))
        back: Any = pickle.loads(buffer.getvalue())
        assert known is not None and known.target is not None
        assert back == unit and back.target.id is known.target.id
    if unit.target.tags is _NO_TAGS:
        assert back.target.tags is _NO_TAGS


def test_ids_are_pickled_as_segments_when_canonical_and_come_back_equal() -> None:
    """Proves: a canonically spelled id crosses as its segments (neither long string in the pickle) and an id spelled
    otherwise as its spelling and slots, and both come back equal to what parse_id gives in this process."""
    import io
    canonical = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/networkInterfaces/nic-77/" \
                "ipConfigurations/ipconfig1"
    odd = "/subscriptions/s1/resourcegroups/rg/providers/Microsoft.Network/networkInterfaces/nic-78"
    with interning():
        ids = [parse_id(canonical), parse_id(odd)]
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = ahead._REDUCERS
    pickler.dump(ids)
    data = buffer.getvalue()
    assert canonical.encode() not in data and canonical.lower().encode() not in data
    assert odd.encode() in data
    with interning():
        back = pickle.loads(data)
        assert back == ids and back[0] is parse_id(canonical) and back[1] is parse_id(odd)
        assert [i.raw for i in back] == [canonical, odd]


def test_the_scan_never_waits_for_a_file_the_helper_is_still_decoding(tenant: Path, any_size: None) -> None:
    """Proves: a file the helper claimed but has not handed back (here it hangs on it) is left to the scan at once,
    and so is every file the helper has not claimed."""
    jobs = _jobs(tenant)

    def read(path: str) -> bytes:
        time.sleep(600)
        return b""

    helper = ahead.start(jobs, read)
    assert helper is not None
    deadline = time.monotonic() + 60
    while helper._shared[ahead._CLAIMS + len(jobs) - 1] == ahead._FREE and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    assert [helper.take(rel, decoder) for rel, _, decoder in jobs] == [None] * len(jobs)
    assert time.monotonic() - started < 30
    assert helper._shared[ahead._CLAIMS] == ahead._SCAN  # the first: claimed by the scan
    helper.close()


def test_helper_starts_on_a_busy_machine_in_a_group_of_the_lowest_weight(tenant: Path, any_size: None) -> None:
    """Proves: the helper is started whatever the load (no idle reading decides it), and where the kernel groups CPU
    time by session it runs in a session of its own whose group has the lowest weight (nice 19), so it only takes
    CPU time the scan and the machine's other processes leave."""
    reader = RecordedTenant(tenant)
    reader.trust_index()
    assert reader.read_ahead()
    helper = reader._ahead
    assert helper is not None and helper._pid is not None
    try:
        group = Path(f"/proc/{helper._pid}/autogroup")
        for _ in range(200):  # the helper sets it first thing after the fork
            if group.exists() and group.read_text().strip().endswith("nice 19"):
                break
            time.sleep(0.01)
        if group.exists() and Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1":
            assert group.read_text().strip().endswith("nice 19")
            assert Path(f"/proc/{helper._pid}/autogroup").read_text() != Path("/proc/self/autogroup").read_text()
    finally:
        reader.forget()
