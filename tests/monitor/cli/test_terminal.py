"""Azure text reaches a terminal inert: no escape sequence is obeyed and no rich markup is parsed."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table
from tenantkit import endpoint, net, sub_list, write_tenant

from plmon.monitor.cli.terminal import cells, printable

HOSTILE = "pe\x1b]0;pwned\x07\x1b[2J\x9b31m[bold red]x[/]"
PLMON = [sys.executable, "-c", "from plmon.monitor.cli import main; main()"]


def test_printable_shows_control_characters_and_keeps_text() -> None:
    """ESC, BEL, C1 CSI and DEL become visible \\xNN escapes; tab, newline and ordinary text stay."""
    assert printable("a\x1b[31mb\x07\x9b\x7f\tc\nd") == "a\\x1b[31mb\\x07\\x9b\\x7f\tc\nd"
    assert printable("pe-kv.conn") == "pe-kv.conn"


def test_table_cells_print_markup_literally() -> None:
    """A string cell would be parsed as rich markup; cells() prints `[bold red]` as the text it is."""
    out = io.StringIO()
    table = Table()
    table.add_column("resource")
    table.add_row(*cells(HOSTILE))
    Console(file=out, width=200, force_terminal=True, color_system=None).print(table)
    text = out.getvalue()
    assert "[bold red]x[/]" in text and "\\x1b]0;pwned\\x07" in text
    assert "\x07" not in text and "\x9b" not in text


def test_scan_table_and_console_logs_never_emit_azure_escape_sequences(tmp_path: Path) -> None:
    """An endpoint whose name and request message carry escape sequences prints them visibly, in the
    findings table and in console-format logs, and no raw ESC/BEL from the data reaches the terminal."""
    target = f"{net()}/privateLinkServices/gone"
    pe = endpoint("pe1", target, status="Rejected", request_message=HOSTILE)
    pe["name"] = HOSTILE
    folder = write_tenant(tmp_path / "t", {sub_list("privateEndpoints"): {"value": [pe]}})
    env = {**os.environ, "PLMON_LOG_FORMAT": "console", "PLMON_LOG_LEVEL": "info"}
    r = subprocess.run([*PLMON, "scan", "--from", str(folder)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "connection.rejected" in r.stdout and "\\x1b]0;pwned" in r.stdout
    for stream in (r.stdout, r.stderr):
        assert "\x1b]" not in stream and "\x07" not in stream and "\x9b" not in stream


def test_console_logs_show_escape_sequences_instead_of_obeying_them() -> None:
    """A resource id carrying escape sequences is printed escaped in both log formats (the console
    renderer reprs values; JSON escapes them), so the configured chain never hands a terminal raw controls."""
    code = ("import structlog; from plmon.monitor.logs import configure_logging; import sys; "
            "configure_logging('info', sys.argv[1]); "
            "structlog.get_logger().info('finding_transition', resource_id=sys.argv[2])")
    console = subprocess.run([sys.executable, "-c", code, "console", HOSTILE], capture_output=True, text=True)
    assert "finding_transition" in console.stderr and "x1b]0;pwned" in console.stderr
    assert "\x1b" not in console.stderr and "\x07" not in console.stderr
    as_json = subprocess.run([sys.executable, "-c", code, "json", HOSTILE], capture_output=True, text=True)
    assert json.loads(as_json.stderr)["resource_id"] == HOSTILE
