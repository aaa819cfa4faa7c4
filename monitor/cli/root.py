"""The ``plmon`` command line: thin wiring from flags to the core, and the exit-code contract.

0 = no finding at or above ``--fail-on``; 1 = there is one; 2 = usage or input error, reported as one
line on stderr. No traceback reaches a user: :func:`main` turns every expected error into that line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import importlib
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from plmon.checks.finding import Severity
from plmon.checks.registry import all_checks
from plmon.monitor import __version__
from plmon.monitor.cli.progress import CollectionProgress, stats_lines
from plmon.monitor.collect.builder import paused_gc
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.errors import InputError
from plmon.monitor.scan import DEFAULTS, ScanConfig, ScanResult, run_scan, scan_document
from plmon.monitor.wiring import open_source, setup_logging

if TYPE_CHECKING:
    from plmon.monitor.config import Config
    from plmon.monitor.scope import Scope

__all__ = ["cli", "main"]

SEVERITIES = [s.value for s in Severity]


def _severity(_: click.Context, __: click.Parameter, value: str | None) -> Severity | None:
    return Severity.parse(value) if value else None


def _framework(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    """``--compliance``: a known framework id (checked before any collection), or one line and exit 2."""
    if value is None:
        return None
    from plmon.monitor.reports.compliance import framework
    return framework(value).id


def source_options(fn: Any) -> Any:
    """The source flags shared by scan, record, serve and report (contracts.md)."""
    fn = click.option("--from", "from_dir", type=click.Path(file_okay=False, path_type=Path),
                      help="Scan a recorded tenant folder instead of Azure.")(fn)
    fn = click.option("--subscription", "subscriptions", multiple=True, metavar="ID",
                      help="Read only this subscription (repeatable). Default: every one the identity lists.")(fn)
    fn = click.option("--management-group", metavar="ID",
                      help="Read the subscriptions below this management group.")(fn)
    fn = click.option("--arm-endpoint", metavar="URL",
                      help="ARM base URL (sovereign cloud, Azure Stack Hub, replay server). "
                           "Default https://management.azure.com.")(fn)
    fn = click.option("--ca-bundle", type=click.Path(dir_okay=False, path_type=Path), metavar="PEM",
                      help="CA bundle to verify the ARM endpoint with.")(fn)
    fn = click.option("--workers", type=click.IntRange(1, 64), default=None,
                      help="Concurrent ARM reads. Default: 4 per subscription read, at least 8 and at most 64 "
                           "(each subscription's read budget is still respected); 1 for a --from folder.")(fn)
    fn = click.option("--via", type=click.Choice(["arm", "resource-graph"]), default="arm", show_default=True,
                      help="Read the per-subscription lists through ARM, or through Resource Graph queries "
                           "(far fewer requests on large tenants; the rest is still read through ARM).")(fn)
    return fn


def do_scan(config: Config | ScanConfig, from_dir: Path | None, observations: Any = None, *, stats: bool = False,
            **live: Any) -> ScanResult:
    with open_source(from_dir, **live) as source:
        reader, on_progress, display = source.reader, None, None
        if CollectionProgress.wanted():
            display = CollectionProgress()
            reader, on_progress = display.wrap(reader), display
        with display or contextlib.nullcontext():
            # A folder is read once per command, as it is now: a path its index lacks is absent, and the index need
            # not outlive the collection.
            forget = None
            if isinstance(source.reader, RecordedTenant):
                source.reader.trust_index()
                if source.workers == 1 and source.subscriptions is None:
                    # The small files are decoded on the second core meanwhile (collect.ahead): a large folder only.
                    source.reader.read_ahead()
                forget = source.reader.forget
            elif source.reader is source.live and hasattr(source.live, "decode_typed"):
                source.live.decode_typed()  # live ARM, read once too: the bulk answers decoded typed, as a folder's
            result = run_scan(reader, config, manifest=source.manifest, observations=observations,
                              subscriptions=source.subscriptions, workers=source.workers, on_progress=on_progress,
                              clock=source.clock, after_collect=forget)
        if stats:
            live_stats = source.live.stats.as_dict() if source.live is not None else None
            for line in stats_lines(result.stats, live_stats):
                click.echo(f"plmon stats: {line}", err=True)
    return result


class LazyGroup(click.Group):
    """A group whose commands from other modules are imported when first asked for (run, or listed by ``--help``).

    ``plmon scan`` needs none of them, and importing every command's module (the daemon's web server, the replay
    server, the report renderers...) cost each scan about 12 MB of its peak memory and a share of its start-up."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy: dict[str, str] = {}  # command name -> "module:attribute"

    def lazy_command(self, name: str, target: str) -> None:
        """Register ``target`` (``"plmon.monitor.cli.serve:serve"``) as the command ``name``, imported on use."""
        self._lazy[name] = target

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self._lazy:
            module, _, attr = self._lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attr)
            if not isinstance(command, click.Command) or command.name != cmd_name:
                raise RuntimeError(f"{self._lazy[cmd_name]} is not the command {cmd_name!r}")
            self.add_command(command)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="plmon", message="%(prog)s %(version)s")
