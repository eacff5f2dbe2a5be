"""doctor against embedded servers started in each broken way: the right check FAILs (or WARNs)
with the right fix, and nothing else FAILs; a healthy setup passes."""

from __future__ import annotations

import orjson

from doctor_helpers import doctor_on, failing, free_port, only
from gym_rollouts.doctor import CHECKS, Status
from gym_rollouts.embedded import EmbeddedConfig, EmbeddedServer


async def test_healthy_setup_passes(start_server):
    srv = await start_server()
    report = await doctor_on(srv.base_url)
    assert report.exit_code == 0, failing(report)
    assert {f.check for f in report.findings} == set(CHECKS)
    for check in ("reachability", "base_url", "model", "tools", "throughput"):
        assert only(report, check, srv.base_url).status is Status.PASS, only(report, check, srv.base_url)
    assert only(report, "context").status is Status.PASS
    assert only(report, "training").status is Status.SKIP  # training mode off: said once, for the run
    assert report.model == "gym-tiny"
    sent = srv.stats()["requests"]
    assert sent.get("chat", 0) <= 2 and sum(sent.values()) <= 10, sent  # a handful of tiny requests


async def test_healthy_training_mode_passes(start_server):
    srv = await start_server()
    report = await doctor_on(srv.base_url, "model=vllm_for_training")
    training = only(report, "training", srv.base_url)
    assert training.status is Status.PASS, training
    assert "return_token_ids supported" in training.evidence
    assert report.exit_code == 0, failing(report)


async def test_base_url_without_v1(start_server):
    srv = await start_server()
    report = await doctor_on(srv.root_url)
    finding = only(report, "base_url", srv.root_url)
    assert finding.status is Status.FAIL
    assert "lacks /v1" in finding.summary
    assert f"policy_base_url={srv.root_url}/v1" in (finding.fix or "")
    assert failing(report) == [("base_url", srv.root_url)]  # the other checks still ran, on .../v1
    assert only(report, "tools", srv.root_url).status is Status.PASS


async def test_wrong_model_name(start_server):
    srv = await start_server(model_name="Qwen/Qwen3-0.6B")
    report = await doctor_on(srv.base_url, "policy_model_name=Qwen3-0.6B")
    finding = only(report, "model", srv.base_url)
    assert finding.status is Status.FAIL
    assert "Qwen/Qwen3-0.6B" in finding.evidence
    assert (finding.fix or "").startswith("policy_model_name=Qwen/Qwen3-0.6B")
    assert ("model", srv.base_url) in failing(report)


async def test_several_models_and_no_model_name(start_server):
    a, b = await start_server(model_name="alpha"), await start_server(model_name="beta")
    report = await doctor_on([a.base_url, b.base_url])
    fleet = only(report, "fleet")
    assert fleet.status is Status.FAIL
    assert "one common model" in fleet.summary and "alpha, beta" in (fleet.fix or "")


async def test_tools_refused_without_tool_parser(start_server):
    srv = await start_server(tool_parser=False)
    report = await doctor_on(srv.base_url)
    finding = only(report, "tools", srv.base_url)
    assert finding.status is Status.FAIL
    assert "--enable-auto-tool-choice" in finding.evidence  # vLLM's own refusal text
    assert "restart vLLM with --enable-auto-tool-choice --tool-call-parser hermes" in (finding.fix or "")
    assert failing(report) == [("tools", srv.base_url)]


async def test_tools_not_checked_when_none_offered(start_server, tmp_path):
    rows = tmp_path / "plain.jsonl"
    rows.write_text(orjson.dumps({"responses_create_params": {"input": "hi"}, "expected_answer": "x"}).decode())
    srv = await start_server(tool_parser=False)
    report = await doctor_on(srv.base_url, "resource=exact_match", f"input_jsonl_fpath={rows}")
    assert only(report, "tools").status is Status.SKIP
    assert srv.stats()["requests"].get("chat") == 1  # only the basic probe


async def test_reasoning_split_by_server_but_config_says_no_parser(start_server):
    srv = await start_server(reasoning=True, reasoning_parser="qwen3")
    report = await doctor_on(srv.base_url, "model.uses_reasoning_parser=false")
    finding = only(report, "reasoning", srv.base_url)
    assert finding.status is Status.FAIL
    assert "message.reasoning" in finding.evidence
    assert "without --reasoning-parser" in (finding.fix or "")
    assert "model.uses_reasoning_parser=true" in (finding.fix or "")


async def test_reasoning_split_by_server_warns_with_parser_on(start_server):
    srv = await start_server(reasoning=True, reasoning_parser="qwen3", reasoning_field="reasoning_content")
    report = await doctor_on(srv.base_url)  # uses_reasoning_parser: true (the default)
    finding = only(report, "reasoning", srv.base_url)
    assert finding.status is Status.WARN
    assert "message.reasoning_content" in finding.evidence  # the older field name, reported
    assert "restart vLLM without --reasoning-parser" in (finding.fix or "")
    assert report.exit_code == 0, failing(report)


async def test_inline_reasoning(start_server):
    srv = await start_server(reasoning=True)
    good = await doctor_on(srv.base_url)
    assert only(good, "reasoning", srv.base_url).status is Status.PASS
    raw = await doctor_on(srv.base_url, "model.uses_reasoning_parser=false")
    finding = only(raw, "reasoning", srv.base_url)
    assert finding.status is Status.WARN and "model.uses_reasoning_parser=true" in (finding.fix or "")


