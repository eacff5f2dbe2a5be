"""Bounded-memory latency statistics: a log-bucketed histogram (pure).

Bucket ``i`` holds samples in ``[lo * g**i, lo * g**(i+1))`` with ``g = 1.05``, so a quantile is
known within +-2.5 % whatever the number of samples; memory is a fixed list of counters
(no per-request list). The mean is exact (running sum / count).
"""

from __future__ import annotations

import math


class LatencyHistogram:
    """Latencies in milliseconds."""

    __slots__ = ("lo_ms", "growth", "counts", "count", "total_ms", "max_ms", "_log_g")

    def __init__(self, *, lo_ms: float = 0.05, growth: float = 1.05, buckets: int = 400) -> None:
        self.lo_ms = lo_ms  # 0.05 ms * 1.05**400 ~ 4 hours: everything fits
        self.growth = growth
        self.counts = [0] * buckets
        self.count = 0
        self.total_ms = 0.0
        self.max_ms = 0.0
        self._log_g = math.log(growth)

    def add(self, ms: float) -> None:
        self.count += 1
        self.total_ms += ms
        if ms > self.max_ms:
            self.max_ms = ms
        counts = self.counts
        index = int(math.log(ms / self.lo_ms) / self._log_g) if ms > self.lo_ms else 0
        counts[index if index < len(counts) else -1] += 1  # beyond the last bucket: the last

    def mean(self) -> float | None:
        return self.total_ms / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0 < q <= 1): the geometric middle of its bucket, never above the max."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank:
                middle = self.lo_ms * self.growth ** (index + 0.5) if index else self.lo_ms
                return min(middle, self.max_ms)
        return self.max_ms  # pragma: no cover - counts always sum to count
