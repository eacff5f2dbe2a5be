"""The router's per-call fast paths against the plain code they replaced (kept here as the
reference): ``CapacityEstimator.observe`` / ``_reweigh`` and ``RoutingPolicy.choose`` with one
candidate. Random call streams; every weight, estimate and choice must be exactly the same."""

from __future__ import annotations

import random

import pytest

from gym_rollouts.router.capacity import CapacityEstimator
from gym_rollouts.router.policy import RoutingPolicy, ServerState


class RefEstimator(CapacityEstimator):
    """The estimator before the per-call rewrite."""

    def observe(self, index: int, latency_s: float) -> None:
        old = self.latency[index]
        n = self.samples[index] = self.samples[index] + 1
        if old is None:
            self.latency[index] = latency_s
        elif n <= self.warmup:
            self.latency[index] = min(old, latency_s)
        else:
            clip = self.clip
            obs = old * clip if latency_s > old * clip else old / clip if latency_s * clip < old else latency_s
            alpha = max(self.alpha, 1.0 / (n - self.warmup + 1))
            self.latency[index] = old + alpha * (obs - old)
        if not self.warm:
            if any(n < self.warmup for n, s in zip(self.samples, self.servers) if s.member):
                return
            self.warm = True
        fastest = self._fastest
        lat = self.latency[index]
        if fastest is None or index == self._fastest_index or lat < fastest:
            self._reweigh()
        else:
            self.servers[index].weight = max(self.min_weight, (fastest / lat) ** self.power)
            self.updates += 1

    def _reweigh(self) -> None:
        known = [lat for lat in self.latency if lat is not None and lat > 0]
        if not known:
            return
        fastest = min(known)
        self._fastest, self._fastest_index = fastest, self.latency.index(fastest)
        power = self.power
        weights = [None if lat is None or lat <= 0 else max(self.min_weight, (fastest / lat) ** power)
                   for lat in self.latency]
        have = [w for w in weights if w is not None]
        mean = sum(have) / len(have)
        for server, weight in zip(self.servers, weights):
            server.weight = mean if weight is None else weight
        self.updates += 1


def fleet(n: int) -> list[ServerState]:
    return [ServerState(url=f"http://s{i}/v1") for i in range(n)]


