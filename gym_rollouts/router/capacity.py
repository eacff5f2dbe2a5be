"""Learned server capacity (pure, no I/O): routing weights from observed call latencies.

Sets the weights when ``router.weights`` is empty and ``router.learn_capacity`` is on (hand weights
override); otherwise (``set_weights=False``) it only keeps the latency estimates, which the policy's
tail guard reads (router/policy.py).
The dispatcher feeds one ``observe(index, latency_s)`` per answered generation call; the estimator
keeps an EWMA of each server's latency and sets each ``ServerState.weight`` to
``(fastest EWMA latency / this server's EWMA latency) ** power`` (the fastest server weighs 1, so
loads stay in requests), floored at ``min_weight``.

Why latency and not Little's-law throughput (concurrency / latency): a server that gets little
traffic shows a low throughput, gets a lower weight, then even less traffic: that loop starves a
slower server. Latency rises with the load a server is given (queueing), and a weight lowers that
load, so ``weight = latency ** -power`` is a negative feedback loop: stable. The power sets where
it settles: on a saturated server latency grows with the requests it holds, so with power 1 each
server ends up holding requests in proportion to the square root of its capacity (power p:
capacity ** (p / (1 + p))). The default is 1: a slower server keeps more rollouts than its
capacity share, which fills its batches while the run is in full flow; what used to make that
costly, its rollouts finishing last, is the policy's tail guard's job (router/policy.py: near the
end it takes no new rollout). Measured with the tail rules (docs/router.md, one server 4x
slower, makespan / capacity-weighted ideal): ``scripts/bench_router.py`` power 1 1.063-1.067,
power 2 1.087 (hand weights 1.093-1.095); ``scripts/bench_groups.py`` groups of 16, power 1
1.15-1.21, power 2 1.17-1.31. Without the tail rules power 2 was the better one (1.09-1.10 against
1.15 for power 1.5, and 1.17-1.24 for 1 without them): the weight then also had to keep rollouts off
the slow server at the end.
``waiting`` from ``/metrics`` (when polled) already counts as load in ``ServerState.load``.

Cost: an observation updates one EWMA and one weight (O(1)); all weights are recomputed only when
the fastest server's estimate changes (O(servers)).

Robustness: latencies are noisy (a cold server's first calls, a prompt missing the prefix cache, a
long generation). During warm-up a server's estimate is the lowest latency seen; after it, each
observation is clipped to [1/``clip``, ``clip``] times the current estimate before entering the
EWMA. The EWMA's weight is 1/k for the k-th observation after warm-up (a running mean) until that
falls to ``alpha`` (after 1/``alpha`` - 1 = 19 observations): the estimate catches up with a queued
server within the first tens of calls of a run (with ``alpha`` from the start, a server 4x slower
needed ~30 of its calls, a large share of a short run, with the weights still near equal). After
that an outlier moves a latency estimate by at most ``alpha * (clip - 1)`` (5 %), earlier by at
most ``(clip - 1) / (k + 1)``; a lasting change shows within tens of calls (a server turning 4x
slower: within 2x of its final weight after ~20).

Cold start: every weight stays 1 until each member server has ``warmup`` observations (equal
weights); a server with none later (joined late) weighs the mean of the others until it has its own.
Meanwhile the policy gives a server without an estimate no group slack once another has one
(router/policy.py ``cautious_untried``): otherwise a slow server took a whole group before its first
answer, and the queueing in its first latencies kept its weight low for the rest of the run.
"""

from __future__ import annotations

from gym_rollouts.router.policy import ServerState


class CapacityEstimator:
    """EWMA latency per server -> ``ServerState.weight`` (see the module doc)."""

    def __init__(self, servers: list[ServerState], *, alpha: float = 0.05, warmup: int = 4,
                 min_weight: float = 0.05, clip: float = 2.0, power: float = 1.0,
                 set_weights: bool = True) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        self.servers = servers
        self.alpha = alpha
        self.warmup = warmup
        self.min_weight = min_weight
        self.clip = clip
        self.power = power
        self.set_weights = set_weights
        self.latency: list[float | None] = [None] * len(servers)  # EWMA seconds per server
        self.samples = [0] * len(servers)
        self.warm = False
        self.updates = 0
        self._fastest: float | None = None
        self._fastest_index = -1

    def observe(self, index: int, latency_s: float) -> None:
        """One answered call of ``latency_s`` seconds on server ``index`` (runs per call: plain code)."""
        latency = self.latency
        old = latency[index]
        n = self.samples[index] = self.samples[index] + 1
        if old is None:
            lat = latency_s
        elif n <= self.warmup:
            lat = latency_s if latency_s < old else old  # min(old, latency_s), inlined
        else:
            clip = self.clip
            obs = old * clip if latency_s > old * clip else old / clip if latency_s * clip < old else latency_s
            # 1/k for the k-th observation after warm-up (a running mean) until that falls below alpha
            alpha = max(self.alpha, 1.0 / (n - self.warmup + 1))
            lat = old + alpha * (obs - old)
        latency[index] = lat
        if not self.set_weights:
            return
        if not self.warm:
            if any(n < self.warmup for n, s in zip(self.samples, self.servers) if s.member):
                return
            self.warm = True
        fastest = self._fastest
        if fastest is None or index == self._fastest_index or lat < fastest:
            self._reweigh()
        else:
            self.servers[index].weight = max(self.min_weight, (fastest / lat) ** self.power)
            self.updates += 1

    def _reweigh(self) -> None:
        """Every weight from the latencies (the fastest known server's changed: it sets the scale)."""
        fastest, at = None, -1  # the first of the lowest positive latencies
        for i, lat in enumerate(self.latency):
            if lat is not None and lat > 0 and (fastest is None or lat < fastest):
                fastest, at = lat, i
        if fastest is None:
            return
        self._fastest, self._fastest_index = fastest, at
        power, floor = self.power, self.min_weight
        have, unknown = [], []  # unknown: servers without an estimate yet (they weigh the mean)
        for server, lat in zip(self.servers, self.latency):
            if lat is None or lat <= 0:
                unknown.append(server)
            else:
                server.weight = weight = max(floor, (fastest / lat) ** power)
                have.append(weight)
        if unknown:
            mean = sum(have) / len(have)
            for server in unknown:
                server.weight = mean
        self.updates += 1

    def stats(self) -> dict[str, object]:
        return {"learning": self.set_weights, "warm": self.warm, "updates": self.updates,
                "latency_ms": [None if lat is None else round(lat * 1000.0, 3) for lat in self.latency],
                "weights": [round(s.weight, 4) for s in self.servers]}
