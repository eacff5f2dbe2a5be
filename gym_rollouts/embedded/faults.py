"""Fault injection: which request fails, and how.

A seeded `random.Random` decides, per generation request, whether to inject a fault (with
probability `rate`) and which of the configured kinds: "429" / "500" / "503" (an error reply),
"drop" (close the connection without answering), "hang" (accept and never answer), "slow"
(answer normally, 2 s late). Changeable at runtime (in-process or via POST /_admin/faults).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Iterable

from .config import validate_fault_kinds

SLOW_FAULT_SECONDS = 2.0


class FaultInjector:
    def __init__(self, rate: float = 0.0, kinds: Iterable[str] = ("503",), seed: int = 0) -> None:
        self._rng = random.Random(seed)
        self.rate = 0.0
        self.kinds: tuple[str, ...] = ()
        self.injected: Counter[str] = Counter()
        self.configure(rate, kinds)

    def configure(self, rate: float, kinds: Iterable[str] | None = None) -> None:
        rate = float(rate)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be within [0, 1], got {rate}")
        if kinds is not None:
            kinds = tuple(kinds)
            validate_fault_kinds(kinds)
            if not kinds:
                raise ValueError("fault kinds must not be empty")
            self.kinds = kinds
        self.rate = rate

    def draw(self) -> str | None:
        """The fault to inject into the next request, or None (the common, cheap path)."""
        if self.rate <= 0.0:
            return None
        rng = self._rng
        if rng.random() >= self.rate:
            return None
        kind = self.kinds[0] if len(self.kinds) == 1 else rng.choice(self.kinds)
        self.injected[kind] += 1
        return kind

    def stats(self) -> dict:
        return {"rate": self.rate, "kinds": list(self.kinds), "injected": dict(self.injected)}
