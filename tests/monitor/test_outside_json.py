"""The fast JSON path reads every document exactly as ``outside_json.loads`` reads its text, or leaves it to it."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plmon.monitor import outside_json

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**25), max_value=10**25)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20)


def _same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (1 == 1.0 is not enough: an int must stay an int)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


def _as_loads(data: bytes) -> Any:
    try:
        return outside_json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError and TooDeep are ValueErrors
        return type(err)


@given(_json_values, st.booleans())
@settings(max_examples=300, deadline=None)
def test_fast_loads_equals_loads(value: Any, pretty: bool) -> None:
    """Proves: any document the fast path parses gives exactly what loads gives, types included (big integers
    stay exact integers, not floats)."""
    data = json.dumps(value, indent=2 if pretty else None, ensure_ascii=not pretty).encode("utf-8")
    fast = outside_json.fast_loads(data)
    assert fast is outside_json.UNPARSED or _same(fast, _as_loads(data))


@pytest.mark.parametrize("data", [
    b'"\\ud83d"', b'{"a": "x\\udc00"}', b"NaN", b"[Infinity]", b"1e400", b"\xef\xbb\xbf{}", b"\xff",
    b"123456789012345678901234567890", b"[18446744073709551616]", b"[" * 2000 + b"]" * 2000, b'{"a": 1,}',
    b'{"a":1,"b":2,"a":3}', b'"a\x01"', b"  [1, 2]\r\n",
])
def test_documents_orjson_reads_differently_are_left_to_loads(data: bytes) -> None:
    """Proves: lone surrogates, NaN, Infinity, huge numbers, a BOM, bad UTF-8 and deep nesting are either
    left to loads (UNPARSED) or parsed to the very same value; never a different value or another error."""
    fast = outside_json.fast_loads(data)
    assert fast is outside_json.UNPARSED or _same(fast, _as_loads(data))
    if data.startswith(b"1234") or data.startswith(b'"\\ud83d"') or data == b"NaN":
        assert fast is outside_json.UNPARSED
