"""``doctor`` against real vLLM servers (tier 3; fixtures in conftest.py).

The recommended server (hermes tool parser, no reasoning parser) passes, in plain and training
mode and through the console script; a server started without the tool parser FAILs with the
tool-parser fix; a server with ``--reasoning-parser`` WARNs (FAILs when the config says
``uses_reasoning_parser: false``). doctor forces its probe's ``<think>`` block with structured
outputs, so these verdicts hold for the random tiny model too.
"""

from __future__ import annotations

import orjson
import pytest

from gym_rollouts.config.compose import compose_plain
from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.doctor import Report, Status, run_doctor

pytestmark = pytest.mark.real_vllm


async def doctor(url: str, *overrides: str) -> Report:
    cfg = build_collect_config(compose_plain([f"policy_base_url={url}", "doctor.timeout_s=120", *overrides]))
    return await run_doctor(cfg)


def verdict(report: Report, check: str, server: str) -> tuple[Status, str, str]:
    [finding] = [f for f in report.findings if f.check == check and f.server == server]
    return finding.status, finding.evidence, finding.fix or ""


def failures(report: Report) -> list[str]:
    return [f"{f.check}: {f.summary} | {f.evidence} | {f.fix}" for f in report.findings if f.status is Status.FAIL]


async def test_recommended_server_passes(real_vllm):
    report = await doctor(real_vllm)
    assert report.exit_code == 0, failures(report)
    for check in ("reachability", "base_url", "model", "tools", "reasoning"):
        status, evidence, _ = verdict(report, check, real_vllm)
        assert status is Status.PASS, (check, evidence)
    status, evidence, _ = verdict(report, "reasoning", real_vllm)
    assert "stayed inline" in evidence  # no --reasoning-parser: the pipeline parses <think>
    status, evidence, _ = verdict(report, "throughput", real_vllm)
    assert status is not Status.SKIP and "prefix caching on" in evidence  # from vllm:cache_config_info


async def test_recommended_server_passes_in_training_mode(real_vllm):
    report = await doctor(real_vllm, "model=vllm_for_training")
    assert report.exit_code == 0, failures(report)
    status, evidence, _ = verdict(report, "training", real_vllm)
    assert status is Status.PASS, evidence
    assert "return_token_ids supported" in evidence


async def test_server_without_tool_parser_fails_with_the_fix(real_vllm_no_tools):
    report = await doctor(real_vllm_no_tools)
    assert report.exit_code == 1
    status, evidence, fix = verdict(report, "tools", real_vllm_no_tools)
    assert status is Status.FAIL
    assert "--enable-auto-tool-choice" in evidence  # vLLM's own refusal, quoted
    assert "--enable-auto-tool-choice --tool-call-parser hermes" in fix
    assert [f.check for f in report.findings if f.status is Status.FAIL] == ["tools"]


async def test_server_with_reasoning_parser(real_vllm_reasoning):
    report = await doctor(real_vllm_reasoning)
    status, evidence, fix = verdict(report, "reasoning", real_vllm_reasoning)
    assert status is Status.WARN, evidence
    assert "message.reasoning" in evidence and "without --reasoning-parser" in fix
    assert report.exit_code == 0, failures(report)
    strict = await doctor(real_vllm_reasoning, "model.uses_reasoning_parser=false")
    status, _, fix = verdict(strict, "reasoning", real_vllm_reasoning)
    assert status is Status.FAIL and "model.uses_reasoning_parser=true" in fix


def test_console_script_against_the_server(run_cli, real_vllm):
    result = run_cli("doctor", "--json", f"policy_base_url={real_vllm}", "doctor.timeout_s=120")
    assert result.returncode == 0, result.stdout + result.stderr
    report = orjson.loads(result.stdout)
    assert report["ok"] is True and report["servers"] == [real_vllm]
