"""Retry policy of one model call (pure: no I/O, no clock, no global random state).

A failed attempt is classified into a *kind*; only these kinds are retried:

- ``connect``: the TCP connection could not be made (refused, connect timeout);
- ``disconnected``: the connection broke before a complete answer;
- ``timeout``: no answer within the read timeout, or a body that did not finish in time (a
  dripping server);
- ``stalled``: abandoned by the router while in flight, because its server stalled (no answer, no
  progress in vLLM's counters) or failed its health probes: retried elsewhere at once;
- ``status_429``: HTTP 429 (server asks us to back off);
- ``status_5xx``: HTTP 500/502/503/504 and other 5xx;
- ``malformed``: a 2xx answer that is not what the protocol says (only errors that declare
  themselves retryable: a NeMo Gym environment answering a body that is not JSON).

Everything else is returned to the caller at once: HTTP 4xx other than 429 (a context-length
400 among them, which the adapter turns into an ``incomplete`` rollout), protocol errors, and
programming errors. Each kind has its own budget (retries of that kind per call), all kinds
share ``max_retries``, and no retry starts after the call's deadline (the earlier of
``retry_deadline_s`` and ``call_timeout_s``). The delay before retry ``n`` is a jittered
exponential backoff: ``min(max, base * 2**(n-1))`` times a factor drawn uniformly from [0.5, 1.5),
capped at ``max``; none after a ``stalled`` attempt when another server accepts.

``Retry-After`` (429 / 503; ``parse_retry_after`` reads delay-seconds or an HTTP date): when no
other server accepts, the retry waits at least that long; a delay above ``retry_after_max_s`` or
past the deadline ends the call instead. When another server accepts, the retry goes there after
the usual backoff (the dispatcher keeps the asking server down for the delay).
"""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass, field
from typing import Any, Mapping

from gym_rollouts.errors import ProtocolError, ServerStatusError, TransportError

RETRY_KINDS = ("connect", "disconnected", "timeout", "stalled", "status_429", "status_5xx", "malformed")
DEFAULT_RETRY_BUDGET: Mapping[str, int] = {
    "connect": 6, "disconnected": 4, "timeout": 2, "stalled": 4, "status_429": 8, "status_5xx": 4, "malformed": 2,
}


def check_budget(budget: Mapping[str, Any]) -> list[str]:
    """Problems with a ``transport.retry_budget`` mapping (empty when it is valid)."""
    problems = []
    for kind, value in budget.items():
        if kind not in RETRY_KINDS:
            problems.append(f"transport.retry_budget.{kind}: unknown kind (known: {', '.join(RETRY_KINDS)})")
        elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append(f"transport.retry_budget.{kind} must be an integer >= 0, got {value!r}")
    return problems


def failure_kind(exc: BaseException) -> str | None:
    """The retry kind of a failed attempt, or None when it must not be retried (the error class's
    ``retryable`` decides; this only names the kind)."""
    if not getattr(exc, "retryable", False):
        return None
    if isinstance(exc, TransportError):
        return exc.kind if exc.kind in ("connect", "timeout", "stalled") else "disconnected"
    if isinstance(exc, ServerStatusError):
        return "status_429" if exc.status == 429 else "status_5xx"
    if isinstance(exc, ProtocolError):
        return "malformed"
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """The knobs; build one per run with :meth:`from_config`."""

    max_retries: int = 8
    budget: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_RETRY_BUDGET))
    backoff_base_s: float = 0.25
    backoff_max_s: float = 8.0
    deadline_s: float = 1800.0  # no retry starts later than this after the call began
    retry_after_max_s: float = 60.0

    @classmethod
    def from_config(cls, tcfg: Any) -> "RetryPolicy":
        """From a ``TransportConfig``; kinds missing from its ``retry_budget`` keep the defaults."""
        return cls(max_retries=tcfg.max_retries, budget={**DEFAULT_RETRY_BUDGET, **dict(tcfg.retry_budget)},
                   backoff_base_s=tcfg.backoff_base_s, backoff_max_s=tcfg.backoff_max_s,
                   deadline_s=min(tcfg.retry_deadline_s, tcfg.call_timeout_s),
                   retry_after_max_s=tcfg.retry_after_max_s)

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """Delay before retry number ``retry_number`` (1-based)."""
        step = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (retry_number - 1))
        return min(self.backoff_max_s, step * (0.5 + rng.random()))


@dataclass
class RetryState:
    """The retry bookkeeping of one call: create it when the call starts."""

    policy: RetryPolicy
    started: float
    rng: random.Random
    used: dict[str, int] = field(default_factory=dict)
    total: int = 0

    def next_delay(self, exc: BaseException, now: float, *, server_delay: float | None = None,
                   elsewhere: bool = False) -> float | None:
        """Seconds to wait before retrying after ``exc`` at time ``now``; None = give up.
        ``server_delay``: the failed server's Retry-After in seconds; ``elsewhere``: another
        server accepts traffic now (the retry goes there)."""
        policy = self.policy
        kind = failure_kind(exc)
        if kind is None or self.total >= policy.max_retries:
            return None
        if self.used.get(kind, 0) >= policy.budget.get(kind, 0):
            return None
        deadline = self.started + policy.deadline_s
        delay = 0.0 if kind == "stalled" and elsewhere else policy.backoff(self.total + 1, self.rng)
        if server_delay is not None and not elsewhere:
            if server_delay > policy.retry_after_max_s or now + server_delay > deadline:
                return None  # the only servers left ask for more time than we may wait
            delay = max(delay, server_delay)
        if now + delay > deadline:
            return None
        self.used[kind] = self.used.get(kind, 0) + 1
        self.total += 1
        return delay


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """A ``Retry-After`` header as seconds from now (>= 0): delay-seconds (``"3"``, ``"1.5"``) or an
    HTTP date (``"Wed, 21 Oct 2026 07:28:00 GMT"``, against ``now_epoch``, Unix seconds); None
    when absent or unreadable (then the usual backoff applies)."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is always GMT
            return None
        seconds = when.timestamp() - now_epoch
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # nan / inf
        return None
    return max(0.0, seconds)