def cli() -> None:
    """plmon: compliance monitor for Azure Private Link."""
    setup_logging()


class _Values(click.Option):
    """A repeatable option that also takes several values after one flag, as Prowler's do
    (``--checks 'connection.*' 'pls.*'``, ``--severity critical high``): the words up to the next option.

    Only for commands without positional arguments (scan, report), where a bare word can mean nothing else."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["multiple"] = True
        super().__init__(*args, **kwargs)

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        for name in self.opts:
            option = parser._long_opt.get(name)
            if option is None:
                continue
            store = option.process

            def process(value: Any, state: Any, store: Any = store) -> None:
                store(value, state)
                while state.rargs and not state.rargs[0].startswith("-"):
                    store(state.rargs.pop(0), state)

            option.process = process


def _words(values: Any) -> tuple[str, ...]:
    """Each value of a :class:`_Values` option split on commas too (``--severity high,medium``)."""
    return tuple(w.strip() for v in values or () for w in str(v).split(",") if w.strip())


def scope_options(fn: Any) -> Any:
    """What to judge and show, shared by scan and report (issue 16, item 8); each overrides the config's ``scope``.

    Each takes one or more values after the flag, and may be repeated."""
    fn = click.option("--checks", "checks", cls=_Values, metavar="GLOB...",
                      help="Run only the checks whose id matches (e.g. 'connection.*' 'pls.*').")(fn)
    fn = click.option("--exclude-checks", "exclude_checks", cls=_Values, metavar="GLOB...",
                      help="Do not run the checks whose id matches.")(fn)
    fn = click.option("--severity", "severity", cls=_Values, metavar="SEV...",
                      help=f"Keep only findings of these severities ({', '.join(SEVERITIES)}).")(fn)
    fn = click.option("--resource-group", "resource_groups", cls=_Values, metavar="GLOB...",
                      help="Keep only findings about resources in a matching resource group.")(fn)
    fn = click.option("--include-tag", "include_tags", cls=_Values, metavar="NAME=VALUE...",
                      help="Keep only findings about resources with one of these tags (NAME alone: any value).")(fn)
    fn = click.option("--exclude-tag", "exclude_tags", cls=_Values, metavar="NAME=VALUE...",
                      help="Leave out findings about resources with one of these tags.")(fn)
    fn = click.option("--include-passed", is_flag=True,
                      help="Also list each resource a check evaluated and found compliant (PASS results).")(fn)
    return fn


def cli_scope(config: Config | None, options: dict[str, Any]) -> Scope:
    """The scope of one command: its flags over the config file's ``scope`` key."""
    from plmon.monitor.scope import Scope, parse_tag, severities
    flags = Scope(checks=_words(options.get("checks")), exclude_checks=_words(options.get("exclude_checks")),
                  severities=severities(_words(options.get("severity")), "--severity"),
                  resource_groups=_words(options.get("resource_groups")),
                  include_tags=tuple(parse_tag(t, "--include-tag") for t in options.get("include_tags") or ()),
                  exclude_tags=tuple(parse_tag(t, "--exclude-tag") for t in options.get("exclude_tags") or ()))
    scope = config.scan_scope().merged(flags) if config is not None else flags
    scope.check_ids()  # a glob that names no check is an input error before anything is read
    return scope


def scoped_result(result: ScanResult, config: ScanConfig, scope: Scope, include_passed: bool) -> ScanResult:
    """``result`` with its pass results (when asked for) and the scope's filters applied."""
    passed = None
    settings = config.check_settings()
    if include_passed:
        from plmon.checks.passed import passed_results
        passed = passed_results(result.snapshot, result.evaluation, settings, result.evaluation.check_errors)
    evaluation, passed = scope.apply(result.snapshot, result.evaluation, passed, settings)
    return dataclasses.replace(result, evaluation=evaluation, passed=passed)


