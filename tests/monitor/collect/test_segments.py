"""Segments (issue 15, design 2.1): what a collection read, stored per shard and loaded through the unchanged
``collect()``. A shared inventory is only as good as its identity with a plain scan and its refusal to turn what
it lacks into absence, so that is what these tests hold."""

from __future__ import annotations

import contextlib
import gc
import json
import random
import sys
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from plmon.checks.engine import evaluate
from plmon.monitor.collect.builder import link
from plmon.monitor.collect.inventory import Inventory, proves_absence
from plmon.monitor.collect.plan import SUBSCRIPTION_LISTS, ArmReader, ReadError, collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.collect.segments import (
    FORMAT_VERSION,
    PatchReader,
    RecordingTap,
    Response,
    Segment,
    SegmentError,
    SegmentReader,
    UnsupportedSegment,
    cut,
    decode_responses,
    encode_segment,
)
from plmon.monitor.model.arm_id import parse_id
from plmon.monitor.model.clock import source_clock
from plmon.monitor.replay.synth import SynthSpec, generate, write_tenant
from plmon.monitor.scan import DEFAULTS, run_scan, scan_document
from plmon.monitor.service.reevaluate import reread_into
from plmon.monitor.state import scaleout

ROOT = Path(__file__).resolve().parents[3]
# Named as tests/kit/tenant_catalog.py names them (folder:<path>), plus a small synthetic tenant.
FOLDERS = {"folder:monitor/demo_tenant": ROOT / "monitor" / "demo_tenant",
           "folder:tests/fixtures/replay/ms-examples": ROOT / "tests" / "fixtures" / "replay" / "ms-examples"}
SYNTH = SynthSpec(subscriptions=3, endpoints=60, seed=5, bad_share=0.3)
MAPPINGS = ("subscriptions", "private_endpoints", "private_link_services", "rmpls", "associations", "targets",
            "virtual_networks", "subnets", "route_tables", "nsgs", "firewalls", "firewall_policies",
            "load_balancers", "nics", "bastion_hosts", "dns_zones", "provider_connections_by_endpoint",
            "endpoints_by_subnet")


@pytest.fixture(scope="module")
def synth_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tenant"
    write_tenant(generate(SYNTH), out)
    return out


def _tenant(name: str, synth_folder: Path) -> Path:
    return synth_folder if name == "synth" else FOLDERS[name]


def _scan(reader: ArmReader, manifest: dict[str, Any]) -> tuple[str, int]:
    """``scan --format json``'s text and the reads it took, through the scan's own code path."""
    result = run_scan(reader, DEFAULTS, manifest=manifest, workers=1, clock=source_clock(manifest))
    return json.dumps(scan_document(result), indent=2), result.stats.requests


def _cli_scan(folder: Path) -> tuple[str, int]:
    """The scan ``plmon scan --from`` runs (a trusted index, typed decoding)."""
    tenant = RecordedTenant(folder)
    tenant.trust_index()
    return _scan(tenant, tenant.manifest)


def _segments(folder: Path, **encode: Any) -> tuple[list[tuple[str, bytes]], dict[str, Any], int]:
    """The tenant collected through a tap, cut per subscription (+ s0), encoded; its manifest; the tap's reads."""
    tenant = RecordedTenant(folder)
    tap = RecordingTap(tenant)
    collect(tap, manifest=tenant.manifest, workers=1)
    segs = [(f"{shard}-a1.z", encode_segment(shard, rs, **encode)) for shard, rs in cut(tap.take()).items()]
    return segs, tenant.manifest, tap.reads


@pytest.mark.parametrize("typed", [False, True])
@pytest.mark.parametrize("name", [*FOLDERS, "synth"])
def test_segments_scan_byte_identical_with_same_reads(name: str, typed: bool, synth_folder: Path) -> None:
    """Collected through a tap, cut per subscription and loaded through SegmentReader (generic or typed decoding),
    a tenant scans to the very text and read count of ``plmon scan --from``."""
    folder = _tenant(name, synth_folder)
    want, want_reads = _cli_scan(folder)
    segs, manifest, tap_reads = _segments(folder)
    shards = [Segment(n, d).shard for n, d in segs]
    assert "s0" in shards and all(s == "s0" or s.startswith("s1-") for s in shards)
    assert len(shards) - 1 >= json.loads(want)["coverage"]["subscriptions_scanned"]  # one per subscription read
    reader = SegmentReader(segs, collection="c-test", typed=typed)
    got, reads = _scan(reader, manifest)
    assert got == want
    assert reads == want_reads == tap_reads == reader.reads


