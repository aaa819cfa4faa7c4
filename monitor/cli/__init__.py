"""The ``plmon`` command: ``root`` holds the group, ``main`` (the exit-code contract), ``scan``, ``checks`` and the
source options every command shares; each other command has its own module, wired below one line each.

Commands call into the core (``collect``, ``scan``, ``state``, ``service``, ``reports``) and never the reverse;
this is the only package that imports ``plmon.monitor.replay``.
"""

from __future__ import annotations

from plmon.monitor.cli.root import cli, main

__all__ = ["cli", "main"]

# Subcommands that live in their own modules are wired here, explicitly, one line each; each module is imported
# only when its command is run or listed (root.LazyGroup), so ``plmon scan`` does not load the daemon's server.
cli.lazy_command("report", "plmon.monitor.cli.report:report")
cli.lazy_command("explain-path", "plmon.monitor.cli.paths:explain_path")
cli.lazy_command("alerts", "plmon.monitor.cli.alerts:alerts_cmd")
cli.lazy_command("findings", "plmon.monitor.cli.alerts:findings_cmd")
cli.lazy_command("replay-server", "plmon.monitor.cli.replay:replay_server")
cli.lazy_command("serve", "plmon.monitor.cli.serve:serve")
cli.lazy_command("record", "plmon.monitor.cli.record:record_cmd")
cli.lazy_command("deploy", "plmon.monitor.cli.deploy:deploy")
cli.lazy_command("synth", "plmon.monitor.cli.synth:synth")
cli.lazy_command("events", "plmon.monitor.cli.events:events_cmd")
cli.lazy_command("what-if", "plmon.monitor.cli.whatif:what_if")
