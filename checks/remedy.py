"""Remediation commands that are safe to paste into a shell: the one place ``az ...`` lines are built.

A remediation names resources whose names their owners chose, and a connection's requester may sit in
another tenant. Pasted into bash, an unquoted ``*`` globs, ``$(...)`` and backticks run, ``;`` starts
another command and ``<``, ``>`` redirect; double quotes stop none of the expansions. So every argument of
every command goes through :func:`shlex.quote` here (plain ids and names stay as they are, anything else
is single-quoted), and text that is not a command is a shell comment (:func:`note`), inert if pasted with
the commands and still readable.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Iterable

__all__ = ["alternative", "az", "az_head", "az_more", "chain", "fill", "lines", "note"]

# Line breaks and other control characters would end a comment early or hide text: shown as \xNN instead.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

Arg = str | int | Iterable[str]


def _one_line(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _argv(args: Iterable[Arg]) -> list[str]:
    out: list[str] = []
    for a in args:
        if type(a) is str:   # most arguments: no str() copy, no union isinstance
            out.append(a)
        elif isinstance(a, str | int):
            out.append(str(a))
        else:
            out.extend(str(x) for x in a)  # one flag taking several values: each its own argument
    return out


# Each distinct argument quoted once: a finding's fixes repeat the same flags, groups and names for each of its
# endpoints (a route table's udr-bypassed fixes were ~10% of a route-table event in the daemon, issue 14).
_QUOTED: dict[str, str] = {}
_QUOTED_MAX = 4096   # ~1 MB at most: the repeated texts are back after a clear at once


def _quote(text: str) -> str:
    got = _QUOTED.get(text)
    if got is None:
        if len(_QUOTED) >= _QUOTED_MAX:
            _QUOTED.clear()
        got = _QUOTED[text] = shlex.quote(text)
    return got


def note(text: str) -> str:
    """A line of prose for the reader: a shell comment, on one line whatever the names in it hold."""
    return "# " + _one_line(text)


def az(*args: Arg, comment: str | None = None) -> str:
    """``az`` with ``args`` (a list or tuple stands for several arguments), each quoted for a POSIX shell;
    ``comment`` follows as a shell comment."""
    line = " ".join(map(_quote, ["az", *_argv(args)]))   # shlex.join, each argument's quoting kept
    return f"{line}   {note(comment)}" if comment else line


def az_head(*args: Arg) -> str:
    """The quoted front of an ``az`` line whose last arguments differ per item (:func:`az_more` ends it): a route
    table's udr-bypassed fixes repeat the same dozen flags and names for each of its ~600 endpoints (issue 14)."""
    return " ".join(map(_quote, ["az", *_argv(args)]))


def az_more(head: str, *args: Arg) -> str:
    """``az(*front, *args)`` from ``head = az_head(*front)``: only ``args`` are quoted again."""
    return " ".join([head, *map(_quote, _argv(args))])


def fill(template: str, **values: str) -> str:
    """A command from a table's template (``'az storage account update --ids "{id}" ...'``): split as the
    shell would, ``values`` put into each argument, every argument quoted again."""
    return " ".join(shlex.quote(part.format(**values)) if formatted else part for part, formatted in _plan(template))


@functools.lru_cache(maxsize=256)
def _split(template: str) -> tuple[str, ...]:
    """A template split as the shell would, once: the table has a few dozen, filled for thousands of findings."""
    return tuple(shlex.split(template))


@functools.lru_cache(maxsize=256)
def _plan(template: str) -> tuple[tuple[str, bool], ...]:
    """The template's arguments: quoted once when no value goes into them (no brace: formatting keeps them as they
    are), else (the argument, True) to be formatted and quoted per finding."""
    return tuple((part, True) if "{" in part or "}" in part else (shlex.quote(part), False)
                 for part in _split(template))


def chain(*commands: str) -> str:
    """Commands where each runs only if the one before succeeded (``&&``)."""
    return " && ".join(commands)


def alternative(command: str) -> str:
    """Another way to fix it, as a comment so that pasting the whole remediation runs only the first way; kept
    on one line (a line break inside a quoted name would otherwise end the comment and run the rest)."""
    return "# or: " + _one_line(command)


def lines(*parts: str) -> str:
    """The remediation text: one command or comment per line."""
    return "\n".join(p for p in parts if p)
