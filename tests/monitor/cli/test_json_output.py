"""``plmon scan --format json`` writes exactly ``json.dumps(doc, indent=2)``, whichever encoder writes it."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from plmon.monitor.cli import root

_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.text(),
                     st.floats(allow_nan=True, allow_infinity=True))
_docs = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner),
    st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), inner, max_size=4)), max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(_docs)
def test_the_fast_text_is_json_dumps_or_none(doc: Any) -> None:
    """orjson's text is used only when it is json's, byte for byte (floats, non-ASCII, DEL, int keys and
    integers beyond 64 bits leave the document to json)."""
    fast = root._orjson_text(doc)
    if fast is not None:
        assert fast.decode("ascii") == json.dumps(doc, indent=2)


def test_the_written_document_is_json_dumps(capsysbinary: Any) -> None:
    """Both paths write the same text and one newline."""
    for doc in ({"a": [1, {"b": "x\x1f\"\\"}], "e": [], "f": {}}, {"é": 1.5}):
        root._echo_json(doc)
        assert capsysbinary.readouterr().out.decode() == json.dumps(doc, indent=2) + "\n"
