"""The collection's progress display: a total and an ETA once the plan knows its reads, a few subscription bars at a
time that go when done, and nothing drawn when stderr is not a terminal."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

import pytest

from plmon.monitor.cli.progress import CollectionProgress
from plmon.monitor.collect.plan import SUBSCRIPTION_LISTS, collect
from plmon.monitor.collect.recorded import RecordedTenant

PLMON = [sys.executable, "-c", "from plmon.monitor.cli import main; main()"]
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def synth300(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth300") / "tenant"
    r = subprocess.run([*PLMON, "synth", "--subscriptions", "300", "--endpoints", "300", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return out


def _replay(folder: Path, *options: str) -> Any:
    proc = subprocess.Popen([*PLMON, "replay-server", "--from", str(folder), *options], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    yield json.loads(proc.stdout.readline())
    proc.terminate()
    proc.wait(timeout=30)
    proc.stdout.close()


@pytest.fixture(scope="module")
def replay(synth300: Path) -> Any:
    yield from _replay(synth300)


@pytest.fixture(scope="module")
def throttling(synth300: Path) -> Any:
    yield from _replay(synth300, "--throttle-every", "500")


class _Probe:
    """A reader that checks the display after every read the plan makes."""

    def __init__(self, inner: RecordedTenant, display: CollectionProgress) -> None:
        self.inner, self.display = inner, display
        self.most_bars = 0
        self.total_known_at: int | None = None  # reads done when the total first showed
        self.subs_known_at: int | None = None   # likewise for the number of subscriptions

    def get(self, path: str, *, kind: str) -> Any:
        body = self.inner.get(path, kind=kind)
        reads = self.display.progress.tasks[0]
        self.most_bars = max(self.most_bars, len(self.display.progress.tasks) - 2)
        if reads.total is not None and self.total_known_at is None:
            self.total_known_at = int(reads.completed)
        if self.display.progress.tasks[1].total is not None and self.subs_known_at is None:
            self.subs_known_at = int(reads.completed)
        return body


@pytest.mark.parametrize("workers", [1, 8])
def test_total_is_known_before_the_end_and_bars_stay_few(synth300: Path, workers: int) -> None:
    """The subscriptions' count shows from their first list and the reads' total once the reads by id are queued
    (before they run; on one worker, as soon as the lists are read), equal to the reads made; at most max_bars
    subscription bars are ever shown, all gone at the end, and all 300 subscriptions are counted done."""
    display = CollectionProgress(io.StringIO(), max_bars=5)
    probe = _Probe(RecordedTenant(synth300), display)
    with display:
        inv = collect(display.wrap(probe), workers=workers, on_progress=display)
    reads, subs = display.progress.tasks[0], display.progress.tasks[1]
    assert reads.total == reads.completed == inv.stats.requests
    assert probe.subs_known_at is not None and probe.subs_known_at <= 10  # the tenant and association lists only
    assert probe.total_known_at is not None and probe.total_known_at < inv.stats.requests
    if workers == 1:   # (with several, when the last list is parsed depends on the threads' turns)
        assert probe.total_known_at <= 300 * len(SUBSCRIPTION_LISTS) + 10   # as the lists are read
    assert subs.total == subs.completed == 300
    assert 0 < probe.most_bars <= 5 and len(display.progress.tasks) == 2


def test_phase_lines_have_no_source_file_column() -> None:
    """A phase line says what was collected, never which file and line of plmon printed it."""
    out = io.StringIO()
    display = CollectionProgress(out)
    display("management_groups")
    assert "collected: management groups" in out.getvalue() and "progress.py" not in out.getvalue()


def _scan_on_a_terminal(replay: dict[str, str], rows: int = 30, level: str = "warning") -> tuple[int, str]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, 200, 0, 0))
    env = {**os.environ, "PLMON_ARM_TOKEN": "t", "TERM": "xterm", "PLMON_LOG_LEVEL": level}
    proc = subprocess.Popen([*PLMON, "scan", "--arm-endpoint", replay["base_url"], "--ca-bundle", replay["ca_bundle"],
                             "--format", "json"], stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    got = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:   # the child closed the terminal
                break
            if not chunk:
                break
            got += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=60), got.decode(errors="replace")


def test_300_subscriptions_through_a_replay_server_fit_a_terminal(replay: dict[str, str]) -> None:
    """plmon scan of a 300-subscription tenant on a 30-row terminal never redraws more rows than fit, shows the
    reads' total and an ETA, and ends with every subscription read."""
    code, screen = _scan_on_a_terminal(replay)
    assert code == 0
    redraws = [len(m.group(0)) // len("\x1b[2K\x1b[1A") for m in re.finditer(r"(?:\x1b\[2K\x1b\[1A)+", screen)]
    assert redraws and max(redraws) + 1 <= 30 - 4
    text = _ANSI.sub("", screen)
    assert re.search(r"ARM reads .* (\d+)/\1 ", text), "the total never showed"
    assert re.search(r"ARM reads .* \d+/\d+ +\d+:\d\d:\d\d +\d+:\d\d:\d\d", text), "no ETA beside the total"
    assert "subscriptions read" in text and "300/300" in text
    assert "progress.py" not in text


def test_log_lines_print_above_the_bars(throttling: dict[str, str]) -> None:
    """A log line written while the bars are live (a 429 honoured, at info) gets a line of its own above them, never
    glued to the end of a bar."""
    code, screen = _scan_on_a_terminal(throttling, level="info")
    assert code == 0
    lines = _ANSI.sub("", screen).splitlines()
    logged = [line for line in lines if "arm_throttled" in line]
    assert logged and all(re.match(r"\d{4}-\d\d-\d\dT[\d:.]+Z \[info", line) for line in logged), logged[:3]


def test_no_bars_when_stderr_is_not_a_terminal(replay: dict[str, str]) -> None:
    """Into a pipe, the same scan draws nothing on stderr: its output is the JSON document alone."""
    env = {**os.environ, "PLMON_ARM_TOKEN": "t", "PLMON_LOG_LEVEL": "warning"}
    r = subprocess.run([*PLMON, "scan", "--arm-endpoint", replay["base_url"], "--ca-bundle", replay["ca_bundle"],
                        "--format", "json"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and json.loads(r.stdout)["coverage"]["subscriptions_scanned"] == 300
