"""evaluate_scan: the offline scan's evaluation on two processes is the one-process evaluation, and a child that fails,
hangs or cannot be forked safely costs only time, never a finding (monitor/scan.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from plmon.checks import engine, registry
from plmon.checks.engine import evaluate
from plmon.monitor import scan
from plmon.monitor.collect.builder import link
from plmon.monitor.collect.plan import collect
from plmon.monitor.collect.recorded import RecordedTenant
from plmon.monitor.model.snapshot import Snapshot
from plmon.monitor.replay.synth import SynthSpec, generate, write_tenant

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Snapshot:
    """A synth tenant with a hub, appliances and deliberate defects: route checks and the others all find things."""
    folder = tmp_path_factory.mktemp("fork") / "tenant"
    write_tenant(generate(SynthSpec(subscriptions=12, endpoints=400, seed=3)), folder)
    reader = RecordedTenant(folder)
    snap, _ = link(collect(reader, manifest=reader.manifest, workers=1), taken_at=AT)
    return snap


@pytest.fixture
def forking(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Fork whatever the snapshot's size and the test runner's threads; the forks made."""
    made: list[int] = []
    real = os.fork

    def fork() -> int:
        pid = real()
        if pid:
            made.append(pid)
        return pid

    monkeypatch.setattr(scan, "_FORK_MIN_RESOURCES", 0)
    monkeypatch.setattr(scan.threading, "active_count", lambda: 1)
    monkeypatch.setattr(scan.os, "fork", fork)
    yield made


def _shown(ev: engine.Evaluation) -> tuple[Any, ...]:
    return [f.to_dict() for f in ev.findings], ev.check_errors, ev.checks_run


def test_a_forked_evaluation_is_the_one_process_evaluation(snapshot: Snapshot, forking: list[int]) -> None:
    """Route checks in the child, the rest here: the same findings, order, evidence, errors and checks run."""
    got = scan.evaluate_scan(snapshot, {}, ())
    assert len(forking) == 1
    want = evaluate(snapshot)
    assert any(f.check_id.startswith("route.") for f in want.findings)
    assert any(not f.check_id.startswith(("route.", "vwan.")) for f in want.findings)
    assert _shown(got) == _shown(want)


def _in_child(monkeypatch: pytest.MonkeyPatch, act: Callable[[], object]) -> None:
    """``act()`` before each check the forked child runs (the parent's checks run as usual)."""
    parent = os.getpid()
    real = scan.run_check

    def run_check(snap: Snapshot, chk: Any, settings: Any = None) -> engine.CheckRun:
        if os.getpid() != parent:
            act()
        return real(snap, chk, settings)

    monkeypatch.setattr(scan, "run_check", run_check)


def test_a_child_that_fails_leaves_its_checks_to_the_parent(snapshot: Snapshot, forking: list[int],
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A child that dies before sending its runs: the parent runs them, says so in one line, loses nothing."""
    _in_child(monkeypatch, lambda: os._exit(3))
    got = scan.evaluate_scan(snapshot, {}, ())
    assert len(forking) == 1
    assert _shown(got) == _shown(evaluate(snapshot))
    said = capsys.readouterr()
    assert "scan_evaluation_child_failed" in said.out + said.err


def test_a_child_that_hangs_is_killed_at_its_deadline(snapshot: Snapshot, forking: list[int],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A child stuck (a lock a thread held at the fork) costs the deadline, then the parent runs its checks."""
    _in_child(monkeypatch, lambda: time.sleep(60))
    monkeypatch.setattr(scan, "_CHILD_DEADLINE_S", 1.0)
    monkeypatch.setattr(scan, "_CHILD_DEADLINE_FACTOR", 0.0)
    started = time.monotonic()
    got = scan.evaluate_scan(snapshot, {}, ())
    assert time.monotonic() - started < 30
    assert _shown(got) == _shown(evaluate(snapshot))
    with pytest.raises(ChildProcessError):
        os.waitpid(forking[0], os.WNOHANG)   # killed and reaped: no zombie left behind


def test_a_check_that_raises_in_the_child_is_a_coverage_gap_as_in_one_process(
        snapshot: Snapshot, forking: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """A route check's bug in the child comes back as its CheckError gap, with the findings it made before."""
    chk = engine.all_checks()["route.udr-bypassed"]
    real = chk.fn

    def broken(snap: Snapshot, params: Any) -> Iterator[Any]:
        yield from list(real(snap, params))[:1]
        raise RuntimeError("boom")

    monkeypatch.setitem(registry._REGISTRY, chk.id, replace(chk, fn=broken))
    got = scan.evaluate_scan(snapshot, {}, ())
    assert len(forking) == 1
    want = evaluate(snapshot)
    assert [g.type for g in want.check_errors] == ["check:route.udr-bypassed"]
    assert _shown(got) == _shown(want)


def test_no_fork_with_another_thread_alive_or_a_small_tenant(snapshot: Snapshot,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A process with threads (the daemon, the Function host) or a small snapshot evaluates in one process."""
    def no_fork() -> int:
        raise AssertionError("forked")

    monkeypatch.setattr(scan.os, "fork", no_fork)
    monkeypatch.setattr(scan.threading, "active_count", lambda: 2)
    monkeypatch.setattr(scan, "_FORK_MIN_RESOURCES", 0)
    assert _shown(scan.evaluate_scan(snapshot, {}, ())) == _shown(evaluate(snapshot))
    monkeypatch.setattr(scan.threading, "active_count", lambda: 1)
    monkeypatch.setattr(scan, "_FORK_MIN_RESOURCES", snapshot.resources_evaluated() + 1)
    assert _shown(scan.evaluate_scan(snapshot, {}, ())) == _shown(evaluate(snapshot))


def test_scan_of_a_folder_forks_and_writes_the_same_document(forking: list[int],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """run_scan end to end on the demo tenant: the document a forked evaluation gives is the one-process one."""
    demo = Path(__file__).resolve().parents[2] / "monitor" / "demo_tenant"
    reader = RecordedTenant(demo)
    forked = scan.scan_document(scan.run_scan(reader, scan.DEFAULTS, manifest=reader.manifest, workers=1,
                                              taken_at=AT))
    assert len(forking) == 1
    monkeypatch.setattr(scan, "_FORK_MIN_RESOURCES", 10**9)
    plain = scan.scan_document(scan.run_scan(reader, scan.DEFAULTS, manifest=reader.manifest, workers=1,
                                             taken_at=AT))
    assert len(forking) == 1
    assert forked == plain and forked["findings"]
