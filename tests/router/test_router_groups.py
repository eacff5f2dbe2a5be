"""RoutingPolicy group affinity and the admission contract (``rollouts`` / ``admit_limit``)."""

from __future__ import annotations

import math

import pytest

from gym_rollouts.router.policy import RoutingPolicy, ServerState


def fleet(n: int = 3) -> list[ServerState]:
    return [ServerState(url=f"http://s{i}/v1") for i in range(n)]


def test_rollouts_of_one_group_go_to_one_server() -> None:
    servers = fleet(4)
    policy = RoutingPolicy(servers, group_max_imbalance=100)
    chosen = set()
    for k in range(8):
        index = policy.choose(f"r{k}", group="t0")
        servers[index].in_flight += 1
        chosen.add(index)
    assert len(chosen) == 1
    assert policy.group_hits == 7 and policy.group_breaks == 0
    assert servers[chosen.pop()].rollouts == 8


def test_without_a_group_new_rollouts_spread() -> None:
    servers = fleet(4)
    policy = RoutingPolicy(servers)
    for k in range(8):
        servers[policy.choose(f"r{k}")].in_flight += 1
    assert [s.in_flight for s in servers] == [2, 2, 2, 2]
    assert policy.group_hits == 0


def test_group_affinity_off_spreads_a_group() -> None:
    servers = fleet(4)
    policy = RoutingPolicy(servers, group_affinity=False)
    for k in range(8):
        servers[policy.choose(f"r{k}", group="t0")].in_flight += 1
    assert [s.in_flight for s in servers] == [2, 2, 2, 2]
    assert policy.live_groups == 0


@pytest.mark.parametrize("home_load, best_load, bound, stays", [
    (4, 0, 4.0, True),    # exactly the bound: stays
    (5, 0, 4.0, False),   # beyond it: the group splits
    (12, 9, 4.0, True),   # the gap counts, not the ratio
    (1, 0, 0.0, False),   # bound 0: any imbalance splits
    (0, 0, 0.0, True),
])
def test_group_affinity_follows_the_imbalance_bound(home_load, best_load, bound, stays) -> None:
    servers = fleet(2)
    policy = RoutingPolicy(servers, group_max_imbalance=bound)
    assert policy.choose("a", group="g") == 0
    servers[0].in_flight, servers[1].in_flight = home_load, best_load
    assert policy.choose("b", group="g") == (0 if stays else 1)
    assert (policy.group_hits, policy.group_breaks) == ((1, 0) if stays else (0, 1))


def test_after_a_split_the_group_follows_its_new_server() -> None:
    servers = fleet(2)
    policy = RoutingPolicy(servers, group_max_imbalance=2)
    policy.choose("a", group="g")
    servers[0].in_flight = 5
    assert policy.choose("b", group="g") == 1
    servers[0].in_flight, servers[1].in_flight = 1, 2  # within the bound of server 1 now
    assert policy.choose("c", group="g") == 1


def test_weighted_load_decides_the_bound() -> None:
    servers = fleet(2)
    servers[0].weight = 0.25  # 4x slower: 2 requests there weigh 8
    policy = RoutingPolicy(servers, group_max_imbalance=4)
    servers[1].in_flight = 1
    assert policy.choose("a", group="g") == 0  # 0 load there
    servers[0].in_flight = 2
    assert policy.choose("b", group="g") == 1  # 8 - 1 > 4


def test_group_breaks_on_a_down_server_and_follow_up_turns_stay_sticky() -> None:
    servers = fleet(3)
    policy = RoutingPolicy(servers)
    home = policy.choose("a", group="g")
    servers[home].up = False
    other = policy.choose("b", group="g")
    assert other != home and policy.group_breaks == 1
    servers[home].up = True
    assert policy.choose("b", group="g") == other  # the rollout is sticky, the group ignored
    assert policy.choose("a", group="g") == home


def test_a_group_is_remembered_while_a_rollout_of_it_is_live() -> None:
    servers = fleet(3)
    policy = RoutingPolicy(servers)
    policy.choose("a", group="g")
    policy.choose("b", group="g")
    policy.forget("a")
    assert policy.live_groups == 1
    policy.forget("b")
    assert policy.live_groups == 0 and policy.live_rollouts == 0
    assert [s.rollouts for s in servers] == [0, 0, 0]
    policy.forget("b")  # twice: harmless
    assert [s.rollouts for s in servers] == [0, 0, 0]


