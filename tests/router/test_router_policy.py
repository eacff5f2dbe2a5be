"""RoutingPolicy: stickiness, least-outstanding, affinity break, weights, down/up, ties, baselines."""

from __future__ import annotations

import collections

import pytest

from gym_rollouts.router.policy import RoutingPolicy, ServerState


def fleet(n: int = 3, **kw) -> list[ServerState]:
    return [ServerState(url=f"http://s{i}/v1", **kw) for i in range(n)]


def test_new_rollout_goes_to_least_outstanding() -> None:
    servers = fleet(3)
    servers[0].in_flight, servers[1].in_flight, servers[2].in_flight = 5, 1, 3
    assert RoutingPolicy(servers).choose("a") == 1


def test_follow_up_calls_stay_on_the_first_server_while_it_is_healthy() -> None:
    servers = fleet(3)
    policy = RoutingPolicy(servers)
    first = policy.choose("a")
    servers[first].in_flight += 3  # now the busiest, but within the overload bound
    assert all(policy.choose("a") == first for _ in range(5))
    assert policy.server_of("a") == first
    assert policy.affinity_breaks == 0


def test_in_flight_counts_spread_new_rollouts() -> None:
    servers = fleet(4)
    policy = RoutingPolicy(servers)
    for k in range(12):  # each call stays outstanding
        servers[policy.choose(f"r{k}")].in_flight += 1
    assert [s.in_flight for s in servers] == [3, 3, 3, 3]


@pytest.mark.parametrize("sticky_load, best_load, factor, gap, moves", [
    (9, 0, 2.0, 8, True),     # 9 > 2*0 and gap 9 >= 8
    (7, 0, 2.0, 8, False),    # gap 7 < 8: small absolute differences keep affinity
    (20, 10, 2.0, 8, False),  # 20 is not > 2*10
    (21, 10, 2.0, 8, True),
    (21, 10, 3.0, 8, False),  # a looser bound keeps it
    (3, 0, 1.0, 0, True),     # the strictest bound: any imbalance moves
])
def test_affinity_break_follows_the_overload_bound(sticky_load, best_load, factor, gap, moves) -> None:
    servers = fleet(2)
    policy = RoutingPolicy(servers, overload_factor=factor, overload_min_gap=gap)
    assert policy.choose("a") == 0
    servers[0].in_flight, servers[1].in_flight = sticky_load, best_load
    assert policy.choose("a") == (1 if moves else 0)
    assert policy.affinity_breaks == int(moves)
    if moves:  # the rollout now sticks to its new server (equal loads: nobody is overloaded)
        servers[0].in_flight, servers[1].in_flight = 1, 1
        assert policy.choose("a") == 1


def test_waiting_requests_from_metrics_count_as_load() -> None:
    servers = fleet(2)
    policy = RoutingPolicy(servers, overload_min_gap=4)
    assert policy.choose("a") == 0
    servers[0].waiting = 10.0  # other clients queue on server 0
    assert policy.choose("new") == 1
    assert policy.choose("a") == 1  # sticky load 10 > 2 * 1, gap 9 >= 4: moves


def test_weights_scale_capacity() -> None:
    servers = [ServerState("http://big/v1", weight=3.0), ServerState("http://small/v1", weight=1.0)]
    policy = RoutingPolicy(servers)
    for k in range(40):
        servers[policy.choose(f"r{k}")].in_flight += 1
    assert (servers[0].in_flight, servers[1].in_flight) == (30, 10)


def test_down_server_gets_no_new_rollouts_and_returns_when_up() -> None:
    servers = fleet(3)
    policy = RoutingPolicy(servers)
    servers[1].up = False
    picks = collections.Counter(policy.choose(f"r{k}") for k in range(30))
    assert picks[1] == 0 and picks[0] == picks[2] == 15
    servers[1].up = True
    servers[0].in_flight = servers[2].in_flight = 1
    assert policy.choose("fresh") == 1