def test_segment_reader_serves_a_concurrent_collection(synth_folder: Path) -> None:
    """Eight workers reading one SegmentReader (shared chunk cache) reach the same scan and reads as one."""
    segs, manifest, _ = _segments(synth_folder)
    one = _scan(SegmentReader(segs), manifest)
    result = run_scan(SegmentReader(segs, cache_bytes=64 * 1024), DEFAULTS, manifest=manifest, workers=8,
                      clock=source_clock(manifest))
    assert (json.dumps(scan_document(result), indent=2), result.stats.requests) == one


def test_failed_shard_is_a_gap_per_list_type_and_never_a_finding(synth_folder: Path) -> None:
    """A subscription whose shard failed is a ShardFailed gap for every list type in its scope, with no finding
    there (no "missing" or "absent" from what was not read), while the other subscriptions' findings stay."""
    full = json.loads(_cli_scan(synth_folder)[0])
    segs, manifest, _ = _segments(synth_folder)
    by_sub = {Segment(n, d).shard: (n, d) for n, d in segs}
    counts = {s: sum(f["resource_id"].lower().startswith(f"/subscriptions/{s[3:]}/") for f in full["findings"])
              for s in by_sub if s != "s0"}
    shard = max(counts, key=lambda s: counts[s])
    sid = shard[3:]
    assert counts[shard] > 0
    failed = scaleout.FailedShard(shard, (f"/subscriptions/{sid}",), "ShardFailed", "never completed")
    reader = SegmentReader([s for k, s in by_sub.items() if k != shard], collection="c-test", failed=[failed])
    doc = json.loads(_scan(reader, manifest)[0])
    scope = f"/subscriptions/{sid}".lower()
    gaps = {g["type"].lower() for g in doc["coverage"]["gaps"]
            if g["code"] == "ShardFailed" and g["scope"].lower() == scope}
    assert gaps >= {type_.lower() for _, type_ in SUBSCRIPTION_LISTS}
    assert not [f for f in doc["findings"] if sid in f["resource_id"].lower()]
    others = [f for f in full["findings"] if sid not in json.dumps(f).lower()]
    assert others and all(f in doc["findings"] for f in others)


def test_unanswered_reads_are_no_answer_never_absence(synth_folder: Path) -> None:
    """A path in no segment and a path under a failed scope raise status None (not absence), naming the shard."""
    segs, _, _ = _segments(synth_folder)
    failed = scaleout.FailedShard("s1-x", ("/subscriptions/X",), "ShardExpired", "past the deadline")
    reader = SegmentReader(segs, collection="c-1", failed=[failed])
    for path, code, says in (("/subscriptions/x/providers/a/b/c", "ShardExpired", "s1-x of c-1: past the deadline"),
                             ("/subscriptions/y/resourceGroups/r", "NotInCollection", "in no segment of c-1")):
        with pytest.raises(ReadError) as err:
            reader.get(path, kind="target")
        assert (err.value.status, err.value.code) == (None, code) and says in err.value.message
        assert not proves_absence(err.value)


def test_newer_read_wins_across_segments() -> None:
    """The same path in two segments answers the newer read, whichever segment is listed first."""
    old = encode_segment("s1-a", [Response("subscriptions/a", "k", 10, {"v": "old"})])
    new = encode_segment("s2-a", [Response("subscriptions/a", "k", 20, {"v": "new"})])
    for order in ([("o", old), ("n", new)], [("n", new), ("o", old)]):
        assert SegmentReader(order).get("/Subscriptions/A?api-version=1", kind="k") == {"v": "new"}


