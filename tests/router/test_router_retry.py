"""Retry policy: which failures are retried, per-kind budgets, total cap, deadline, jitter."""

from __future__ import annotations

import random

import pytest

from gym_rollouts.config.schema import TransportConfig
from gym_rollouts.errors import ConfigError, ProtocolError, ServerStatusError, TransportError
from gym_rollouts.router.retry import RetryPolicy, RetryState, check_budget, failure_kind

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
