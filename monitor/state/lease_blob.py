"""The schedule lease as an Azure blob lease: exactly one replica or Function instance runs the schedule.

Why a blob lease: the storage service keeps its time (client clocks do not matter), a lease expires by itself when
its holder dies, and anyone can read who holds it from the blob's properties. The lease blob is empty;
``leases/schedule`` in the inventory container. Our lease id is our own GUID, so ``acquire`` on a lease we hold is
a renewal, and a stale holder's ``renew`` after a takeover is refused (``LeaseIdMismatchWithLeaseOperation``).

On acquire the holder stamps the blob's metadata ``holder``, ``since`` and ``epoch`` (the previous epoch + 1): a
write only the lease holder can make. The epoch fences the holder's other writes (the collection row carries it).
``held`` turns False as soon as a renewal is refused, or when no renewal succeeded for a whole lease duration
(a paused process must assume another took over).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from azure.core.exceptions import AzureError, HttpResponseError
from azure.storage.blob import BlobClient, BlobLeaseClient, ContainerClient

from plmon.monitor.state.azure_errors import error_code, storage_errors
from plmon.monitor.state.scaleout import AlreadyWritten, LeaseLost, LeaseState, StorageUnavailable
from plmon.monitor.state.store import iso, parse_iso

__all__ = ["LEASE_BLOB", "BlobScheduleLease"]

log = structlog.get_logger(__name__)

LEASE_BLOB = "leases/schedule"
# 409 codes that mean "someone else holds it" (acquire) or "it is not ours any more" (renew, release).
_HELD_ELSEWHERE = {"LeaseAlreadyPresent", "LeaseIdMismatchWithLeaseOperation"}
_NOT_OURS = {"LeaseIdMismatchWithLeaseOperation", "LeaseLost", "LeaseNotPresentWithLeaseOperation",
             "LeaseIsBrokenAndCannotBeRenewed", "LeaseIdMissing"}


def ensure_container(container: ContainerClient) -> None:
    """Create the container if missing; a concurrent creator is fine."""
    with contextlib.suppress(AlreadyWritten), storage_errors(f"container {container.container_name}"):
        container.create_container()


class BlobScheduleLease:
    """:class:`plmon.monitor.state.scaleout.ScheduleLease` on one blob of the inventory container."""

    def __init__(self, container: ContainerClient, holder: str, *, duration: timedelta = timedelta(seconds=30),
                 blob: str = LEASE_BLOB, monotonic: Callable[[], float] = time.monotonic) -> None:
        seconds = int(duration.total_seconds())
        if not 15 <= seconds <= 60:
            raise ValueError(f"lease duration {seconds}s: a blob lease lasts 15 to 60 seconds")
        self.holder = holder
        self.duration = seconds
        self._monotonic = monotonic   # injectable: tests pause a holder without waiting out a real lease
        ensure_container(container)
        self._blob: BlobClient = container.get_blob_client(blob)
        self._what = f"schedule lease {container.container_name}/{blob}"
        with contextlib.suppress(AlreadyWritten), storage_errors(self._what):
            self._blob.upload_blob(b"", overwrite=False)  # a leased blob answers 409 too: it exists
        self._lease = BlobLeaseClient(self._blob, lease_id=str(uuid.uuid4()))
        self._held = False
        self._epoch = 0
        self._renewed = 0.0  # monotonic time of the last successful acquire or renew

    @property
    def held(self) -> bool:
        return self._held and self._monotonic() - self._renewed < self.duration

    @property
    def epoch(self) -> int:
        """The epoch this holder stamped (0 before the first acquire)."""
        return self._epoch if self._held else 0

    def try_acquire(self) -> bool:
        started = self._monotonic()
        try:
            self._lease.acquire(lease_duration=self.duration)
        except HttpResponseError as err:
            if err.status_code == 409 and (error_code(err) in _HELD_ELSEWHERE or not error_code(err)):
                self._held = False
                return False
            with storage_errors(self._what):
                raise
        except AzureError:
            with storage_errors(self._what):
                raise
        if self.held:  # acquire with our own id on a lease we still hold is a renewal
            self._renewed = started
            return True
        # Not held as far as we know (never, released, or unrenewed for a whole duration: another holder may have
        # had it meanwhile, even if the service gave it back to our id): a fresh acquire stamps a new epoch, so the
        # writes fenced by the old one are told apart from ours now.
        with storage_errors(self._what):
            props = self._blob.get_blob_properties(lease=self._lease)
            epoch = int((props.metadata or {}).get("epoch") or 0) + 1
            self._blob.set_blob_metadata({"holder": self.holder, "since": iso(datetime.now(UTC)),
                                          "epoch": str(epoch)}, lease=self._lease)
        self._held, self._renewed, self._epoch = True, started, epoch
        log.info("schedule_lease_acquired", holder=self.holder, epoch=epoch)
        return True

    def renew(self) -> None:
        if not self._held:
            raise LeaseLost(f"{self._what}: not held by {self.holder}")
        started = self._monotonic()
        try:
            self._lease.renew()
        except HttpResponseError as err:
            if err.status_code in (409, 412) or error_code(err) in _NOT_OURS:
                self._held = False
                log.warning("schedule_lease_lost", holder=self.holder, code=error_code(err) or err.status_code)
                raise LeaseLost(f"{self._what}: lost by {self.holder} ({error_code(err) or err.status_code})") \
                    from None
            with storage_errors(self._what):
                raise
        except AzureError:
            with storage_errors(self._what):
                raise
        self._renewed = started

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        try:
            self._lease.release()
        except HttpResponseError as err:
            if err.status_code in (409, 412) or error_code(err) in _NOT_OURS:
                return  # it was no longer ours: nothing to give back
            with storage_errors(self._what):
                raise
        except AzureError:
            with storage_errors(self._what):
                raise
        log.info("schedule_lease_released", holder=self.holder)

    def state(self) -> LeaseState:
        with storage_errors(self._what):
            props = self._blob.get_blob_properties()
        meta = props.metadata or {}
        since = meta.get("since")
        return LeaseState(state=str(props.lease.state or "available"), holder=meta.get("holder") or None,
                          since=parse_iso(since) if since else None, epoch=int(meta.get("epoch") or 0),
                          held_here=self.held)

    def break_lease(self, period: int = 0) -> None:
        """End whoever's lease after ``period`` seconds (operators, and tests that skip the expiry wait)."""
        with storage_errors(self._what):
            BlobLeaseClient(self._blob).break_lease(lease_break_period=period)

    def close(self) -> None:
        with contextlib.suppress(StorageUnavailable):  # the lease expires by itself
            self.release()
        self._blob.close()
