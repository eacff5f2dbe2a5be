"""``RunStats.unstarted``: the jobs of the run not started yet, the count the router's tail rules read."""

from __future__ import annotations

from gym_rollouts.engine.stats import RunStats


def test_unstarted_is_the_total_less_finished_dropped_and_in_flight() -> None:
    stats = RunStats(total=100)
    assert stats.unstarted == 100
    stats.prior_done, stats.prior_failed = 30, 2  # a resumed run: earlier rows count as finished
    stats.done, stats.failed, stats.dropped_straddled, stats.in_flight = 10, 1, 3, 8
    assert stats.unstarted == 100 - 30 - 2 - 10 - 1 - 3 - 8


def test_unstarted_is_unknown_without_a_total_and_never_negative() -> None:
    assert RunStats().unstarted is None
    stats = RunStats(total=4)
    stats.done, stats.in_flight = 3, 2  # a retried attempt may overlap its own count for a moment
    assert stats.unstarted == 0