OUTPUT_FORMATS = ("json", "csv", "sarif", "ocsf", "html", "md")
_SUFFIX = {"json": ".json", "csv": ".csv", "sarif": ".sarif", "ocsf": ".ocsf.json", "html": ".html", "md": ".md"}


def _output_formats(_: click.Context, __: click.Parameter, value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    bad = [n for n in names if n not in OUTPUT_FORMATS]
    if bad or not names:
        raise click.BadParameter(f"{', '.join(bad) or repr(value)} is not an output format "
                                 f"(choose from {', '.join(OUTPUT_FORMATS)})")
    return tuple(dict.fromkeys(names))


def _writable_directory(directory: Path) -> Path:
    """``directory``, created when missing; an InputError (one line) when it cannot be written."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"--output-directory {directory}: cannot create it ({err.strerror or err})") from None
    if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
        raise InputError(f"--output-directory {directory}: not a writable directory")
    return directory


def write_outputs(result: ScanResult, config: ScanConfig, formats: tuple[str, ...], directory: Path,
                  filename: str | None) -> None:
    """One file per format in ``directory``, all of the one collection and evaluation in ``result``."""
    from plmon.monitor.reports import build_report, render
    name = output_name(result.snapshot.tenant_id, result.snapshot.taken_at, filename)
    report = None
    for fmt in formats:
        if fmt == "json":
            text = json.dumps(scan_document(result), indent=2) + "\n"
        else:
            report = report or build_report(result, waivers=config.waiver_list())
            text = render(report, fmt)
        write_output(directory, name, fmt, text)


def output_options(fn: Any) -> Any:
    """Several formats from one scan, one file each (issue 16, item 5): shared by scan and report."""
    fn = click.option("--output-formats", callback=_output_formats, metavar="F,F,...",
                      help=f"Also write these formats, one file each, from this one scan "
                           f"({', '.join(OUTPUT_FORMATS)}).")(fn)
    fn = click.option("--output-directory", type=click.Path(path_type=Path), metavar="DIR",
                      help="Where --output-formats writes (created when missing). Default: the working directory.")(fn)
    fn = click.option("--output-filename", metavar="NAME",
                      help="File name without suffix for --output-formats. Default: plmon-<tenant>-<scan time>.")(fn)
    return fn


def output_name(tenant_id: str | None, at: datetime, filename: str | None) -> str:
    """``--output-filename``, or ``plmon-<tenant>-<scan time>``: a recording's time, so the name is stable."""
    return filename or f"plmon-{tenant_id or 'tenant'}-{at.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def write_output(directory: Path, name: str, fmt: str, text: str) -> None:
    path = directory / f"{name}{_SUFFIX[fmt]}"
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise InputError(f"--output-directory {directory}: cannot write {path.name} ({err.strerror})") from None
    click.echo(f"plmon: wrote {path} ({len(text.encode()):,} bytes)", err=True)


@cli.command()
@source_options
@click.option("--format", "fmt", type=click.Choice(["table", "json", "sarif", "csv", "ocsf"]), default="table",
              show_default=True)
@click.option("--fail-on", type=click.Choice(SEVERITIES), callback=_severity,
              help="Exit 1 when a finding at or above this severity exists.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--notify", is_flag=True, help="Record the findings' lifecycle in the state store and send "
              "the alerts of the transitions this scan caused.")
@click.option("--stats", "show_stats", is_flag=True,
              help="Print ARM requests, retries, throttles and time per phase to stderr.")
@click.option("--compliance", "framework_id", metavar="FRAMEWORK_ID", callback=_framework,
              help="Keep the checks mapped to this framework, with each finding's requirements and a "
                   "per-requirement view (ids: plmon checks --compliance-frameworks).")
@output_options
@scope_options
def scan(from_dir: Path | None, fmt: str, fail_on: Severity | None, config_path: Path | None,
         notify: bool = False, show_stats: bool = False, framework_id: str | None = None,
         output_formats: tuple[str, ...] = (), output_directory: Path | None = None,
         output_filename: str | None = None, **live: Any) -> None:
    """One collection plus all checks."""
    outputs = Outputs(output_formats, output_directory, output_filename)
    # The cyclic GC waits for the whole command, output included. What the scan leaves alive (the snapshot and
    # its decided paths stay cached until the process ends) is then frozen out of the collector's view: re-enabled
    # over them, its first pass walked every one (3 s of the 100k scan's CPU) to free nothing.
    with paused_gc():
        try:
            failed = _scan(from_dir, fmt, fail_on, config_path, notify, show_stats, framework_id, outputs=outputs,
                           **live)
        finally:
            gc.freeze()
    if _own_process and not notify:
        _exit_now(1 if failed else 0)
    if failed:
        sys.exit(1)


# Set by main() when it runs as the process's command (the console script, ``python -m``), never when a caller
# (a test) runs it in its own process.
_own_process = False


def _exit_now(code: int) -> None:
    """End the process with ``code`` once everything written is flushed, skipping the interpreter's teardown.

    A 100k scan leaves a ~400 MB heap (its snapshot stays cached), which the teardown walks and partly frees for
    nothing (~0.1 s of CPU). Output is flushed first, as the normal exit would; a flush that fails (a closed pipe)
    takes the normal path, so its error is reported as it was."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        return
    logging.shutdown()
    os._exit(code)


class Outputs:
    """``--output-formats``, ``--output-directory`` and ``--output-filename``, checked before anything is read."""

    def __init__(self, formats: tuple[str, ...], directory: Path | None, filename: str | None) -> None:
        if not formats and (directory is not None or filename is not None):
            raise InputError("--output-directory and --output-filename need --output-formats (e.g. json,csv,html)")
        if filename is not None and (not filename.strip() or Path(filename).name != filename):
            raise InputError(f"--output-filename {filename!r}: a file name without a directory")
        self.formats, self.filename = formats, filename
        self.directory = _writable_directory(directory or Path(".")) if formats else None


def _scan(from_dir: Path | None, fmt: str, fail_on: Severity | None, config_path: Path | None,
          notify: bool, show_stats: bool, framework_id: str | None = None, *, outputs: Outputs | None = None,
          **options: Any) -> bool:
    """``plmon scan``'s work; True when a finding is at or above ``--fail-on``."""
    scope_keys = ("checks", "exclude_checks", "severity", "resource_groups", "include_tags", "exclude_tags",
                  "include_passed")
    chosen = {k: options.pop(k, None) for k in scope_keys}
    live = options
    # Without a file (or --notify, which reads the state and alert settings) the defaults need no validator:
    # the configuration and pydantic are imported only for a file to check (scan.DEFAULTS).
    config = None
    if config_path is not None or notify:
        from plmon.monitor.config import load_config
        config = load_config(config_path)
    store, observations = None, None
    if config is not None and (notify or "state" in config.model_fields_set):  # only then the state store
        from plmon.monitor.cli.alerts import scan_observations
        store, observations = scan_observations(config, notify)
    base: ScanConfig = DEFAULTS if config is None else config
    scope = cli_scope(config, chosen) if config is not None or any(chosen.values()) else None
    settings = scope.config(base) if scope is not None else base
    result = do_scan(settings, from_dir, observations=observations, stats=show_stats, **live)
    if notify and store is not None and config is not None:
        from plmon.monitor.cli.alerts import notify as send_notifications
        from plmon.monitor.cli.alerts import notify_summary
        # the lifecycle sees every finding of the checks run: a finding hidden by a resource or severity filter
        # is still open, and must not be resolved because this run does not show it
        transitions, delivery = send_notifications(store, config, result)
        click.echo(notify_summary(transitions, delivery, store), err=True)
    if scope is not None:
        result = scoped_result(result, settings, scope, bool(chosen["include_passed"]))
    compliance_doc = None
    if framework_id is not None:  # a view of one framework; the lifecycle above saw the whole scan
        from plmon.monitor.reports.compliance import compliance_document, keep_framework
        if fmt == "json":
            compliance_doc = compliance_document(result, framework_id)
        result = keep_framework(result, framework_id)
    if outputs is not None and outputs.directory is not None:
        write_outputs(result, settings, outputs.formats, outputs.directory, outputs.filename)
    if fmt == "json":
        _echo_json(compliance_doc if compliance_doc is not None else scan_document(result))
    elif fmt in ("sarif", "csv", "ocsf"):
        from plmon.monitor.reports import build_report, render
        click.echo(render(build_report(result, waivers=settings.waiver_list()), fmt), nl=False)
    else:
        from plmon.monitor.cli.tables import findings_table, requirements_table  # rich, for a table only
        if framework_id is not None:
            requirements_table(result, framework_id)
        findings_table(result)
    return fail_on is not None and any(f.severity.rank >= fail_on.rank for f in result.evaluation.findings)



_JSON_BATCH = 65536  # pieces of encoded JSON per write: about 0.5 MB of text


def _echo_json(doc: dict[str, Any]) -> None:
    """``click.echo(json.dumps(doc, indent=2))``, the same text written in batches as it is encoded.

    At 100k resources the whole text (18 MB) and the millions of pieces it is joined from were the scan's last
    and highest peak of memory (+40 MB of max RSS); in batches of pieces only one batch is alive at a time. A
    document :func:`_orjson_text` can write byte for byte as :mod:`json` would is written by orjson instead (one
    18 MB buffer, no pieces: 0.33 -> 0.04 s of CPU at 100k resources)."""
    fast = _orjson_text(doc)
    if fast is not None:
        click.echo(fast, nl=False)
        click.echo("")
        return
    batch: list[str] = []
    for chunk in json.JSONEncoder(indent=2).iterencode(doc):
        batch.append(chunk)
        if len(batch) >= _JSON_BATCH:
            click.echo("".join(batch), nl=False)
            batch.clear()
    click.echo("".join(batch))


def _orjson_text(doc: Any) -> bytes | None:
    """``json.dumps(doc, indent=2)`` encoded as ASCII, made by orjson, or None when orjson may write it differently.

    The two agree on a document of exact ``dict`` (string keys), ``list``, ``tuple``, ``str``, ``int``, ``bool`` and
    ``None`` whose text is pure ASCII without DEL: orjson writes other characters as UTF-8 where ``json`` escapes
    them, writes floats in its own notation, and refuses integers beyond 64 bits and lone surrogates (None then
    too). The type walk costs ~0.04 s at 100k resources. Not where the platform's text streams change newlines."""
    if os.linesep != "\n":
        return None
    stack = [doc]
    pop, push = stack.pop, stack.append
    while stack:
        value = pop()
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            continue
        if kind is dict:
            for k, v in value.items():
                if type(k) is not str:
                    return None
                push(v)
        elif kind is list or kind is tuple:
            stack.extend(value)
        else:
            return None
    try:
        out = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
    except TypeError:  # orjson.JSONEncodeError: an integer beyond 64 bits, a lone surrogate, nesting too deep
        return None
    return out if out.isascii() and b"\x7f" not in out else None


@cli.command("checks")
@click.option("--format", "fmt", type=click.Choice(["table", "md", "json"]), default="table",
              show_default=True)
@click.option("--compliance-frameworks", "frameworks", is_flag=True,
              help="List the compliance framework ids --compliance takes (md: every mapping with its justification).")
def list_checks(fmt: str, frameworks: bool = False) -> None:
    """List checks with id, severity and title."""
    registry = all_checks()
    if frameworks:
        from plmon.monitor.reports.compliance import frameworks_listing, mappings_markdown
        if fmt == "json":
            click.echo(json.dumps(frameworks_listing(), indent=2))
        elif fmt == "md":
            click.echo(mappings_markdown(), nl=False)
        else:
            from plmon.monitor.cli.tables import frameworks_table
            frameworks_table(frameworks_listing())
        return
    if fmt == "json":
        click.echo(json.dumps([c.metadata() for c in registry.values()], indent=2))
    elif fmt == "md":
        click.echo("| id | severity | title |\n|---|---|---|")
        for c in registry.values():
            click.echo(f"| `{c.id}` | {c.severity.value} | {c.title} |")
    else:
        from plmon.monitor.cli.tables import checks_table
        checks_table(registry.values())


def main(argv: list[str] | None = None) -> None:
    """Console entry point: runs the CLI and maps every expected failure to one line and exit 2."""
    global _own_process
    _own_process = argv is None
    try:
        cli.main(args=argv, prog_name="plmon", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("plmon: aborted", err=True)
        sys.exit(2)
    except click.ClickException as e:
        click.echo(f"plmon: {e.format_message()}", err=True)
        sys.exit(2)
    except InputError as e:
        click.echo(f"plmon: {e}", err=True)
        if hint := getattr(e, "hint", None):
            click.echo(f"plmon: hint: {hint}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(0)

