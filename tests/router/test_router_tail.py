"""RoutingPolicy's rules for the run's tail (``unstarted``): the group bound shrinks with the
rollouts still to start, and a much slower server takes no new rollout it would finish last."""

from __future__ import annotations

import pytest

from gym_rollouts.router.policy import TAIL_SLOWDOWN, RoutingPolicy, ServerState


def fleet(n: int) -> list[ServerState]:
    return [ServerState(url=f"http://s{i}/v1") for i in range(n)]


def grouped_pair(unstarted: int | None) -> tuple[list[ServerState], RoutingPolicy]:
    """Two servers; group ``g`` lives on server 0, which holds 6 more requests than server 1."""
    servers = fleet(2)
    policy = RoutingPolicy(servers, group_max_imbalance=16.0)
    assert policy.choose("a", group="g") == 0
    servers[0].in_flight, servers[1].in_flight = 8, 2
    policy.unstarted = None if unstarted is None else (lambda: unstarted)
    return servers, policy


@pytest.mark.parametrize("unstarted, stays", [
    (None, True),   # unknown: the configured bound (16) alone
    (100, True),    # far from the end: min(16, 100 / 1) = 16
    (6, True),      # the gap (6) is what the 6 still to start can fill on the other server
    (5, False),     # fewer: the group splits to the least-loaded server
    (0, False),     # the last rollout: always the least-loaded server
])
def test_the_group_bound_shrinks_with_the_rollouts_still_to_start(unstarted, stays) -> None:
    _, policy = grouped_pair(unstarted)
    assert policy.choose("b", group="g") == (0 if stays else 1)
    assert (policy.group_hits, policy.group_breaks) == ((1, 0) if stays else (0, 1))


def test_the_shrunk_bound_is_shared_among_the_other_servers() -> None:
    servers = fleet(3)
    policy = RoutingPolicy(servers, group_max_imbalance=16.0)
    assert policy.choose("a", group="g") == 0
    servers[0].in_flight, servers[1].in_flight, servers[2].in_flight = 8, 2, 2
    policy.unstarted = lambda: 11  # 11 / 2 others = 5.5 < the gap of 6
    assert policy.choose("b", group="g") != 0
    policy.unstarted = lambda: 12  # 6: the gap fits
    assert policy.choose("c", group="g") in (0, 1, 2)
    assert policy.group_hits == 1


def slow_fleet(unstarted: int, slow_latency: float = 0.4) -> tuple[list[ServerState], RoutingPolicy]:
    """Three fast servers (latency 0.1 s) holding 4 rollouts each, and an idle slow one."""
    servers = fleet(4)
    policy = RoutingPolicy(servers)
    for i in range(3):
        servers[i].rollouts, servers[i].in_flight = 4, 4
    policy.latency = [0.1, 0.1, 0.1, slow_latency]
    policy.unstarted = lambda: unstarted
    return servers, policy


def test_far_from_the_end_the_idle_slow_server_takes_a_new_rollout() -> None:
    # rate = 12 rollouts / 0.1 s = 120 per latency unit; 1000 still to start: horizon 8.3 s >> 0.3 s
    _, policy = slow_fleet(1000)
    assert policy.choose("new") == 3
    assert policy.tail_skips == 0


@pytest.mark.parametrize("unstarted", [0, 10, 30])
def test_near_the_end_a_much_slower_server_takes_no_new_rollout(unstarted) -> None:
    # horizon = unstarted / 120: 0.08 s at 10, 0.25 s at 30, below the 0.3 s extra latency
    servers, policy = slow_fleet(unstarted)
    chosen = policy.choose("new")
    assert chosen != 3 and servers[chosen].rollouts == 5
    assert policy.tail_skips == 1


def test_the_guard_lifts_once_the_rest_of_the_run_outlasts_the_extra_latency() -> None:
    _, policy = slow_fleet(37)  # 37 / 120 = 0.31 s > 0.3 s
    assert policy.choose("new") == 3


def test_a_server_less_than_tail_slowdown_times_slower_is_never_skipped() -> None:
    _, policy = slow_fleet(0, slow_latency=0.1 * TAIL_SLOWDOWN)
    assert policy.choose("new") == 3
    assert policy.tail_skips == 0


def test_sticky_calls_are_not_moved_by_the_guard() -> None:
    servers, policy = slow_fleet(1000)
    assert policy.choose("r") == 3
    policy.unstarted = lambda: 0
    assert policy.choose("r") == 3  # its next turn stays where its conversation is cached
    assert policy.tail_skips == 0


def test_without_latency_estimates_or_a_count_the_guard_is_off() -> None:
    _, policy = slow_fleet(0)
    policy.latency = None
    assert policy.choose("a") == 3
    _, policy = slow_fleet(0)
    policy.unstarted = None
    assert policy.choose("b") == 3
    _, policy = slow_fleet(0)
    policy.latency = [0.1, None, None, None]  # one estimate: nothing to compare
    assert policy.choose("c") == 3


def test_the_guard_never_leaves_no_candidate() -> None:
    servers = fleet(2)
    policy = RoutingPolicy(servers)
    policy.latency, policy.unstarted = [0.1, 0.4], lambda: 0
    servers[0].up = False  # only the slow server accepts
    assert policy.choose("a") == 1
