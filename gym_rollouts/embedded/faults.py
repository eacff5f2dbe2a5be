"""Fault injection: which request fails, and how.

A seeded `random.Random` decides, per generation request, whether to inject a fault (with
probability `rate`) and which of the configured kinds: "429" / "500" / "503" (an error reply),
"drop" (close the connection without answering), "hang" (accept and never answer), "slow"
(answer normally, 2 s late), "echo_auth" (a 500 whose body repeats the request's Authorization
header and key, as a careless server would). Changeable at runtime (in-process or via POST
/_admin/faults).

"drip" (generation requests): the real answer's headers at once, then its body one byte per
``DRIP_BYTE_INTERVAL_S``. Injected 429 / 503 answers carry ``Retry-After: <retry_after>`` when set.

Body faults answer 200 with the real reply made unusable (``corrupt_body``): "garbage" (an HTML
proxy page instead of JSON), "bad_shape" (no ``choices``, or no ``tokens`` from /tokenize),
"bad_usage" (``usage.prompt_tokens`` one more than the prompt ids), "no_usage" (no ``usage``).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Iterable

import orjson

from .config import validate_fault_kinds

SLOW_FAULT_SECONDS = 2.0
DRIP_BYTE_INTERVAL_S = 0.2  # "drip": the real answer's headers at once, then one body byte per 0.2 s
GARBAGE_BODY = (b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1>"
                b"<p>The proxy server received an invalid response from an upstream server.</p></body></html>")


class FaultInjector:
    def __init__(self, rate: float = 0.0, kinds: Iterable[str] = ("503",), seed: int = 0,
                 retry_after: str | None = None) -> None:
        self._rng = random.Random(seed)
        self.rate = 0.0
        self.kinds: tuple[str, ...] = ()
        self.retry_after = retry_after  # sent as Retry-After with injected 429 / 503 answers
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
        return {"rate": self.rate, "kinds": list(self.kinds), "injected": dict(self.injected),
                "retry_after": self.retry_after}


def corrupt_body(kind: str, body: bytes) -> bytes:
    """The 200 body a body fault of ``kind`` sends instead of ``body`` (a JSON reply)."""
    if kind == "garbage":
        return GARBAGE_BODY
    reply = orjson.loads(body)
    if kind == "bad_shape":
        reply.pop("choices", None)
        reply.pop("tokens", None)
    elif kind == "bad_usage" and isinstance(reply.get("usage"), dict):
        reply["usage"]["prompt_tokens"] += 1
        reply["usage"]["total_tokens"] += 1
    elif kind == "no_usage":
        reply.pop("usage", None)
    return orjson.dumps(reply)
