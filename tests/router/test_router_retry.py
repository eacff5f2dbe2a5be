"""Retry policy: which failures are retried, per-kind budgets, total cap, deadline, jitter."""

from __future__ import annotations

import random

import pytest

from gym_rollouts.config.schema import TransportConfig
from gym_rollouts.errors import ConfigError, ProtocolError, ServerStatusError, TransportError
from gym_rollouts.router.retry import RetryPolicy, RetryState, check_budget, failure_kind, parse_retry_after

CTX_400 = ('{"error":{"message":"This model\'s maximum context length is 2048 tokens. However, your prompt '
           'contains at least 2049 input tokens","type":"BadRequestError","param":"input_tokens","code":400}}')


@pytest.mark.parametrize("exc, kind", [
    (TransportError("x", kind="connect"), "connect"),
    (TransportError("x", kind="timeout"), "timeout"),
    (TransportError("x", kind="disconnected"), "disconnected"),
    (ServerStatusError(429, "{}"), "status_429"),
    (ServerStatusError(500, "{}"), "status_5xx"),
    (ServerStatusError(502, "{}"), "status_5xx"),
    (ServerStatusError(503, "{}"), "status_5xx"),
    (ServerStatusError(504, "{}"), "status_5xx"),
    (ServerStatusError(400, CTX_400), None),  # context length: back to the adapter untouched
    (ServerStatusError(400, "{}"), None),
    (ServerStatusError(404, "{}"), None),
    (ServerStatusError(422, "{}"), None),
    (ProtocolError("not json"), None),
    (ValueError("bug"), None),
])
def test_failure_kinds(exc, kind) -> None:
    assert failure_kind(exc) == kind


def policy(**kw) -> RetryPolicy:
    base = dict(max_retries=10, budget={"connect": 3, "disconnected": 1, "timeout": 1, "status_429": 5,
                                        "status_5xx": 2}, backoff_base_s=0.1, backoff_max_s=1.0, deadline_s=100.0)
    return RetryPolicy(**{**base, **kw})


def test_per_kind_budgets_are_separate() -> None:
    state = RetryState(policy(), started=0.0, rng=random.Random(1))
    refused, busy = TransportError("x", kind="connect"), ServerStatusError(503, "{}")
    assert [state.next_delay(refused, 0.0) is not None for _ in range(4)] == [True, True, True, False]
    assert [state.next_delay(busy, 0.0) is not None for _ in range(3)] == [True, True, False]
    assert state.used == {"connect": 3, "status_5xx": 2} and state.total == 5


def test_total_cap_applies_across_kinds() -> None:
    state = RetryState(policy(max_retries=2), started=0.0, rng=random.Random(1))
    assert state.next_delay(ServerStatusError(429, "{}"), 0.0) is not None
    assert state.next_delay(TransportError("x", kind="connect"), 0.0) is not None
    assert state.next_delay(ServerStatusError(429, "{}"), 0.0) is None


def test_non_retryable_errors_are_never_retried() -> None:
    state = RetryState(policy(), started=0.0, rng=random.Random(1))
    assert state.next_delay(ServerStatusError(400, CTX_400), 0.0) is None
    assert state.total == 0


def test_no_retry_starts_after_the_deadline() -> None:
    state = RetryState(policy(deadline_s=5.0), started=10.0, rng=random.Random(1))
    refused = TransportError("x", kind="connect")
    assert state.next_delay(refused, 12.0) is not None
    assert state.next_delay(refused, 14.99) is None  # the backoff would end past 15.0


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    p = policy(backoff_base_s=0.1, backoff_max_s=1.0)
    rng = random.Random(7)
    for n, step in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        delays = [p.backoff(n, rng) for _ in range(300)]
        assert min(delays) >= 0.5 * step and max(delays) <= min(1.0, 1.5 * step)
        assert max(delays) - min(delays) > 0.2 * step  # jittered, not constant


def test_from_config_keeps_defaults_for_kinds_not_given() -> None:
    p = RetryPolicy.from_config(TransportConfig(retry_budget={"timeout": 0}))
    assert p.budget["timeout"] == 0 and p.budget["connect"] == 6
    state = RetryState(p, 0.0, random.Random(0))
    assert state.next_delay(TransportError("x", kind="timeout"), 0.0) is None


