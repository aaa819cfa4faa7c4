"""Request ids for HTTP headers (plmon.monitor.http_headers.request_id)."""

from __future__ import annotations

import uuid

from plmon.monitor.http_headers import request_id


def test_a_request_id_is_a_version_4_uuid_as_uuid4_writes_it() -> None:
    """Proves: every id is the text of a version 4, RFC 4122 UUID, written as str(uuid.uuid4()) writes one."""
    for _ in range(2000):
        text = request_id()
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_request_ids_do_not_repeat() -> None:
    """Proves: ids drawn in a row are distinct (128 random bits less the six fixed ones)."""
    assert len({request_id() for _ in range(10000)}) == 10000