def test_rollouts_count_moves_and_forgets() -> None:
    servers = fleet(2)
    policy = RoutingPolicy(servers, overload_min_gap=0, overload_factor=1.0)
    assert policy.choose("a") == 0
    assert [s.rollouts for s in servers] == [1, 0]
    servers[0].up = False
    assert policy.choose("a") == 1  # moved: -1 / +1
    assert [s.rollouts for s in servers] == [0, 1]
    policy.forget("a")
    assert [s.rollouts for s in servers] == [0, 0]


@pytest.mark.parametrize("limits, rollouts, loads, expected", [
    ((math.inf, math.inf), (5, 0), (0, 3), 0),  # no cap: least loaded
    ((2, math.inf), (2, 0), (0, 3), 1),         # server 0 is full: the one with room
    ((2, 2), (2, 2), (0, 3), 0),                # none has room: as if no cap
    ((3, 1), (2, 1), (1, 0), 0),                # only server 0 has room
])
def test_new_rollouts_prefer_servers_with_admission_room(limits, rollouts, loads, expected) -> None:
    servers = fleet(2)
    for s, limit, n, load in zip(servers, limits, rollouts, loads):
        s.admit_limit, s.rollouts, s.in_flight = limit, n, load
    assert RoutingPolicy(servers).choose("new") == expected


def test_group_affinity_respects_the_admission_limit() -> None:
    servers = fleet(2)
    policy = RoutingPolicy(servers, group_max_imbalance=100)
    assert policy.choose("a", group="g") == 0
    servers[0].admit_limit = 1  # full with "a"
    assert policy.choose("b", group="g") == 1
    assert policy.group_breaks == 1


def test_sticky_rollouts_ignore_the_admission_limit() -> None:
    servers = fleet(2)
    policy = RoutingPolicy(servers)
    assert policy.choose("a") == 0
    servers[0].admit_limit = 0
    assert policy.choose("a") == 0  # admission gates new rollouts, never live ones


def test_a_negative_imbalance_bound_is_refused() -> None:
    from gym_rollouts.config.schema import RouterConfig
    from gym_rollouts.errors import ConfigError

    with pytest.raises(ConfigError, match="group_max_imbalance"):
        RouterConfig(group_max_imbalance=-1)


def test_a_recently_finished_group_still_goes_home() -> None:
    """Few workers: a group's repeats run one after another; the prefix cache is still warm."""
    servers = fleet(3)
    policy = RoutingPolicy(servers)
    home = policy.choose("a", group="g")
    policy.forget("a")
    servers[home].in_flight = 2  # within the bound
    assert policy.choose("b", group="g") == home
    assert policy.group_hits == 1 and policy.live_groups == 1


def test_finished_groups_are_bounded(monkeypatch) -> None:
    from gym_rollouts.router import policy as module

    monkeypatch.setattr(module, "RECENT_GROUPS", 3)
    policy = RoutingPolicy(fleet(2))
    for g in range(10):
        policy.choose(f"r{g}", group=f"g{g}")
        policy.forget(f"r{g}")
    assert len(policy._recent) == 3 and list(policy._recent) == ["g7", "g8", "g9"]


@pytest.mark.parametrize("group_size", [8, 16])
def test_by_default_a_burst_of_repeats_stays_on_one_server(group_size) -> None:
    """A GRPO group arriving at once (the engine expands repeats consecutively) is not split by the
    default bound (16) while the fleet is otherwise balanced; its second turns stay sticky (default
    overload gap 16). With the earlier defaults (4, 8) every group of 8 split after its 5th rollout."""
    servers = fleet(4)
    for s in servers:
        s.in_flight = 10  # a busy, balanced fleet
    policy = RoutingPolicy(servers)
    keys = [f"r{k}" for k in range(group_size)]
    homes = set()
    for key in keys:
        index = policy.choose(key, group="task0")
        servers[index].in_flight += 1
        homes.add(index)
    assert len(homes) == 1 and policy.group_breaks == 0
    (home,) = homes
    for key in keys:  # each rollout's second turn, sent when its first is answered
        servers[home].in_flight -= 1
        assert policy.choose(key) == home
        servers[home].in_flight += 1
    assert policy.affinity_breaks == 0


