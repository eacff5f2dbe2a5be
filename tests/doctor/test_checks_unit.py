"""Pure parts of doctor, table-driven: verdicts from hand-made facts, metrics parsing, the report."""

from __future__ import annotations

import pytest

from doctor_helpers import doctor_config
from gym_rollouts.doctor import Finding, Report, Status
from gym_rollouts.doctor.check_fleet import _row_verdict, check_concurrency, check_throughput
from gym_rollouts.doctor.check_server import check_reachability
from gym_rollouts.doctor.facts import Exchange, FleetFacts, SampleRow, ServerFacts, probe_model
from gym_rollouts.doctor.findings import worst
from gym_rollouts.router.vllm_metrics import parse_metrics

URL = "http://gpu-7:8000/v1"


@pytest.mark.parametrize("exchange, summary, fix_part", [
    (Exchange(URL, error="cannot connect", kind="connect", reason="refused"), "connection refused by gpu-7:8000",
     "--port 8000"),
    (Exchange(URL, error="cannot connect", kind="connect", reason="dns"), "the host name 'gpu-7' does not resolve",
     "IP address"),
    (Exchange(URL, error="timed out", kind="timeout", elapsed_ms=30000), "no answer from gpu-7:8000 in time",
     "doctor.timeout_s"),
    (Exchange(URL, error="lost", kind="disconnected"), "gpu-7:8000 closed the connection without an answer",
     "https://"),
    (Exchange(URL, error="no route", kind="connect"), "cannot connect to gpu-7:8000", "firewall"),
])
def test_unreachable_kinds_told_apart(exchange, summary, fix_part):
    finding = check_reachability(ServerFacts(URL, health=exchange))
    assert finding.status is Status.FAIL
    assert finding.summary == summary
    assert fix_part in (finding.fix or "")
    assert finding.server == URL and "GET /health" in finding.evidence


@pytest.mark.parametrize("status, expected", [(200, Status.PASS), (404, Status.WARN), (503, Status.FAIL)])
def test_health_status(status, expected):
    assert check_reachability(ServerFacts(URL, health=Exchange(URL, status=status))).status is expected


@pytest.mark.parametrize("row, mml, clamp, expected, fix_part", [
    (SampleRow(1, 100, 256), 4096, True, Status.PASS, None),
    (SampleRow(1, 4096, 256), 4096, True, Status.FAIL, "--max-model-len >= 4352"),
    (SampleRow(1, 3900, 256), 4096, True, Status.WARN, "max_output_tokens=196"),
    (SampleRow(1, 100, 8000), 4096, True, Status.WARN, "max_output_tokens=3996"),
    (SampleRow(1, 100, 8000), 4096, False, Status.FAIL, "clamp_max_tokens_to_context=true"),
    (SampleRow(1, None, 256), 4096, True, Status.PASS, None),
    (SampleRow(1, 100, None), 4096, True, Status.PASS, None),
])
def test_row_verdicts(row, mml, clamp, expected, fix_part):
    status, _evidence, fix = _row_verdict(row, mml, clamp)
    assert status is expected
    if fix_part:
        assert fix_part in (fix or "")
    else:
        assert fix is None


@pytest.mark.parametrize("parallel, servers, expected", [(64, 1, Status.PASS), (2, 3, Status.WARN),
                                                         (8, 4, Status.WARN), (256, 4, Status.PASS)])
def test_concurrency(parallel, servers, expected):
    cfg = doctor_config(f"num_samples_in_parallel={parallel}")
    facts = FleetFacts([ServerFacts(f"http://h{i}:8000/v1") for i in range(servers)])
    finding = check_concurrency(cfg, facts)
    assert finding.status is expected
    if expected is Status.WARN:
        assert finding.fix == f"num_samples_in_parallel={servers * 64}"


@pytest.mark.parametrize("wanted, served, expected", [
    ("tiny", ["tiny"], "tiny"), (None, ["a", "b"], "a"), ("Qwen3-8B", ["Qwen/Qwen3-8B", "x"], "Qwen/Qwen3-8B"),
    ("zzz", ["abc"], "abc"), ("x", [], None),
])
def test_probe_model(wanted, served, expected):
    assert probe_model(wanted, served) == expected


VLLM_METRICS = """\
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="tiny"} 3.0
vllm:num_requests_waiting{engine="1",model_name="tiny"} 2.0
vllm:kv_cache_usage_perc{engine="0",model_name="tiny"} 0.5
vllm:prefix_cache_queries_total{engine="0",model_name="tiny"} 200.0
vllm:prefix_cache_hits_total{engine="0",model_name="tiny"} 50.0
vllm:cache_config_info{block_size="16",enable_prefix_caching="False",engine="0"} 1.0
"""


def test_parse_metrics():
    m = parse_metrics(VLLM_METRICS)
    assert m.waiting == 5.0  # summed over engines
    assert m.kv_cache_usage == 0.5
    assert (m.prefix_cache_queries, m.prefix_cache_hits) == (200.0, 50.0)
    assert m.prefix_caching is False
    assert parse_metrics("vllm:gpu_cache_usage_perc 0.25\n").kv_cache_usage == 0.25  # older name
    assert parse_metrics("").prefix_caching is None


def test_kv_cache_usage_is_the_fullest_engine_not_the_sum():
    two_engines = ('vllm:kv_cache_usage_perc{engine="0",model_name="tiny"} 0.5\n'
                   'vllm:kv_cache_usage_perc{engine="1",model_name="tiny"} 0.5\n')
    m = parse_metrics(two_engines)
    assert m.kv_cache_usage == 0.5
    finding = check_throughput(ServerFacts(URL, base_url=URL, metrics=Exchange(URL, 200, two_engines)))
    assert finding.status is Status.PASS and "KV cache 50%" in finding.evidence  # summed, it read 100%: WARN


def test_report_exit_code_order_and_json():
    a, b = "http://a:1/v1", "http://b:1/v1"
    report = Report(servers=(a, b), findings=[
        Finding("fleet", Status.PASS, "ok"),
        Finding("tools", Status.WARN, "w", server=b),
        Finding("reachability", Status.PASS, "up", server=b),
        Finding("reachability", Status.PASS, "up", server=a),
        Finding("throughput", Status.PASS, "fleet-wide"),
        Finding("throughput", Status.SKIP, "per server", server=a),
    ])
    assert report.exit_code == 0
    order = [(f.check, f.server) for f in report.ordered()]
    assert order == [("reachability", a), ("reachability", b), ("tools", b), ("throughput", a),
                     ("throughput", None), ("fleet", None)]
    report.findings.append(Finding("model", Status.FAIL, "bad", fix="policy_model_name=x", server=a))
    data = report.as_dict()
    assert (data["ok"], data["exit_code"], data["counts"]["FAIL"]) == (False, 1, 1)
    assert data["findings"][2] == {"check": "model", "number": 3, "status": "FAIL", "server": a,
                                   "summary": "bad", "evidence": "", "fix": "policy_model_name=x"}


def test_worst_and_unknown_check():
    assert worst([Status.PASS, Status.SKIP, Status.WARN]) is Status.WARN
    assert worst([]) is Status.SKIP
    with pytest.raises(ValueError):
        Finding("nonsense", Status.PASS, "x")
