"""The collection's job queue: a run on one thread takes its jobs without the lock, in the same order."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from plmon.monitor.collect.plan import _Jobs


def _drain(jobs: _Jobs, alone: bool) -> list[int]:
    out: list[int] = []
    if alone:
        jobs.alone()
        while (got := jobs.take()) is not None:
            out.append(got[0])
            got[1]()
    else:
        while (got := jobs.get()) is not None:
            out.append(got[0])
            got[1]()
            jobs.done()
    return out


def _filled(jobs: _Jobs) -> _Jobs:
    def job(i: int) -> Callable[[], None]:
        def go() -> None:
            if i < 20:  # jobs queue more while they run, under other keys and their own
                jobs.put(str(i % 3), job(i * 2 + 1))
        return go
    for i, key in enumerate("aabcab"):
        jobs.put(key, job(i))
    return jobs


def test_a_run_alone_takes_the_jobs_in_the_locked_runs_order() -> None:
    """Proves: take() after alone() hands out exactly the jobs get() does, in the same round-robin order, including
    the jobs queued while they run."""
    locked, unlocked = _drain(_filled(_Jobs()), alone=False), _drain(_filled(_Jobs()), alone=True)
    assert unlocked == locked and len(locked) > 6


def test_take_refuses_a_run_that_is_not_alone() -> None:
    """Proves: the unlocked take() is only for a run alone: elsewhere it fails loudly rather than race."""
    with pytest.raises(AssertionError):
        _filled(_Jobs()).take()
