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

__all__ = ["TooDeep", "loads", "mend_surrogates"]

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
