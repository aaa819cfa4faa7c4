"""Azure text made fit to send: capped in size, control characters shown inert, for every channel at once.

A finding's message, evidence and remediation carry text that resource owners and connection requesters
(possibly another tenant) wrote: a 1 MB ``requestMessage`` would otherwise travel whole in every webhook
event and fill the outbox, and terminal escape bytes would reach whoever reads the alert. The outbox
payload is bounded here when an alert is created (:func:`bounded_finding`), so the webhook, Slack and
digests all send the same bounded text, and the alert says what was cut (``truncated``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["LIST_MAX", "TEXT_MAX", "bounded_finding", "inert"]

TEXT_MAX = 2000   # characters per string from Azure (a name, id, message or evidence value)
LIST_MAX = 100    # items per evidence list
KEY_MAX = 200     # characters of a key where a cut names its field
REMEDIATION_MAX = 4000  # characters of remediation, cut at a line so that no command is left half-quoted
# Fields plmon itself sets from a closed set: never cut, so that receivers can route on them.
_OWN = frozenset({"check_id", "severity"})
# C0 controls except tab and newline, DEL, C1 controls; lone surrogates (not encodable as UTF-8).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def inert(text: str) -> str:
    """``text`` with control characters shown as ``\\xNN`` (as the terminal shows them) and lone surrogates
    as U+FFFD, so no reader of the alert obeys an escape sequence and every encoder accepts it."""
    # No control character and no surrogate is printable: most text is checked in C, a multi-line remediation after
    # setting its newlines and tabs aside (both stay as they are).
    if text.isprintable() or text.replace("\n", "").replace("\t", "").isprintable():
        return text
    return _SURROGATE.sub("\ufffd", _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text))


# Where a value sits in the finding, as (parent, step): spelled out only for a value that is cut, because a
# 1 MB finding holds tens of thousands of values and almost none are.
# A step is a key (``.key``), a key as such (``.key(key)``) or a list index (``[i]``).
_Where = str | tuple["_Where", str, object]
_STEPS = {"key": ".{}", "name": ".{}(key)", "index": "[{}]"}


def _spelled(where: _Where) -> str:
    steps: list[str] = []
    while isinstance(where, tuple):
        where, kind, item = where
        # A key is Azure's text (a tag name, say): shown inert and capped like any other, here too.
        steps.append(_STEPS[kind].format(_cut_key(str(item)) if kind != "index" else item))
    steps.append(where)
    return "".join(reversed(steps))


def _cut_key(key: str) -> str:
    key = inert(key)
    return key if len(key) <= KEY_MAX else key[: KEY_MAX - 1] + "…"


def _cut_text(value: str, where: _Where, cuts: list[dict[str, Any]], limit: int = TEXT_MAX) -> str:
    value = inert(value)
    if len(value) <= limit:
        return value
    cuts.append({"field": _spelled(where), "unit": "characters", "original": len(value), "kept": limit})
    return value[: limit - 1] + "…"


def _cut_remediation(value: str, cuts: list[dict[str, Any]]) -> str:
    value = inert(value)
    if len(value) <= REMEDIATION_MAX:
        return value
    kept: list[str] = []
    size = 0
    all_lines = value.split("\n")
    for line in all_lines:
        if size + len(line) + 1 > REMEDIATION_MAX - 120:
            break
        kept.append(line)
        size += len(line) + 1
    dropped = len(all_lines) - len(kept)
    kept.append(f"# {dropped} more line(s) cut from this alert: `plmon findings` shows the whole remediation")
    cuts.append({"field": "remediation", "unit": "lines", "original": len(all_lines), "kept": len(kept) - 1})
    return "\n".join(kept)


def _bound(value: Any, where: _Where, cuts: list[dict[str, Any]]) -> Any:
    kind = type(value)
    if kind is str:
        return _cut_text(value, where, cuts)
    if kind is int or kind is float or kind is bool or value is None:   # most leaves; the ABC test below is slow
        return value
    if isinstance(value, str):
        return _cut_text(value, where, cuts)
    if kind is dict or isinstance(value, Mapping):
        return {_cut_text(str(k), (where, "name", k), cuts): _bound(v, (where, "key", k), cuts)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        if len(value) > LIST_MAX:
            cuts.append({"field": _spelled(where), "unit": "items", "original": len(value), "kept": LIST_MAX})
        return [_bound(v, (where, "index", i), cuts) for i, v in enumerate(value[:LIST_MAX])]
    return value


def bounded_finding(finding: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the finding with every Azure string inert and capped, what was cut: ``[{field, unit, original,
    kept}]``). Cut strings end with ``…``; evidence lists keep their first :data:`LIST_MAX` items."""
    cuts: list[dict[str, Any]] = []
    out: dict[str, Any] = {}
    for key, value in finding.items():
        if key in _OWN:
            out[key] = value
        elif key == "remediation" and isinstance(value, str):
            out[key] = _cut_remediation(value, cuts)
        else:
            out[key] = _bound(value, key, cuts)
    return out, cuts