def test_budget_validation() -> None:
    assert check_budget({"connect": 1}) == []
    assert check_budget({"conect": 1}) and check_budget({"timeout": -1}) and check_budget({"timeout": 1.5})
    with pytest.raises(ConfigError, match="retry_budget.bogus"):
        TransportConfig(retry_budget={"bogus": 1})


def test_retryability_is_the_error_class_property() -> None:
    for status in (400, 404, 409, 422, 429, 499, 500, 501, 502, 503, 504, 599):
        exc = ServerStatusError(status, "{}")
        assert exc.retryable == (status == 429 or status >= 500)
        assert (failure_kind(exc) is not None) == exc.retryable

    class NeverRetried(TransportError):
        retryable = False

    assert failure_kind(NeverRetried("x", kind="connect")) is None


def test_stalled_attempts_are_retried_elsewhere_at_once() -> None:
    state = RetryState(policy(budget={"stalled": 2}), started=0.0, rng=random.Random(1))
    abandoned = TransportError("abandoned in flight", kind="stalled")
    assert failure_kind(abandoned) == "stalled"
    assert state.next_delay(abandoned, 1.0, elsewhere=True) == 0.0
    assert 0.0 < state.next_delay(abandoned, 1.0, elsewhere=False) <= 1.0  # nowhere else: the usual backoff
    assert state.next_delay(abandoned, 1.0, elsewhere=True) is None  # its budget is spent


@pytest.mark.parametrize("server_delay, elsewhere, now, expect", [
    (3.0, False, 10.0, 3.0),      # the only server asks for 3 s: wait at least that
    (0.01, False, 10.0, "backoff"),  # shorter than the backoff: the backoff wins
    (3.0, True, 10.0, "backoff"),  # another server accepts: go there after the usual backoff
    (30.0, False, 10.0, None),    # above retry_after_max_s (20) and nowhere else: give up now
    (30.0, True, 10.0, "backoff"),  # ... unless another server accepts
    (8.0, False, 95.0, None),     # past the call's deadline (100): give up now
    (None, False, 10.0, "backoff"),
])
def test_retry_after_is_honoured_within_the_deadline_and_the_cap(server_delay, elsewhere, now, expect) -> None:
    state = RetryState(policy(retry_after_max_s=20.0, backoff_base_s=0.1, backoff_max_s=0.15), started=0.0,
                       rng=random.Random(3))
    delay = state.next_delay(ServerStatusError(429, "{}"), now, server_delay=server_delay, elsewhere=elsewhere)
    if expect is None:
        assert delay is None and state.total == 0
    elif expect == "backoff":
        assert delay is not None and 0.05 <= delay <= 0.15
    else:
        assert delay == expect


@pytest.mark.parametrize("header, now, seconds", [
    ("3", 0.0, 3.0),
    (" 1.5 ", 0.0, 1.5),
    ("0", 0.0, 0.0),
    ("-2", 0.0, 0.0),
    ("Wed, 21 Oct 2026 07:28:00 GMT", 1792567670.0, 10.0),  # an HTTP date 10 s after now
    ("Wed, 21 Oct 2026 07:28:00 GMT", 1792567690.0, 0.0),   # already past
    ("Wed, 21 Oct 2026 07:28:00", 0.0, None),  # a date without its GMT zone
    ("soon", 0.0, None),
    ("inf", 0.0, None),
    ("nan", 0.0, None),
    ("", 0.0, None),
    (None, 0.0, None),
])
def test_parse_retry_after(header, now, seconds) -> None:
    assert parse_retry_after(header, now) == seconds


def test_the_deadline_is_the_earlier_of_retry_deadline_and_call_timeout() -> None:
    assert RetryPolicy.from_config(TransportConfig(call_timeout_s=40.0)).deadline_s == 40.0
    assert RetryPolicy.from_config(TransportConfig(retry_deadline_s=30.0, call_timeout_s=40.0)).deadline_s == 30.0
    with pytest.raises(ConfigError, match="call_timeout_s"):
        TransportConfig(call_timeout_s=0)