def test_by_default_a_group_still_splits_beyond_twenty_four() -> None:
    servers = fleet(2)
    policy = RoutingPolicy(servers)
    assert policy.choose("a", group="g") == 0
    servers[0].in_flight = 25
    assert policy.choose("b", group="g") == 1 and policy.group_breaks == 1


def cautious_pair(latency: list[float | None]) -> tuple[list[ServerState], RoutingPolicy]:
    """Two servers, learned weights (``cautious_untried``), the group ``g`` living on server 0."""
    servers = fleet(2)
    policy = RoutingPolicy(servers, group_max_imbalance=16)
    policy.latency, policy.cautious_untried = latency, True
    assert policy.choose("a", group="g") == 0
    return servers, policy


@pytest.mark.parametrize("home_load, other_load, stays", [
    (1, 0, False),  # more loaded than the answered server: no slack, the group moves
    (3, 3, True),   # no more loaded than it: stays
    (2, 5, True),   # less loaded: the home is the least loaded anyway
])
def test_no_group_slack_on_a_server_that_has_not_answered(home_load, other_load, stays) -> None:
    servers, policy = cautious_pair([None, 0.1])  # server 0 has not answered, server 1 has
    servers[0].in_flight, servers[1].in_flight = home_load, other_load
    assert policy.choose("b", group="g") == (0 if stays else 1)
    assert (policy.group_hits, policy.group_breaks) == ((1, 0) if stays else (0, 1))


@pytest.mark.parametrize("latency", [
    [None, None],  # nobody has answered: all equally unknown, the bound alone applies
    [0.4, 0.1],    # the home has answered (even slowly): its weight says the rest
])
def test_group_slack_when_the_home_is_not_the_only_unknown(latency) -> None:
    servers, policy = cautious_pair(latency)
    servers[0].in_flight, servers[1].in_flight = 10, 0
    assert policy.choose("b", group="g") == 0
    assert policy.group_hits == 1


def test_the_floor_is_the_least_loaded_answered_server_not_another_unknown() -> None:
    servers = fleet(3)
    policy = RoutingPolicy(servers, group_max_imbalance=16)
    policy.latency, policy.cautious_untried = [None, None, 0.1], True
    assert policy.choose("a", group="g") == 0
    servers[0].in_flight, servers[1].in_flight, servers[2].in_flight = 2, 0, 4
    assert policy.choose("b", group="g") == 0  # server 1 is less loaded but unknown too: 2 <= 4
    servers[2].in_flight = 1
    assert policy.choose("c", group="g") == 1  # 2 > 1: to the least loaded (then the group follows)


def test_without_caution_the_bound_alone_applies() -> None:
    servers, policy = cautious_pair([None, 0.1])
    policy.cautious_untried = False  # hand or fixed weights
    servers[0].in_flight, servers[1].in_flight = 10, 0
    assert policy.choose("b", group="g") == 0


def test_with_the_defaults_a_group_of_16_stays_whole_when_a_batch_ends_beside_it() -> None:
    """The default bound and gap (24, docs/router.md "Choosing the bounds"): a group of 16 repeats
    starts on a server running a batch of 8 and another server's batch of 8 ends meanwhile; the
    group stays whole and its second turns stay sticky. With the earlier 16 / 16 it split."""
    def place(policy: RoutingPolicy, servers: list[ServerState]) -> tuple[set[int], int]:
        for s in servers:
            s.in_flight = 8  # every server runs a batch of 8
        chosen = []
        for r in range(16):
            if r == 4:
                servers[2].in_flight = 0  # server 2's batch ends while the group arrives
            index = policy.choose(f"g-{r}", group="g")
            servers[index].in_flight += 1
            chosen.append(index)
        moved = 0
        for r in range(16):  # second turns: each rollout's first call answered, the next sent
            servers[chosen[r]].in_flight -= 1
            index = policy.choose(f"g-{r}")
            servers[index].in_flight += 1
            moved += index != chosen[r]
        return set(chosen), moved

    servers = fleet(3)
    policy = RoutingPolicy(servers)
    assert (policy.group_max_imbalance, policy.overload_min_gap) == (24.0, 24)
    assert place(policy, servers) == ({0}, 0)
    assert (policy.group_breaks, policy.affinity_breaks) == (0, 0)
    servers = fleet(3)
    earlier = RoutingPolicy(servers, group_max_imbalance=16.0, overload_min_gap=16)
    homes, _ = place(earlier, servers)
    assert homes == {0, 2} and earlier.group_breaks == 1
