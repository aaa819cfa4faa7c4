"""Text from Azure made safe for a terminal.

Names, tags and connection request messages are written by whoever owns (or requested) a resource,
possibly another tenant. Rich's ``Text`` stops markup and structlog's renderers escape control
characters in logs, but a table cell or ``click.echo`` line would hand a terminal raw escape sequences
(retitling the window, hiding or rewriting lines). Every string from Azure that plmon prints to a
terminal goes through :func:`printable` (or :func:`cells` for rich tables) first.
"""

from __future__ import annotations

import re

from rich.text import Text

__all__ = ["cells", "printable"]

# C0 controls except tab and newline, DEL, and C1 controls (0x80-0x9f, e.g. the 8-bit CSI).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with every control character shown as a visible ``\\xNN`` escape instead of obeyed."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def cells(*values: object) -> list[Text]:
    """Table cells for rich: plain ``Text`` (a string cell would be parsed as markup) with controls shown."""
    return [Text(printable("" if v is None else str(v))) for v in values]
