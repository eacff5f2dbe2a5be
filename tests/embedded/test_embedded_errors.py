"""Wire tests: vLLM's error statuses, body shape and exact texts."""

import pytest

MML = 2048


def err(status, message, param=None, type_="BadRequestError"):
    return status, {"error": {"message": message, "type": type_, "param": param, "code": status}}


async def _messages_with_prompt_len(w, n):
    """A one-message conversation whose rendered prompt is exactly n tokens."""
    status, empty = await w.post("/tokenize", {"messages": [{"role": "user", "content": ""}]})
    return [{"role": "user", "content": "a" * (n - empty["count"])}]


@pytest.fixture
async def w(make_wire):
    return await make_wire(max_model_len=MML)


async def test_prompt_longer_than_context(w):
    msgs = await _messages_with_prompt_len(w, MML + 1)
    assert await w.post("/v1/chat/completions", {"messages": msgs}) == err(
        400,
        "This model's maximum context length is 2048 tokens. However, your prompt contains at least 2049 "
        "input tokens, which exceeds this limit even without any output tokens. Please reduce the length "
        "of the input prompt. (parameter=input_tokens, value=2049)",
        "input_tokens",
    )
    much_longer = await _messages_with_prompt_len(w, MML + 500)
    status, body = await w.post("/v1/chat/completions", {"messages": much_longer, "max_tokens": 10})
    assert status == 400 and "at least 2049 input tokens" in body["error"]["message"]


async def test_prompt_exactly_at_the_limit(w):
    msgs = await _messages_with_prompt_len(w, MML)
    assert await w.post("/v1/chat/completions", {"messages": msgs}) == err(
        400, "max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)", "max_tokens")


async def test_max_tokens_above_max_model_len(w):
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4000}
    assert await w.post("/v1/chat/completions", body) == err(
        400,
        "max_tokens=4000 cannot be greater than max_model_len=2048. Please request fewer output tokens. "
        "(parameter=max_tokens, value=4000)",
        "max_tokens",
    )


async def test_prompt_plus_max_tokens_too_long_is_clamped(w):
    msgs = await _messages_with_prompt_len(w, MML - 3)
    status, body = await w.post("/v1/chat/completions",
                                {"messages": msgs, "max_tokens": 100, "return_token_ids": True})
    assert status == 200
    assert body["choices"][0]["finish_reason"] == "length"
    assert len(body["choices"][0]["token_ids"]) == 3
    assert body["usage"]["total_tokens"] == MML


async def test_completions_share_the_length_checks(w):
    status, body = await w.post("/v1/completions", {"prompt": "a" * (MML + 10)})
    assert status == 400 and body["error"]["param"] == "input_tokens"
    status, body = await w.post("/v1/completions", {"prompt": "a" * MML})
    assert status == 400 and body["error"]["message"].startswith("max_tokens must be at least 1, got 0.")
    status, body = await w.post("/v1/completions", {"prompt": "a" * (MML - 2), "max_tokens": 50})
    assert status == 200 and body["choices"][0]["finish_reason"] == "length"


async def test_unknown_model(w):
    for path, body in [("/v1/chat/completions", {"messages": []}), ("/v1/completions", {"prompt": "x"}),
                       ("/tokenize", {"prompt": "x"})]:
        assert await w.post(path, {"model": "nope", **body}) == err(
            404, "The model `nope` does not exist. Valid aliases: gym-tiny.", "model", "NotFoundError")


async def test_malformed_json_and_missing_fields(w):
    status, body = await w.post("/v1/chat/completions", data=b'{"messages": [')
    assert status == 400 and body["error"]["type"] == "BadRequestError" and body["error"]["code"] == 400
    assert "json_invalid" in body["error"]["message"]
    status, body = await w.post("/v1/chat/completions", {"model": "gym-tiny"})
    assert status == 400 and "'missing'" in body["error"]["message"] and "messages" in body["error"]["message"]
    status, body = await w.post("/v1/chat/completions", {"messages": "hi"})
    assert status == 400 and "list" in body["error"]["message"]
    status, body = await w.post("/v1/chat/completions", {"messages": [{"content": "no role"}]})
    assert status == 400 and body["error"]["param"] == "messages"
    status, body = await w.post("/v1/completions", {})
    assert status == 400 and "prompt" in body["error"]["message"]
    status, body = await w.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                                         "max_tokens": "ten"})
    assert status == 400 and "max_tokens" in body["error"]["message"]


async def test_tools_refused_without_tool_parser(make_wire, tools):
    w = await make_wire(tool_parser=False)
    msgs = [{"role": "user", "content": "weather in Paris"}]
    expected = err(400, '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set')
    assert await w.post("/v1/chat/completions", {"messages": msgs, "tools": tools}) == expected
    assert await w.post("/v1/chat/completions", {"messages": msgs, "tools": tools, "tool_choice": "auto"}) == expected
    # tool_choice "none" and a named tool are still served, as by vLLM
    ok = await w.chat(messages=msgs, tools=tools, tool_choice="none")
    assert "tool_calls" not in ok["choices"][0]["message"]
    named = await w.chat(messages=msgs, tools=tools,
                         tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert named["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
