"""JSON from outside plmon (recorded files, ARM and Resource Graph answers, key files), decoded in one place.

Two things in such text break plmon far from where they came in, so they are dealt with here, once:

- Nesting: ``[`` repeated 100,000 times makes :func:`json.loads` raise ``RecursionError``, which no caller
  expects. It becomes :class:`TooDeep`, a ``ValueError`` the callers already turn into an input error or a
  coverage gap. (Event Grid bodies keep their own parser: it rejects such items with a reason, a 400.)
- Lone surrogates: JSON may spell half of a UTF-16 pair (``"pls-public\\ud83d"``). Python keeps it as a
  code point that no UTF-8 output can encode, so every output format (table, CSV, SARIF, HTML, the state
  store) failed on it. It is replaced by the visible text ``\\ud83d``: the name stays recognisable, two
  names differing only there stay distinct, and everything downstream sees ordinary text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["UNPARSED", "TooDeep", "fast_loads", "has_long_number", "loads", "mend_surrogates"]

# A \u escape of a UTF-16 surrogate (D800-DFFF) in the JSON text: only then can a lone one be in the result.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class TooDeep(ValueError):
    """The document nests arrays or objects deeper than the parser can follow."""


def loads(text: str, *, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """:func:`json.loads` for untrusted text: :class:`TooDeep` instead of ``RecursionError``, no lone surrogates.

    Other errors are :func:`json.loads`'s own (``json.JSONDecodeError``, ``ValueError``)."""
    try:
        doc = json.loads(text, parse_constant=parse_constant)
    except RecursionError:
        raise TooDeep("nested too deeply") from None
    if _SURROGATE_ESCAPE.search(text) is None:  # the common case costs one scan of the text, no walk
        return doc
    return mend_surrogates(doc)


# What fast_loads returns when it leaves the document to loads(): the caller decodes the text and calls it.
UNPARSED: Any = object()
# Every byte to "0" for a digit and " " otherwise: a run of 19 zeros marks an integer orjson would read as a float.
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_NUMBER = b"0" * 19


def has_long_number(data: bytes) -> bool:
    """Whether ``data`` holds a run of 19 or more digits: a number that a fast decoder may read as a float where
    :mod:`json` keeps the exact integer (found with one ``translate`` and one substring search)."""
    return _LONG_NUMBER in data.translate(_DIGITS)


def fast_loads(data: bytes) -> Any:
    """The document in UTF-8 ``data`` exactly as :func:`loads` of its text gives it, or :data:`UNPARSED`.

    orjson parses a recorded tenant in about two thirds of :mod:`json`'s time (100k resources: 1.0 against 1.45 s
    of CPU, this check included). Whatever it would read differently is left to :func:`loads`, so the result and
    every error stay :func:`loads`'s own: what orjson refuses (lone surrogates, NaN and Infinity, invalid UTF-8, a
    byte-order mark, nesting beyond 1,024) and any number of 19 or more digits (orjson reads an integer beyond 64
    bits as a float; :mod:`json` keeps it exact), found with one ``translate`` and one substring search.
    """
    if has_long_number(data):
        return UNPARSED
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return UNPARSED


def _mend_text(text: str) -> str:
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def mend_surrogates(doc: Any) -> Any:
    """``doc`` with every lone surrogate in its strings (keys included) written as a ``\\udXXX`` escape.

    Iterative, so a document as deep as the parser allowed does not overflow the stack here."""
    if isinstance(doc, str):
        return _mend_text(doc)
    if not isinstance(doc, (dict, list)):
        return doc
    root: list[Any] = [doc]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        value = container[key]
        if isinstance(value, str):
            container[key] = _mend_text(value)
        elif isinstance(value, list):
            stack.extend((value, i) for i in range(len(value)))
        elif isinstance(value, dict):
            if any(isinstance(k, str) and _SURROGATE.search(k) for k in value):
                mended = {(_mend_text(k) if isinstance(k, str) else k): v for k, v in value.items()}
                value.clear()
                value.update(mended)
            stack.extend((value, k) for k in value)
    return root[0]