async def test_no_return_token_ids_in_training_mode(start_server):
    srv = await start_server(return_token_ids_supported=False)
    report = await doctor_on(srv.base_url, "model=vllm_for_training")
    finding = only(report, "training", srv.base_url)
    assert finding.status is Status.WARN  # collect still works: prompt ids come from /tokenize
    assert "ignores return_token_ids" in finding.summary
    assert "supports return_token_ids" in (finding.fix or "")
    assert srv.stats()["requests"].get("tokenize", 0) >= 1


async def test_no_token_ids_at_all_in_training_mode():
    """A server that drops logprobs (so no token ids at all): training FAILs."""
    srv = EmbeddedServer(EmbeddedConfig(return_token_ids_supported=False))
    chat = srv.engine.chat

    def without_logprobs(raw: bytes):
        out = chat(raw)
        reply = orjson.loads(out.body)
        reply["choices"][0]["logprobs"] = None
        out.body = orjson.dumps(reply)
        return out

    srv.engine.chat = without_logprobs  # before start: the app binds engine.chat when built
    async with srv:
        report = await doctor_on(srv.base_url, "model=vllm_for_training")
    finding = only(report, "training", srv.base_url)
    assert finding.status is Status.FAIL
    assert "no logprobs" in finding.evidence
    assert "return_tokens_as_token_ids" in (finding.fix or "")


async def test_dead_server_in_the_list(start_server):
    srv = await start_server()
    dead = f"http://127.0.0.1:{free_port()}/v1"
    report = await doctor_on([srv.base_url, dead])
    finding = only(report, "reachability", dead)
    assert finding.status is Status.FAIL
    assert "connection refused" in finding.summary
    assert "--port" in (finding.fix or "") and "policy_base_url" in (finding.fix or "")
    assert only(report, "reachability", srv.base_url).status is Status.PASS
    fleet = only(report, "fleet")
    assert fleet.status is Status.FAIL and dead in (fleet.fix or "")
    assert only(report, "base_url", dead).status is Status.SKIP


async def test_hung_server_times_out(silent_port):
    url = f"http://127.0.0.1:{silent_port}/v1"
    report = await doctor_on(url, "doctor.timeout_s=1")
    finding = only(report, "reachability", url)
    assert finding.status is Status.FAIL
    assert "in time" in finding.summary and "doctor.timeout_s" in (finding.fix or "")


async def test_fleet_with_different_model_names(start_server):
    a, b = await start_server(model_name="policy"), await start_server(model_name="policy-v2")
    report = await doctor_on([a.base_url, b.base_url], "policy_model_name=policy")
    assert only(report, "model", b.base_url).status is Status.FAIL
    fleet = only(report, "fleet")
    assert fleet.status is Status.FAIL
    assert f"restart {b.base_url} with --served-model-name policy" in (fleet.fix or "")


async def test_fleet_with_different_max_model_len(start_server):
    a, b = await start_server(max_model_len=4096), await start_server(max_model_len=8192)
    report = await doctor_on([a.base_url, b.base_url])
    fleet = only(report, "fleet")
    assert fleet.status is Status.FAIL
    assert "--max-model-len" in (fleet.fix or "") and "4096" in (fleet.fix or "") and "8192" in (fleet.fix or "")
    assert failing(report) == [("fleet", None)]


async def test_prompts_too_long_for_the_context(start_server):
    srv = await start_server(max_model_len=512)  # the example rows' prompts are longer
    report = await doctor_on(srv.base_url)
    finding = only(report, "context")
    assert finding.status is Status.FAIL
    assert "max_model_len 512" in finding.evidence and "--max-model-len" in (finding.fix or "")


async def test_generation_cut_by_the_context(start_server):
    srv = await start_server(max_model_len=900)
    report = await doctor_on(srv.base_url)
    finding = only(report, "context")
    assert finding.status is Status.WARN  # prompt fits, prompt + max_output_tokens does not
    assert "responses_create_params.max_output_tokens=" in (finding.fix or "")


async def test_missing_input_file(start_server, tmp_path):
    srv = await start_server()
    report = await doctor_on(srv.base_url, f"input_jsonl_fpath={tmp_path / 'nope.jsonl'}")
    finding = only(report, "context")
    assert finding.status is Status.FAIL and "input_jsonl_fpath" in (finding.fix or "")


async def test_prefix_caching_off(start_server):
    srv = await start_server(prefix_caching=False)
    report = await doctor_on(srv.base_url)
    finding = only(report, "throughput", srv.base_url)
    assert finding.status is Status.WARN and "--enable-prefix-caching" in (finding.fix or "")


async def test_completions_mode_with_tools(start_server):
    srv = await start_server()
    report = await doctor_on(srv.base_url, "model=vllm_completions")
    finding = only(report, "tools")
    assert finding.status is Status.FAIL and "use_completions_api=false" in (finding.fix or "")
    assert srv.stats()["requests"].get("completions") == 1 and "chat" not in srv.stats()["requests"]


async def test_models_refused_for_a_missing_api_key_says_set_the_key():
    from aiohttp import web

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="")

    async def models(_request: web.Request) -> web.Response:
        return web.json_response({"error": "Unauthorized"}, status=401)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        url = f"http://127.0.0.1:{port}/v1"
        report = await doctor_on(url)
    finally:
        await runner.cleanup()
    finding = only(report, "base_url", url)
    assert finding.status is Status.FAIL and "HTTP 401" in finding.evidence
    assert "policy_api_key" in (finding.fix or "")
