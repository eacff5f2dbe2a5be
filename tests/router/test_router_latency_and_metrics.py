"""Bounded latency histogram and the /metrics parser (pure)."""

from __future__ import annotations

import random
import sys

import pytest

from gym_rollouts.router.latency import LatencyHistogram
from gym_rollouts.router.vllm_metrics import ServerLoad, parse_load, parse_progress


def test_histogram_quantiles_are_within_bucket_precision() -> None:
    rng = random.Random(3)
    samples = [rng.lognormvariate(3.0, 1.0) for _ in range(20_000)] + [0.001, 1e9]
    h = LatencyHistogram()
    for ms in samples:
        h.add(ms)
    samples.sort()
    for q in (0.5, 0.9, 0.99):
        exact = samples[int(q * len(samples)) - 1]
        assert h.quantile(q) == pytest.approx(exact, rel=0.06)
    assert h.mean() == pytest.approx(sum(samples) / len(samples))
    assert h.quantile(1.0) <= 1e9 and h.count == len(samples)


def test_histogram_memory_does_not_grow_with_samples() -> None:
    h = LatencyHistogram()
    size = sys.getsizeof(h.counts)
    for i in range(50_000):
        h.add(1.0 + i % 1000)
    assert sys.getsizeof(h.counts) == size and len(h.counts) == 400


def test_empty_histogram() -> None:
    h = LatencyHistogram()
    assert h.mean() is None and h.quantile(0.99) is None


PAGE = """# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 3.0
vllm:num_requests_waiting{engine="1",model_name="m"} 2.0
vllm:num_requests_running{engine="0",model_name="m"} 7.0
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.5
"""


@pytest.mark.parametrize("text, load", [
    (PAGE, ServerLoad(waiting=5.0, kv_usage=0.5, running=7.0)),
    ("vllm:num_requests_waiting 4\n", ServerLoad(waiting=4.0, kv_usage=0.0)),
    ('vllm:gpu_cache_usage_perc{model_name="m"} 0.9 1700000000\n', ServerLoad(waiting=0.0, kv_usage=0.9)),
    ("vllm:num_requests_running 3\nother_metric 1\n", None),
    ("vllm:num_requests_waiting{x=\"1\"} nan-ish\n", None),
    ("", None),
])
def test_parse_load(text, load) -> None:
    assert parse_load(text) == load


PROGRESS_PAGE = """# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} 120.0
vllm:generation_tokens_total{engine="1",model_name="m"} 30.0
vllm:generation_tokens_created{engine="0",model_name="m"} 1.7e9
vllm:prompt_tokens_total{engine="0",model_name="m"} 40.0
vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 5.0 1700000000
vllm:iteration_tokens_total_count{engine="0",model_name="m"} 9.0
vllm:iteration_tokens_total_sum{engine="0",model_name="m"} 999.0
vllm:num_requests_running{engine="0",model_name="m"} 7.0
"""


@pytest.mark.parametrize("text, progress", [
    (PROGRESS_PAGE, 120.0 + 30.0 + 40.0 + 5.0 + 9.0),
    ("vllm:generation_tokens_total 4\n", 4.0),
    ('vllm:prompt_tokens_total{model_name="a}b"} 2.5\n', 2.5),  # a brace inside a label value
    ("vllm:num_requests_running 3\nvllm:kv_cache_usage_perc 0.5\n", None),  # gauges are not progress
    ("vllm:generation_tokens_total not-a-number\n", None),
    ("", None),
])
def test_parse_progress(text, progress) -> None:
    assert parse_progress(text) == progress