@pytest.mark.parametrize("seed", range(12))
def test_the_estimator_learns_exactly_what_the_reference_learns(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.choice([1, 1, 2, 3, 4, 6])
    ours, ref = fleet(n), fleet(n)
    for servers in (ours, ref):  # some absent at start-up (they weigh the mean until they answer)
        for i in range(1, n):
            servers[i].member = (seed + i) % 4 != 0
    kw = dict(warmup=rng.choice([1, 4]), alpha=rng.choice([0.05, 0.3, 1.0]), min_weight=rng.choice([0.05, 0.5]))
    a, b = CapacityEstimator(ours, **kw), RefEstimator(ref, **kw)
    speed = [rng.choice([1.0, 1.0, 2.0, 4.0]) for _ in range(n)]
    for step in range(3000):
        index = rng.randrange(n)
        if step > 0 and not ours[index].member and rng.random() < 0.5:
            continue  # a late joiner stays silent for a while
        if seed % 3 == 0:  # equal servers, steady latencies: ties between estimates
            latency = rng.choice([0.01, 0.02])
        else:
            latency = rng.choice([0.0, 0.01 * speed[index] * rng.uniform(0.3, 5.0), 0.01 * speed[index]])
        a.observe(index, latency)
        b.observe(index, latency)
        assert [s.weight for s in ours] == [s.weight for s in ref]
        assert a.latency == b.latency and a.updates == b.updates and a.warm == b.warm
        assert (a._fastest, a._fastest_index) == (b._fastest, b._fastest_index)
    assert a.stats() == b.stats()


class RefPolicy(RoutingPolicy):
    """``choose`` and ``_least_loaded`` before the one-candidate shortcut."""

    def choose(self, key, exclude=frozenset(), group=None):  # type: ignore[no-untyped-def]
        sticky = self._affinity.get(key)
        if sticky is not None and self.kind == "sticky_least_loaded":
            s = self.servers[sticky]
            if s.accepts() and sticky not in exclude and s.in_flight + s.waiting < self.overload_min_gap:
                return sticky
        candidates = self._candidates(exclude)
        if self.kind == "hash":
            return self._hashed(key, candidates)
        if self.kind == "round_robin":
            return self._take_turn(candidates)
        if sticky is not None and sticky in candidates:
            if not self._overloaded(sticky, self._least_loaded(candidates)):
                return sticky
        servers = self.servers
        if sticky is None:
            candidates = [i for i in candidates if servers[i].rollouts < servers[i].admit_limit] or candidates
        fresh = [i for i in candidates if servers[i].kv_usage < self.kv_saturation] or candidates
        best = self._least_loaded(fresh)
        if sticky is None and group is not None and self.group_affinity:
            best = self._with_group(key, group, best, fresh, self.group_max_imbalance)  # the tail rules off
        if sticky is not None and best != sticky:
            self.affinity_breaks += 1
            servers[sticky].rollouts -= 1
        if best != sticky:
            servers[best].rollouts += 1
        self._cursor = (best + 1) % len(servers)
        self._affinity[key] = best
        entry = self._groups.get(self._group_of.get(key))  # type: ignore[arg-type]
        if entry is not None:
            entry[0] = best
        return best

    def _least_loaded(self, candidates):  # type: ignore[no-untyped-def]
        n, cursor, servers = len(self.servers), self._cursor, self.servers
        best, best_key = candidates[0], (servers[candidates[0]].load(), (candidates[0] - cursor) % n)
        for i in candidates[1:]:
            key = (servers[i].load(), (i - cursor) % n)
            if key < best_key:
                best, best_key = i, key
        return best


@pytest.mark.parametrize("seed", range(10))
def test_choices_are_the_references_with_servers_down_full_and_saturated(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.choice([1, 2, 3])
    fleets = fleet(n), fleet(n)
    policies = (RoutingPolicy(fleets[0], kv_saturation=0.9, overload_min_gap=2),
                RefPolicy(fleets[1], kv_saturation=0.9, overload_min_gap=2))
    live: list[str] = []
    for step in range(4000):
        change = rng.random()
        i = rng.randrange(n)
        for servers in fleets:  # the same fleet events on both sides
            if change < 0.05:
                servers[i].up = not servers[i].up
            elif change < 0.08:
                servers[i].probation = not servers[i].probation
            elif change < 0.12:
                servers[i].kv_usage = random.Random(step).choice([0.0, 0.95])
            elif change < 0.15:
                servers[i].admit_limit = random.Random(step).choice([1, 3, float("inf")])
            elif change < 0.2:
                servers[i].waiting = random.Random(step).choice([0.0, 5.0])
        if live and rng.random() < 0.3:
            key = live.pop(rng.randrange(len(live)))
            for p in policies:
                p.forget(key)
            continue
        key = rng.choice(live) if live and rng.random() < 0.6 else f"r{step}"
        exclude = frozenset(j for j in range(n) if rng.random() < 0.15)
        group = f"g{rng.randrange(20)}"
        got = [p.choose(key, exclude, group) for p in policies]
        assert got[0] == got[1]
        extra = rng.choice([0, 1])  # the call may still be in flight
        for servers in fleets:
            servers[got[0]].in_flight += extra
        if key not in live:
            live.append(key)
        a, b = policies
        assert (a.affinity_breaks, a.group_hits, a.group_breaks, a._cursor) == (
            b.affinity_breaks, b.group_hits, b.group_breaks, b._cursor)
        assert [(s.rollouts, s.in_flight) for s in fleets[0]] == [(s.rollouts, s.in_flight) for s in fleets[1]]


def test_the_histogram_buckets_as_before() -> None:
    """``LatencyHistogram.add`` puts each sample in ``min(index, last)`` (the reference)."""
    import math

    from gym_rollouts.router.latency import LatencyHistogram

    h = LatencyHistogram(buckets=50)
    want = [0] * 50
    rng = random.Random(3)
    for ms in [0.0, 0.05, 0.0501, 1e9, *(rng.uniform(0, 2) ** 8 for _ in range(2000))]:
        h.add(ms)
        index = int(math.log(ms / h.lo_ms) / h._log_g) if ms > h.lo_ms else 0
        want[min(index, 49)] += 1
    assert h.counts == want and h.count == 2004
