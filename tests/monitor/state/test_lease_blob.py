"""The schedule lease on Azurite's blob service: one holder at a time, readable by anyone, taken over after expiry."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import azurite
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from plmon.monitor.state.lease_blob import BlobScheduleLease
from plmon.monitor.state.scaleout import LeaseLost, container_name


@pytest.fixture
def container() -> Iterator[ContainerClient]:
    service = BlobServiceClient.from_connection_string(azurite.connection_string())
    client = service.get_container_client(container_name(azurite.unique_prefix()))
    yield client
    client.delete_container()
    service.close()


def lease(container: ContainerClient, holder: str, seconds: int = 30) -> BlobScheduleLease:
    return BlobScheduleLease(container, holder, duration=timedelta(seconds=seconds))


def test_one_holder_at_a_time_and_anyone_sees_who(container: ContainerClient) -> None:
    """A holds; B is refused and reads A as holder; after A releases, B holds with the next epoch."""
    a, b = lease(container, "replica-a"), lease(container, "replica-b")
    assert a.try_acquire() and a.held and a.try_acquire()  # acquiring our own lease again renews it
    assert not b.try_acquire() and not b.held
    seen = b.state()
    assert (seen.state, seen.holder, seen.epoch, seen.held_here) == ("leased", "replica-a", 1, False)
    assert seen.since is not None and a.state().held_here
    a.release()
    assert not a.held and b.try_acquire()
    assert (b.state().holder, b.state().epoch, b.epoch) == ("replica-b", 2, 2)
    with pytest.raises(LeaseLost, match="not held by replica-a"):
        a.renew()
    b.break_lease(0)
    assert a.try_acquire() and a.state().epoch == 3


def test_takeover_after_the_holder_stops_renewing(container: ContainerClient) -> None:
    """A stops renewing; B takes over once the service lets the 15 s lease expire (the one real-time wait), and A's
    late renewal is refused, so A steps down."""
    a, b = lease(container, "replica-a", 15), lease(container, "replica-b", 15)
    assert a.try_acquire()
    a.renew()
    deadline = time.monotonic() + 40
    while not b.try_acquire():
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.5)
    assert b.state().holder == "replica-b" and b.state().epoch == 2
    with pytest.raises(LeaseLost, match="lost by replica-a"):
        a.renew()
    assert not a.held and not a.try_acquire()
    b.release()


def test_a_holder_that_reacquires_after_a_pause_stamps_a_new_epoch(container: ContainerClient) -> None:
    """A holder paused past its lease duration no longer holds it (``held`` False); its next acquire, even granted to
    the same lease id, is a fresh one: a new epoch, so writes fenced by the old epoch are told apart from its new ones.
    The pause is a fake monotonic clock moved past the duration (no private field set by hand)."""
    now = [1000.0]
    a = BlobScheduleLease(container, "replica-a", duration=timedelta(seconds=15), monotonic=lambda: now[0])
    assert a.try_acquire() and a.epoch == 1
    now[0] += 5
    assert a.try_acquire() and a.epoch == 1          # within the duration: a renewal, the same epoch
    now[0] += 16                                     # paused past the duration
    assert not a.held
    assert a.try_acquire() and a.held
    assert a.epoch == 2 and a.state().epoch == 2
