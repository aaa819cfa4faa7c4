"""Making attacker-controlled text inert in each output format.

Request messages, names and tags come from whoever can create a resource or a connection request,
so every report treats them as hostile: HTML relies on Jinja2's autoescaping, and this module covers
the formats that have no such guard, Markdown and CSV (spreadsheets run cells that look like formulas).
"""

from __future__ import annotations

import re

__all__ = ["csv_cell", "md_text"]

# Every character that can start Markdown syntax, inline HTML, an entity, a link or an autolink
# (``:`` breaks ``https://`` and ``javascript:``, ``@`` breaks e-mail autolinks). A backslash before
# ASCII punctuation is always literal in CommonMark, so the text renders exactly as it was.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]()<>|!~#{}@:&])")
_WWW = re.compile(r"(?i)\b(www)\.")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def md_text(value: object) -> str:
    """Plain text for a Markdown paragraph or table cell: no markup, links or HTML survive."""
    text = " ".join(str(value if value is not None else "").split())  # newlines would end a table row
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return _WWW.sub(r"\1\\.", text)


def csv_cell(value: object) -> str:
    """A CSV cell that a spreadsheet shows as text instead of evaluating it (OWASP CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
