"""CapacityEstimator: cold start, convergence, stability, late joiners, hand weights."""

from __future__ import annotations

import pytest

from gym_rollouts.router.capacity import CapacityEstimator
from gym_rollouts.router.policy import RoutingPolicy, ServerState


def fleet(n: int) -> list[ServerState]:
    return [ServerState(url=f"http://s{i}/v1") for i in range(n)]


def test_equal_weights_until_every_server_has_its_warmup() -> None:
    servers = fleet(3)
    est = CapacityEstimator(servers, warmup=2, power=2.0)
    for _ in range(2):
        est.observe(0, 0.05)
        est.observe(1, 0.20)
    assert [s.weight for s in servers] == [1.0, 1.0, 1.0] and not est.warm
    est.observe(2, 0.05)
    est.observe(2, 0.05)
    assert est.warm
    assert servers[0].weight == 1.0 and servers[1].weight == pytest.approx(0.25 ** 2)


@pytest.mark.parametrize("slow_factor", [2.0, 4.0, 8.0])
def test_a_slower_server_is_found_within_tens_of_calls(slow_factor: float) -> None:
    servers = fleet(4)
    est = CapacityEstimator(servers, power=2.0)
    for _ in range(20):
        for i in range(4):
            est.observe(i, 0.05 * (slow_factor if i == 3 else 1.0))
    assert servers[3].weight == pytest.approx(max(0.05, (1 / slow_factor) ** 2), rel=0.05)
    assert [s.weight for s in servers[:3]] == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("power, expected", [(1.0, 0.5), (2.0, 0.25), (3.0, 0.125)])
def test_the_weight_is_the_latency_ratio_to_the_power(power: float, expected: float) -> None:
    servers = fleet(2)
    est = CapacityEstimator(servers, warmup=1, power=power)
    est.observe(0, 0.05)
    est.observe(1, 0.10)
    assert servers[1].weight == pytest.approx(expected)


def test_the_estimate_is_floored() -> None:
    servers = fleet(2)
    est = CapacityEstimator(servers, warmup=1, min_weight=0.1)
    est.observe(0, 0.01)
    est.observe(1, 10.0)
    assert servers[1].weight == 0.1


def test_a_late_server_weighs_the_mean_until_it_has_samples() -> None:
    servers = fleet(3)
    servers[2].member = False  # absent at start-up
    est = CapacityEstimator(servers, warmup=1, power=2.0)
    est.observe(0, 0.05)
    est.observe(1, 0.10)
    assert est.warm and servers[2].weight == pytest.approx((1 + 0.25) / 2)


def test_closed_loop_converges_without_oscillating() -> None:
    """A toy fleet (4 slots each, one server 4x slower) under least-loaded routing: the weights
    settle and every server ends up busy (a stable negative feedback loop)."""
    servers = fleet(4)
    base = [0.05, 0.05, 0.05, 0.20]
    est = CapacityEstimator(servers)
    policy = RoutingPolicy(servers)
    history = []
    for step in range(400):
        for s in servers:
            s.in_flight = 0
        for k in range(32):  # 32 requests outstanding, placed by the weighted least-loaded rule
            servers[policy._least_loaded(list(range(4)))].in_flight += 1
        for i, s in enumerate(servers):  # latency grows with queueing beyond 4 slots
            est.observe(i, base[i] * max(1.0, s.in_flight / 4))
        history.append(servers[3].weight)
    tail = history[-100:]
    assert max(tail) - min(tail) < 0.1  # settled
    assert servers[3].in_flight >= 2  # the slow server is used, not starved


def test_a_bad_alpha_is_refused() -> None:
    with pytest.raises(ValueError):
        CapacityEstimator(fleet(1), alpha=0)


def test_a_cold_start_outlier_does_not_starve_a_server() -> None:
    servers = fleet(2)
    est = CapacityEstimator(servers, warmup=3)
    for lat in (3.0, 0.05, 0.05):  # the first call on server 0 was a cold one
        est.observe(0, lat)
        est.observe(1, 0.05)
    assert servers[0].weight == 1.0 and servers[1].weight == 1.0


@pytest.mark.parametrize("outlier", [10.0, 100.0])
def test_one_outlier_moves_a_weight_by_at_most_alpha_times_clip(outlier: float) -> None:
    servers = fleet(2)
    est = CapacityEstimator(servers, warmup=1, alpha=0.1, clip=2.0, power=2.0)
    est.observe(0, 0.05)
    for _ in range(10):  # past the running-mean start (1/k > alpha for k < 10)
        est.observe(1, 0.05)
    est.observe(1, 0.05 * outlier)
    assert servers[1].weight == pytest.approx((1 / 1.1) ** 2)


@pytest.mark.parametrize("k", [1, 3, 9])
def test_early_on_the_estimate_is_a_running_mean(k: int) -> None:
    # the k-th observation after warm-up weighs 1/(k+1): an outlier right after warm-up moves the
    # estimate by at most (clip - 1) / (k + 1), and a queued server's latency is caught up quickly
    servers = fleet(2)
    est = CapacityEstimator(servers, warmup=1, alpha=0.05, clip=2.0, power=1.0)
    est.observe(0, 0.05)
    est.observe(1, 0.05)
    for _ in range(k - 1):
        est.observe(1, 0.05)
    est.observe(1, 0.05 * 100)
    assert est.latency[1] == pytest.approx(0.05 * (1 + 1 / (k + 1)))


def test_a_queued_server_is_caught_up_within_its_first_tens_of_calls() -> None:
    servers = fleet(2)
    est = CapacityEstimator(servers)  # the defaults
    for _ in range(est.warmup):
        est.observe(0, 0.05)
        est.observe(1, 0.05)  # warm-up saw it idle; from now on it answers 4x slower (queued)
    for _ in range(12):
        est.observe(0, 0.05)
        est.observe(1, 0.20)
    assert servers[1].weight < 2 * 0.25 ** est.power


def test_a_lasting_slowdown_is_followed_within_tens_of_calls() -> None:
    servers = fleet(2)
    est = CapacityEstimator(servers)  # the defaults
    for _ in range(10):
        est.observe(0, 0.05)
        est.observe(1, 0.05)
    calls = 0
    while servers[1].weight > (1 / 3.5) ** est.power and calls < 200:
        est.observe(0, 0.05)
        est.observe(1, 0.20)  # 4x slower from now on
        calls += 1
    assert calls < 50, calls


def test_without_set_weights_it_estimates_latency_and_leaves_the_weights() -> None:
    servers = fleet(2)
    servers[1].weight = 0.5  # hand-set
    est = CapacityEstimator(servers, warmup=1, set_weights=False)
    for _ in range(5):
        est.observe(0, 0.05)
        est.observe(1, 0.20)
    assert [s.weight for s in servers] == [1.0, 0.5]
    assert est.latency == [pytest.approx(0.05), pytest.approx(0.20)]
    assert est.stats()["learning"] is False and not est.warm and est.updates == 0