def test_sticky_rollout_moves_when_its_server_goes_down() -> None:
    servers = fleet(2)
    policy = RoutingPolicy(servers)
    assert policy.choose("a") == 0
    servers[0].up = False
    assert policy.choose("a") == 1
    servers[0].up = True
    assert policy.choose("a") == 1  # stays where it moved (its prefix cache is there now)
    assert policy.affinity_breaks == 1


def test_every_move_of_a_sticky_rollout_is_an_affinity_break() -> None:
    servers = fleet(3)
    policy = RoutingPolicy(servers)
    assert policy.choose("a") == 0 and policy.choose("b") == 1
    assert policy.affinity_breaks == 0  # first calls are placements, not moves
    assert policy.choose("a", frozenset({0})) != 0  # the call failed on its server
    assert policy.affinity_breaks == 1
    servers[1].probation, servers[1].in_flight = True, 1  # on probation with its trial outstanding
    assert policy.choose("b") != 1
    assert policy.affinity_breaks == 2
    assert policy.choose("fresh") in (0, 2) and policy.affinity_breaks == 2


def test_probation_server_takes_one_request_at_a_time() -> None:
    servers = fleet(2)
    servers[0].in_flight = 5
    servers[1].probation = True
    policy = RoutingPolicy(servers)
    assert policy.choose("a") == 1
    servers[1].in_flight = 1  # the trial request is outstanding
    assert policy.choose("b") == 0


def test_excluded_servers_are_avoided_while_another_accepts() -> None:
    servers = fleet(3)
    policy = RoutingPolicy(servers)
    assert policy.choose("a") == 0
    assert policy.choose("a", frozenset({0})) == 1
    assert policy.choose("a", frozenset({0, 1})) == 2
    assert policy.choose("a", frozenset({0, 1, 2})) in (0, 1, 2)  # all tried: still an answer


def test_when_nothing_accepts_a_server_is_still_chosen() -> None:
    servers = fleet(2, up=False)
    policy = RoutingPolicy(servers)
    assert policy.choose("a") in (0, 1)
    assert policy.choose("a", frozenset({0})) == 1


def test_ties_are_broken_fairly() -> None:
    servers = fleet(4)
    policy = RoutingPolicy(servers)
    picks = collections.Counter(policy.choose(f"r{k}") for k in range(400))  # nothing stays in flight
    assert set(picks.values()) == {100}
    servers[3].up = False
    picks = collections.Counter(policy.choose(f"x{k}") for k in range(300))
    assert picks == {0: 100, 1: 100, 2: 100}


def test_kv_saturated_servers_are_skipped_for_new_rollouts() -> None:
    servers = fleet(2)
    policy = RoutingPolicy(servers, kv_saturation=0.9)
    servers[0].kv_usage = 0.95
    servers[1].in_flight = 6
    assert policy.choose("a") == 1
    servers[1].kv_usage = 0.97  # all saturated: plain least-loaded again
    assert policy.choose("b") == 0


def test_forget_drops_affinity() -> None:
    policy = RoutingPolicy(fleet(2))
    policy.choose("a")
    assert policy.live_rollouts == 1
    policy.forget("a")
    policy.forget("never-seen")
    assert policy.live_rollouts == 0 and policy.server_of("a") is None


def test_hash_baseline_pins_and_ignores_load() -> None:
    servers = fleet(4)
    policy = RoutingPolicy(servers, "hash")
    pinned = {k: policy.choose(f"r{k}") for k in range(200)}
    servers[pinned[0]].in_flight = 100
    assert all(policy.choose(f"r{k}") == v for k, v in pinned.items())
    assert len(set(pinned.values())) == 4
    servers[pinned[0]].up = False
    assert policy.choose("r0") != pinned[0]


def test_round_robin_baseline_rotates_per_call() -> None:
    policy = RoutingPolicy(fleet(3), "round_robin")
    assert [policy.choose("same") for _ in range(6)] == [0, 1, 2, 0, 1, 2]


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown routing policy"):
        RoutingPolicy(fleet(1), "random")
