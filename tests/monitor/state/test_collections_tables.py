"""The collection book on Azurite: one collection row per tick, and every collection, shard or jobs row move a
compare-and-swap that exactly one of two writers wins (so a paused ex-holder can neither start nor publish twice)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import azurite
import pytest
from azure.data.tables import TableServiceClient

from plmon.monitor.state.collections_tables import TablesCollectionBook
from plmon.monitor.state.scaleout import AlreadyWritten, CasConflict, CollectionRow, ScheduleJobs, ShardRow

T0 = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


@pytest.fixture
def book() -> Iterator[TablesCollectionBook]:
    service = TableServiceClient.from_connection_string(azurite.connection_string())
    b = TablesCollectionBook(service, azurite.unique_prefix())
    yield b
    b.drop_tables(service)
    b.close()


def collection(cid: str = "c-20261202T0100Z") -> CollectionRow:
    return CollectionRow(collection=cid, state="stage1", tick=1, started_at=T0, started_by="r0", epoch=3,
                         deadline=T0 + 20 * MINUTE)


def test_one_collection_per_tick_and_stage_moves_by_etag(book: TablesCollectionBook) -> None:
    """A second start of the same tick is refused (continue it instead); of two moves from one read, one wins."""
    row = book.create_collection(collection())
    with pytest.raises(AlreadyWritten):
        book.create_collection(collection())
    seen = book.collection(row.collection)
    assert seen is not None and seen.etag == row.etag and seen.deadline == T0 + 20 * MINUTE
    moved = book.update_collection(replace(seen, state="stage2", shards_total=40))
    with pytest.raises(CasConflict, match="changed since it was read"):
        book.update_collection(replace(seen, state="abandoned"))  # an ex-holder waking up with an old ETag
    published = book.update_collection(replace(moved, state="published", published_at=T0 + 5 * MINUTE))
    book.create_collection(collection("c-20261202T0130Z"))
    assert [r.state for r in book.collections()] == ["published", "stage1"]
    assert [r.collection for r in book.collections(["published"])] == [published.collection]


def test_shard_rows_move_by_etag_and_carry_their_work(book: TablesCollectionBook) -> None:
    """Shards are added once (a redone add returns the stored rows); queued -> running -> done by ETag; a late
    attempt cannot overwrite; a work list larger than one property round-trips."""
    work = [["budget", f"/subscriptions/s/providers/x/{i}" * 3, "byid"] for i in range(800)]
    rows = book.add_shards([ShardRow("c1", "s1-a", 1, "a"), ShardRow("c1", "s2-a", 2, "a", work=work)])
    again = book.add_shards([ShardRow("c1", "s1-a", 1, "a", attempt=9)])
    assert again[0].attempt == 0 and again[0].etag == rows[0].etag
    running = book.update_shard(replace(rows[0], state="running", attempt=1, worker="r1", started_at=T0))
    late = replace(rows[0], state="running", attempt=2, worker="r2")
    book.update_shard(replace(running, state="done", segment="s1-a-a1.z", reads=12, spent=12.0, finished_at=T0))
    with pytest.raises(CasConflict):
        book.update_shard(late)
    stored = {r.shard: r for r in book.shards("c1")}
    assert (stored["s1-a"].state, stored["s1-a"].worker, stored["s1-a"].reads) == ("done", "r1", 12)
    assert [list(w) for w in stored["s2-a"].work] == work and book.shard("c1", "nope") is None


def test_the_jobs_row_is_created_once_and_swapped(book: TablesCollectionBook) -> None:
    """Reminders and retention times move only from the row last read, so a takeover neither repeats nor skips."""
    assert book.jobs() == ScheduleJobs()
    first = book.update_jobs(ScheduleJobs(epoch=1, reminders_at=T0))
    with pytest.raises(CasConflict, match="created by another holder"):
        book.update_jobs(ScheduleJobs(epoch=1))
    book.update_jobs(replace(first, retention_at=T0))
    with pytest.raises(CasConflict):
        book.update_jobs(replace(first, epoch=2))
    assert (book.jobs().reminders_at, book.jobs().retention_at) == (T0, T0)


def test_deleting_a_collection_takes_its_shard_rows_and_nothing_else(book: TablesCollectionBook) -> None:
    """Retention's delete: the row and its 150 shard rows (two transactions) go; another collection's stay."""
    for cid in ("c-old", "c-new"):
        book.create_collection(collection(cid))
        book.add_shards([ShardRow(cid, f"s1-{i:03d}", 1, f"k{i}") for i in range(150 if cid == "c-old" else 2)])
    assert book.delete_collection("c-old") == 151
    assert book.collection("c-old") is None and book.shards("c-old") == []
    assert [r.collection for r in book.collections()] == ["c-new"] and len(book.shards("c-new")) == 2
    assert book.delete_collection("c-old") == 0