def test_errors_round_trip_with_status_and_code() -> None:
    """An error answer comes back as the same ReadError, status None ("no answer") included."""
    seg = encode_segment("s0", [Response("a", "k", 1, None, 403, "AuthorizationFailed", "no"),
                                Response("b", "k", 1, None, None, "Timeout", "no answer")])
    reader = SegmentReader([("s", seg)])
    for path, status, code in (("a", 403, "AuthorizationFailed"), ("b", None, "Timeout")):
        with pytest.raises(ReadError) as err:
            reader.get(path, kind="k")
        assert (err.value.status, err.value.code, err.value.message) == (status, code, err.value.message)


def test_version_is_the_scaleout_format_version_and_an_unknown_one_is_refused_in_one_line() -> None:
    """collect cannot import state, so the version is repeated: the two must agree; an unknown one is refused."""
    assert FORMAT_VERSION == scaleout.FORMAT_VERSION
    data = bytearray(encode_segment("s0", [Response("a", "k", 1, {"value": []})]))
    data[6:8] = (FORMAT_VERSION + 1).to_bytes(2, "big")
    with pytest.raises(UnsupportedSegment) as err:
        Segment("c/s0.z", bytes(data))
    assert "\n" not in str(err.value) and f"format version {FORMAT_VERSION + 1} unsupported" in str(err.value)


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_a_corrupt_segment_is_refused_whole_in_one_line(damage: str, synth_folder: Path) -> None:
    """A flipped byte, a cut blob or a foreign blob is refused when loaded, not half-way through a collection."""
    name, data = _segments(synth_folder)[0][0]
    if damage == "flip":
        i = random.Random(7).randrange(20, len(data))
        bad = data[:i] + bytes([data[i] ^ 0x55]) + data[i + 1:]
    elif damage == "truncate":
        bad = data[:-100]
    else:
        bad = b'{"not": "a segment"}'
    with pytest.raises(SegmentError) as err:
        SegmentReader([(name, bad)])
    assert "\n" not in str(err.value) and name in str(err.value)


def test_lru_of_decoded_chunks_stays_within_its_bound(synth_folder: Path) -> None:
    """With small chunks and a cache of four, a scan (which reads in the recorded order) and a shuffled read of every
    path never hold more decoded bytes than the bound, far less than the tenant's; the scan is still identical."""
    want, _ = _cli_scan(synth_folder)
    segs, manifest, _ = _segments(synth_folder, chunk_bytes=4096)
    loaded = [Segment(n, d) for n, d in segs]
    chunks, raw = sum(len(s.chunks) for s in loaded), sum(r for s in loaded for _, r in s.chunks)
    bound = 4 * 4096
    reader = SegmentReader(loaded, cache_bytes=bound)
    assert _scan(reader, manifest)[0] == want
    assert 0 < reader.cache_peak <= bound < raw / 4
    assert reader.chunks_decoded == chunks  # the plan reads in the order the tap recorded: each chunk once
    shuffled = SegmentReader(loaded, cache_bytes=bound)
    paths = shuffled.paths()
    random.Random(3).shuffle(paths)
    for path in paths:
        with contextlib.suppress(ReadError):
            shuffled.get(path, kind="")
    assert 0 < shuffled.cache_peak <= bound and shuffled.chunks_decoded > chunks  # evicted and decoded again


def test_tap_records_every_read_of_a_concurrent_collection(synth_folder: Path) -> None:
    """With 8 workers, the tap keeps exactly one answer per read the plan made, errors included."""
    tenant = RecordedTenant(synth_folder)
    tap = RecordingTap(tenant)
    inv = collect(tap, manifest=tenant.manifest, workers=8)
    responses = tap.take()
    assert tap.reads == len(responses) == inv.stats.requests
    assert sum(r.failed for r in responses) == inv.stats.failures
    assert tap.take() == []


