"""A subscription's ARM budget carried across owners (issue 15): a fan-out shard's new owner starts from what the
last owner left, not from a full burst the server no longer has. Clocks are injected: no waiting."""

from __future__ import annotations

from plmon.monitor.collect.azure.budget import BudgetSet, TokenBucket


def test_a_seeded_bucket_starts_from_the_tokens_left_and_refills_from_there() -> None:
    """Seeded with 2 tokens, two reads go at once and the third waits for the refill."""
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    bucket = TokenBucket(250, 25, clock=lambda: now[0], sleep=sleep)
    bucket.seed(2)
    assert bucket.take() == 0.0 and bucket.take() == 0.0
    assert bucket.take() > 0 and slept


def test_left_after_is_the_burst_minus_what_was_spent_plus_the_refill_since() -> None:
    """250 - spent + 25 per second elapsed, never below 0 nor above the burst."""
    budgets = BudgetSet(250, 25)
    assert budgets.left_after(200, 0) == 50
    assert budgets.left_after(200, 2) == 100
    assert budgets.left_after(300, 0) == 0
    assert budgets.left_after(10, 60) == 250
    budgets.seed("SUB", 3)
    assert budgets.bucket("sub")._tokens == 3
