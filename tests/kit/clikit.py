"""Running ``plmon`` in the test's own process, and the bad-input rule every command keeps (exit 2, one line)."""

from __future__ import annotations

import pytest

from plmon.monitor.cli import main

__all__ = ["assert_one_line", "run_main"]


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``plmon ARGS`` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err


def assert_one_line(rc: int, err: str, *needles: str) -> str:
    """Exit 2, one stderr line starting 'plmon:' holding every needle, and no traceback text; that line."""
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("plmon: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in err
    return lines[0]
