"""``plmon replay-server``: serve a recorded tenant over HTTPS as ARM would (see plmon.monitor.replay.server).

Registered on the main group with ``cli.add_command(replay_server)``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
import structlog

from plmon.monitor.replay.server import ARM_READ_LIMITS, DEFAULT_PAGE_SIZE, run_replay_server

__all__ = ["replay_server"]


def _parse_fail_first(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, int]:
    parsed: dict[str, int] = {}
    for value in values:
        glob, sep, times = value.rpartition("=")
        if not sep or not glob or not times.isdigit():
            raise click.BadParameter(f"expected GLOB=N, got {value!r}", ctx=ctx, param=param)
        parsed[glob] = int(times)
    return parsed


def _parse_rate(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, float]:
    cap, sep, rate = value.partition("/")
    try:
        parsed = (float(cap), float(rate)) if sep else (0.0, 0.0)
    except ValueError:
        parsed = (0.0, 0.0)
    if parsed[0] < 1 or parsed[1] <= 0:
        raise click.BadParameter(f"expected CAPACITY/PER_SECOND such as 250/25, got {value!r}", ctx=ctx, param=param)
    return parsed


@click.command("replay-server")
@click.option(
    "--from", "folder", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Recorded tenant folder (manifest.json and arm/).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535), help="0: any free port.")
@click.option(
    "--page-size", default=DEFAULT_PAGE_SIZE, show_default=True, type=click.IntRange(min=1),
    help="Items per page of a list; further pages through nextLink.",
)
@click.option("--latency-ms", default=0.0, type=click.FloatRange(min=0), help="Delay added to every answer.")
@click.option(
    "--throttle-every", default=0, type=click.IntRange(min=0),
    help="Answer every Nth request 429 TooManyRequests with Retry-After (0: never).",
)
@click.option(
    "--retry-after", default=1.0, show_default=True, type=click.FloatRange(min=0),
    help="Seconds sent in Retry-After with a 429 (fractions allowed).",
)
@click.option(
    "--arm-limits", is_flag=True,
    help="Enforce ARM's read limits: a token bucket per subscription and one for the tenant, answering 429 "
         "with Retry-After when it is empty.",
)
@click.option(
    "--arm-limits-rate", default=f"{ARM_READ_LIMITS[0]:g}/{ARM_READ_LIMITS[1]:g}", show_default=True,
    metavar="CAPACITY/PER_SECOND", callback=_parse_rate, help="The buckets of --arm-limits (ARM's defaults).",
)
@click.option(
    "--hang-path", "hang_paths", multiple=True, metavar="GLOB",
    help="Never answer requests whose path matches GLOB (case-insensitive; repeatable).",
)
@click.option(
    "--fail-first", multiple=True, metavar="GLOB=N", callback=_parse_fail_first,
    help="Answer 500 the first N requests of each path matching GLOB (repeatable).",
)
@click.option(
    "--graph-quota", default=0, type=click.IntRange(min=0), metavar="N",
    help="Resource Graph queries allowed per --graph-quota-window, reported in the quota headers (0: no quota).",
)
@click.option("--graph-quota-window", default=5.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Seconds of a Resource Graph quota window (Azure: 15 queries per 5 s).")
@click.option("--graph-page-size", type=click.IntRange(min=1), metavar="N",
              help="Rows per Resource Graph page (default: --page-size; the service serves up to 1000).")
@click.option("--preload", is_flag=True,
              help="Read and parse every recorded file before serving, so no answer pays for a first read "
                   "(benchmarks).")
@click.option(
    "--ca-dir", type=click.Path(file_okay=False, path_type=Path),
    help="Where to write ca.pem (default: a temporary folder removed on exit).",
)
def replay_server(
    folder: Path, host: str, port: int, page_size: int, latency_ms: float, throttle_every: int,
    retry_after: float, hang_paths: tuple[str, ...], fail_first: dict[str, int], ca_dir: Path | None,
    graph_quota: int = 0, graph_quota_window: float = 5.0, graph_page_size: int | None = None,
    arm_limits: bool = False, arm_limits_rate: tuple[float, float] = ARM_READ_LIMITS, preload: bool = False,
) -> None:
    """Serve a recorded tenant over HTTPS as Azure Resource Manager would, until SIGTERM or SIGINT.

    The first line on stdout is {"base_url": ..., "ca_bundle": ...}; point the SDK (or plmon scan
    --arm-endpoint/--ca-bundle with PLMON_ARM_TOKEN set) at it.
    """
    if not structlog.is_configured():
        # stdout carries only the JSON line; logs go to stderr, from info up: structlog's default renders every
        # level, and rendering the debug line of every answer was a twentieth of the server's CPU.
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr),
                            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    if not (folder / "arm").is_dir():
        raise click.BadParameter(f"{folder} has no arm/ folder", param_hint="--from")
    code = run_replay_server(
        folder, host, port, page_size=page_size, latency_ms=latency_ms, throttle_every=throttle_every,
        retry_after=retry_after, hang_paths=hang_paths, fail_first=fail_first, ca_dir=ca_dir,
        graph_quota=graph_quota, graph_quota_window=graph_quota_window, graph_page_size=graph_page_size,
        arm_limits=arm_limits_rate if arm_limits else None, preload=preload,
    )
    sys.exit(code)
