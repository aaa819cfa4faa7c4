"""The README cannot drift from the code: its check catalogue is the registry's, every CLI command is documented, and
its replay example runs.

Regenerate with: .venv/bin/python tests/test_readme.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(<!-- checks:start -->\n)(.*?)(<!-- checks:end -->)", re.DOTALL)
SHELL = re.compile(r"```sh\n(.*?)```", re.DOTALL)
WHATIF = re.compile(r"<!-- whatif-example:start -->\n```sh\n(.*?)```\n<!-- whatif-example:end -->", re.DOTALL)
WHATIF_OUT = re.compile(r"<!-- whatif-output:start -->\n```text\n(.*?)```\n<!-- whatif-output:end -->", re.DOTALL)
EXAMPLE = re.compile(r"<!-- replay-example:start -->\n```sh\n(.*?)```\n<!-- replay-example:end -->", re.DOTALL)


def catalogue() -> str:
    out = subprocess.run([sys.executable, "-m", "plmon.monitor", "checks", "--format", "md"],
                         capture_output=True, text=True, check=True)
    return out.stdout


def test_readme_catalogue_matches_registry() -> None:
    """The table between the checks markers is exactly `plmon checks --format md`."""
    m = BLOCK.search(README.read_text())
    assert m, "README.md lost its <!-- checks:start/end --> markers"
    assert m.group(2) == catalogue(), "README catalogue is stale: run .venv/bin/python tests/test_readme.py"


def _command_paths(group: click.Group, ctx: click.Context, prefix: str = "plmon") -> list[str]:
    paths = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            paths.extend(_command_paths(command, click.Context(command, parent=ctx), f"{prefix} {name}"))
        else:
            paths.append(f"{prefix} {name}")
    return paths


def test_readme_documents_every_cli_command() -> None:
    """Every command `plmon --help` lists (and every subcommand of a group, such as `plmon deploy event-filters`)
    appears in one of the README's shell blocks, so a new command cannot ship undocumented."""
    from plmon.monitor.cli.root import cli

    shell = "\n".join(SHELL.findall(README.read_text()))
    missing = [p for p in _command_paths(cli, click.Context(cli)) if not re.search(rf"(^|\s){p}(\s|$)", shell, re.M)]
    assert not missing, f"README.md documents no usage of: {', '.join(missing)}"


def test_readme_replay_example_runs_as_written(tmp_path: Path) -> None:
    """The replay example, pasted into bash at the repository root with the venv present, scans the demo tenant
    through the replay server with the real Azure SDKs and exits 0."""
    m = EXAMPLE.search(README.read_text())
    assert m, "README.md lost its <!-- replay-example:start/end --> markers"
    root = README.parent
    script = tmp_path / "example.sh"
    script.write_text(f"set -euo pipefail\ncd {root}\n" + m.group(1).replace("replay.json", str(tmp_path / "r.json")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLMON_")}
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "pls.auto-approval-wildcard" in r.stdout and "ARM requests:" in r.stderr
    assert "throttled 0" not in r.stderr   # --throttle-every 7 was served and honoured


def test_readme_what_if_example_prints_what_it_shows(tmp_path: Path) -> None:
    """The what-if example, pasted into bash at the repository root, catches the route table change (exit 1 at
    --fail-on high) and prints exactly the output the README shows, explain-path's included."""
    text = README.read_text()
    script, shown = WHATIF.search(text), WHATIF_OUT.search(text)
    assert script and shown, "README.md lost its <!-- whatif-example/whatif-output --> markers"
    body = script.group(1).replace("what-if.json", str(tmp_path / "w.json"))  # (the input is what-if-route-table.json)
    (tmp_path / "example.sh").write_text(f"set -euo pipefail\ncd {README.parent}\n" + body)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLMON_")}
    r = subprocess.run(["bash", str(tmp_path / "example.sh")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout == shown.group(1)


if __name__ == "__main__":
    README.write_text(BLOCK.sub(lambda m: m.group(1) + catalogue() + m.group(3), README.read_text()))
    print("README.md catalogue regenerated")