# --- PatchReader (B4) ------------------------------------------------------------------------------------------
def _flip_endpoint(folder: Path) -> str:
    """Reject the first endpoint connection of the first endpoint list; that endpoint's id."""
    file = sorted((folder / "arm" / "subscriptions").glob("*/providers/Microsoft.Network/privateEndpoints.json"))[0]
    body = json.loads(file.read_text())
    for item in body["value"]:
        props = item.get("properties", {})
        conns = props.get("privateLinkServiceConnections") or props.get("manualPrivateLinkServiceConnections")
        if conns:
            conns[0]["properties"]["privateLinkServiceConnectionState"]["status"] = "Rejected"
            file.write_text(json.dumps(body))
            return str(item["id"])
    raise AssertionError("no endpoint with a connection")


def _view(inv: Inventory) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    snap = link(inv, source_clock(inv.manifest).now())[0]
    findings = [f.to_dict() for f in evaluate(snap, {}, ()).findings]
    return {m: getattr(snap, m) for m in MAPPINGS}, [g.as_dict() for g in snap.coverage.gaps], findings


def test_patch_reader_replays_a_reread_to_the_live_inventory(tmp_path: Path) -> None:
    """Replica B replaying replica A's recorded re-read of a changed endpoint (through the segment encoding)
    reaches A's inventory, snapshot and findings, with no fallback read."""
    folder = tmp_path / "tenant"
    write_tenant(generate(SYNTH), folder)
    before = RecordedTenant(folder)
    inv = collect(before, manifest=before.manifest, workers=1)
    rid = parse_id(_flip_endpoint(folder))
    tap = RecordingTap(RecordedTenant(folder))
    live, live_result = reread_into(tap, inv, [rid])
    patch = encode_segment("patch", tap.take())
    replay = PatchReader(decode_responses("patch", patch), fallback=RecordedTenant(folder))
    replayed, result = reread_into(replay, inv, [rid])
    assert replay.fallback_reads == 0 and result.requests == live_result.requests > 0
    assert _view(replayed) == _view(live)
    assert _view(live)[2] != _view(inv)[2]  # the change is one the findings see


def test_patch_reader_reads_what_the_patch_lacks_through_its_fallback_and_counts_it(tmp_path: Path) -> None:
    """An empty patch answers every re-read through the fallback, each counted, to the same inventory."""
    folder = tmp_path / "tenant"
    write_tenant(generate(SYNTH), folder)
    inv = collect(RecordedTenant(folder), manifest=RecordedTenant(folder).manifest, workers=1)
    rid = parse_id(_flip_endpoint(folder))
    live, _ = reread_into(RecordedTenant(folder), inv, [rid])
    replay = PatchReader([], fallback=RecordedTenant(folder))
    replayed, result = reread_into(replay, inv, [rid])
    assert replay.fallback_reads == result.requests > 0
    assert _view(replayed) == _view(live)


# --- the tap holds bytes, never bodies ---------------------------------------------------------------------------
class _Body(dict[str, Any]):
    """A body that can be watched (a plain dict takes no weak reference)."""


class _Answers:
    """An ArmReader answering fresh bodies (each a weakly watched ``_Body``), some reads failing."""

    def __init__(self) -> None:
        self.bodies: list[weakref.ref[_Body]] = []

    def get(self, path: str, *, kind: str) -> Any:
        if path.endswith("/denied"):
            raise ReadError(403, "AuthorizationFailed", "no")
        body = _Body(id=path, value=[{"n": i, "name": f"item-{i}" * 3} for i in range(20)], nextLink="x")
        self.bodies.append(weakref.ref(body))
        return body


