"""Server selection policy (pure, no I/O; a decision costs microseconds).

``sticky_least_loaded``: every call of one rollout goes to the server its first call went to,
while that server is up and not overloaded relative to the least-loaded one; new rollouts go to
the up server with the fewest in-flight requests per unit of weight (ties broken round-robin).
``hash`` pins ``sha256(key) % N`` (NeMo Gym's behaviour) and ``round_robin`` ignores affinity;
both exist as baselines for benchmarks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass
class ServerState:
    """What the policy knows of one server; the dispatcher keeps it current."""

    url: str
    weight: float = 1.0
    up: bool = True
    in_flight: int = 0
    waiting: float = 0.0  # from /metrics when enabled

    def load(self) -> float:
        return (self.in_flight + self.waiting) / self.weight


@dataclass
class RoutingPolicy:
    servers: list[ServerState]
    kind: str = "sticky_least_loaded"
    overload_factor: float = 2.0
    overload_min_gap: int = 8
    _affinity: dict[str, int] = field(default_factory=dict)
    _rr: int = 0

    def choose(self, key: str, exclude: frozenset[int] = frozenset()) -> int:
        """Index of the server for the next call of rollout ``key``."""
        candidates = [i for i, s in enumerate(self.servers) if s.up and i not in exclude]
        if not candidates:
            candidates = [i for i in range(len(self.servers)) if i not in exclude] or list(range(len(self.servers)))
        if self.kind == "hash":
            pinned = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % len(self.servers)
            return pinned if pinned in candidates else candidates[0]
        if self.kind == "round_robin":
            self._rr += 1
            return candidates[self._rr % len(candidates)]
        best = self._least_loaded(candidates)
        sticky = self._affinity.get(key)
        if sticky is not None and sticky in candidates and not self._overloaded(sticky, best):
            return sticky
        self._affinity[key] = best
        return best

    def forget(self, key: str) -> None:
        """Drop a finished rollout's affinity (keeps memory O(in-flight rollouts))."""
        self._affinity.pop(key, None)

    def _least_loaded(self, candidates: list[int]) -> int:
        loads = [self.servers[i].load() for i in candidates]
        low = min(loads)
        tied = [i for i, load in zip(candidates, loads) if load == low]
        self._rr += 1
        return tied[self._rr % len(tied)]

    def _overloaded(self, sticky: int, best: int) -> bool:
        if sticky == best:
            return False
        s, b = self.servers[sticky], self.servers[best]
        gap = s.in_flight + s.waiting - (b.in_flight + b.waiting)
        return gap >= self.overload_min_gap and s.load() > self.overload_factor * max(b.load(), 1e-9)
