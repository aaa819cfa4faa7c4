"""HTTP header blocks read as :func:`http.client.parse_headers` reads them, without the email package.

The stdlib parses every header block (an answer's in http.client, a request's in http.server) with email's feed
parser, built for MIME messages: it was about a third of the live reader's CPU per read and over a third of the
replay server's per answer. Plain ``Name: value`` lines, which is all that ARM and the SDK send, are stored here
exactly as that parser stores them; anything else is left to it, so its defects and quirks stay the stdlib's.
"""

from __future__ import annotations

import email.parser
import http.client
import random
import re
from typing import Any

__all__ = ["parse_headers", "request_id"]

# A version 4 UUID's fixed bits (RFC 4122: version 4, variant 10) over 128 random bits, as uuid.uuid4() sets them.
_V4_KEEP = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_V4_SET = (0x4000 << 64) | (0x8000 << 48)

# What email's feedparser takes as a header name: printable ASCII without ':'.
_HEADER_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")


def parse_headers(fp: Any, _class: type[http.client.HTTPMessage] = http.client.HTTPMessage) -> http.client.HTTPMessage:
    """The header block at ``fp`` as ``http.client.parse_headers(fp, _class=_class)`` gives it.

    Lines are read by the stdlib's own reader (so its limits and errors hold); plain ``Name: value`` lines are
    stored as email's compat32 policy stores them (the value after the colon, leading blanks and the line end
    removed); a folded line, a line without a colon or a stray CR sends the whole block to the email parser.
    """
    lines = http.client._read_headers(fp)  # type: ignore[attr-defined]  # the stdlib's own line reader
    msg = _class()
    for line in lines[:-1]:  # (the last is the blank line, or b"" at the end of the stream)
        name, sep, value = line.partition(b":")
        body = value.rstrip(b"\r\n")
        if not sep or not _HEADER_NAME.fullmatch(name) or b"\r" in body:
            return email.parser.Parser(_class=_class).parsestr(b"".join(lines).decode("iso-8859-1"))
        msg.set_raw(name.decode("iso-8859-1"), body.decode("iso-8859-1").lstrip(" \t"))
    msg.set_payload("")
    return msg


def request_id() -> str:
    """A random version 4 UUID in its usual text form, as ``str(uuid.uuid4())`` writes one, for a request id header.

    The live reader names every request (``x-ms-client-request-id``) and the replay server every answer
    (``x-ms-request-id``); ``uuid.uuid4()`` reads the OS's random source and builds a UUID object for each, about
    1% of the reader's CPU per read. An id only correlates a request with its logs, so :mod:`random`'s generator
    (reseeded in a forked child) serves, formatted directly.
    """
    x = "%032x" % ((random.getrandbits(128) & _V4_KEEP) | _V4_SET)
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"