def test_tap_keeps_no_reference_to_a_recorded_body() -> None:
    """Once ``get`` returned and the caller let the body go, nothing holds it: the tap keeps its bytes only."""
    inner = _Answers()
    tap = RecordingTap(inner, chunk_bytes=2048)
    plain = tap.get("/subscriptions/a/x/0", kind="list")   # nextLink dropped: a copy, the inner body let go
    assert "nextLink" not in plain and sys.getrefcount(plain) == 2   # the local and getrefcount's argument
    assert not [r for r in gc.get_referrers(plain) if r is not locals()]
    del plain
    for i in range(1, 200):
        tap.get(f"/subscriptions/{'ab'[i % 2]}/x/{i}", kind="list")
    with contextlib.suppress(ReadError):
        tap.get("/subscriptions/a/denied", kind="target")
    gc.collect()
    assert len(inner.bodies) == 200 and all(ref() is None for ref in inner.bodies)
    live = tap.responses   # decoded from the chunks, the open one included, without taking them
    recording = tap.take()
    assert recording == live and tap.take() == [] and tap.responses == []
    assert len(recording) == tap.reads == 201
    assert recording.compressed_bytes < 200 * 1200 / 4     # ~1.2 KB of JSON per body, held compressed
    got = list(recording)
    assert [r.key for r in got] == [f"subscriptions/{'ab'[i % 2]}/x/{i}" for i in range(200)] + [
        "subscriptions/a/denied"]
    assert got[5].body == {"id": "/subscriptions/b/x/5", "value": [{"n": i, "name": f"item-{i}" * 3}
                                                                  for i in range(20)]}
    assert got[-1].failed and got[-1].status == 403


def _segments_of(recording: Sequence[Response], **encode: Any) -> list[tuple[str, bytes]]:
    return [(shard, encode_segment(shard, rs, **encode)) for shard, rs in cut(list(recording)).items()]


@pytest.mark.parametrize("chunk_bytes", [1024, 64 * 1024])
@pytest.mark.parametrize("name", [*FOLDERS, "synth"])
def test_tap_segments_are_encode_segments_bytes(name: str, chunk_bytes: int, synth_folder: Path) -> None:
    """A concurrent collection's incrementally written segments decode byte-identically to ``encode_segment``'s of
    the same responses (one per shard, in the order the shards were first read), and scan to the same text."""
    folder = _tenant(name, synth_folder)
    tenant = RecordedTenant(folder)
    tap = RecordingTap(tenant, chunk_bytes=chunk_bytes)
    collect(tap, manifest=tenant.manifest, workers=8)
    recording = tap.take()
    got = [(shard, data) for shard, data, _reads in recording.segments()]
    assert got == _segments_of(recording, chunk_bytes=chunk_bytes)
    assert sum(reads for _, _, reads in recording.segments()) == len(recording) == tap.reads
    want, _ = _cli_scan(folder)
    assert _scan(SegmentReader(got, collection="c"), tenant.manifest)[0] == want


def test_tap_a_key_read_twice_is_written_as_encode_segment_writes_it() -> None:
    """The newest read of a key wins, in the place of that read, as in ``encode_segment``; an older answer that
    comes back later loses."""
    times = iter([10, 20, 30, 15, 40, 50])
    bodies = iter([{"v": 1}, {"v": 2}, {"v": 3}, {"v": "late"}, {"v": 5}, {"v": 6}])

    class Reader:
        def get(self, path: str, *, kind: str) -> Any:
            return next(bodies)

    tap = RecordingTap(Reader(), now_ms=lambda: next(times), chunk_bytes=8)
    for path in ["subscriptions/a/x", "subscriptions/a/y", "subscriptions/a/x", "subscriptions/a/x",
                 "subscriptions/a/z", "y"]:
        tap.get(path, kind="k")
    recording = tap.take()
    segs = [(shard, data) for shard, data, _ in recording.segments()]
    assert segs == _segments_of(recording, chunk_bytes=8)
    assert [(r.key, r.body) for r in Segment("s", segs[0][1]).responses()] == [
        ("subscriptions/a/y", {"v": 2}), ("subscriptions/a/x", {"v": 3}), ("subscriptions/a/z", {"v": 5})]


def test_tap_refuses_a_body_no_segment_holds_when_encoded_not_when_read() -> None:
    """A typed unit (not JSON) reads through as it is; the recording says which path when it is written."""

    class Typed:
        def get(self, path: str, *, kind: str) -> Any:
            return {"value": [object()]}

    tap = RecordingTap(Typed())
    assert tap.get("/subscriptions/a/x", kind="k")["value"]
    recording = tap.take()
    assert len(recording) == 1
    with pytest.raises(SegmentError, match="subscriptions/a/x: the body is not JSON"):
        list(recording.segments())
