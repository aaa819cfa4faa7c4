"""The ``plmon`` command: ``root`` holds the group, ``main`` (the exit-code contract), ``scan``, ``checks`` and the
source options every command shares; each other command has its own module, wired below one line each.

Commands call into the core (``collect``, ``scan``, ``state``, ``service``, ``reports``) and never the reverse;
this is the only package that imports ``plmon.monitor.replay``.
"""

from __future__ import annotations

from plmon.monitor.cli.alerts import alerts_cmd, findings_cmd
from plmon.monitor.cli.deploy import deploy
from plmon.monitor.cli.events import events_cmd
from plmon.monitor.cli.paths import explain_path
from plmon.monitor.cli.record import record_cmd
from plmon.monitor.cli.replay import replay_server
from plmon.monitor.cli.report import report
from plmon.monitor.cli.root import cli, main
from plmon.monitor.cli.serve import serve
from plmon.monitor.cli.synth import synth

__all__ = ["cli", "main"]

# Subcommands that live in their own modules are wired here, explicitly, one line each.
cli.add_command(report)
cli.add_command(explain_path)
cli.add_command(alerts_cmd)
cli.add_command(findings_cmd)
cli.add_command(replay_server)
cli.add_command(serve)
cli.add_command(record_cmd)
cli.add_command(deploy)
cli.add_command(synth)
cli.add_command(events_cmd)
