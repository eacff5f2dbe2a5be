"""Pin the wire facts of /work/shared/vllm_wire.md (docs/real_vllm.md) against a real vLLM server.

Raw HTTP only (urllib / http.client / one aiohttp check), never through our adapter: these tests
say what vLLM does, so that the adapter's and the embedded server's own tests can rely on it.
Where a fact is specific to the tiny local model (exact token ids, its 64-character longest
token, what its biased random head generates), the assertion is guarded by ``real_vllm_local``;
everything else also holds against a GPU server given by ``GYM_ROLLOUTS_VLLM_URL``.

Forcing text: the tiny model is random, so tool calls and ``<think>`` blocks are forced with
vLLM's structured outputs, ``"structured_outputs": {"regex": <text as a regex literal>}`` (or
``{"choice": [text]}``), at temperature 0; the tool parser / reasoning parser then run as in
production.
"""

from __future__ import annotations

import asyncio
import http.client
import re
import socket
import time
import urllib.parse

import pytest

from gym_rollouts.testing.real_vllm import http_json, root_of, served_model_name

CAPTURE = {"logprobs": True, "top_logprobs": 0, "return_tokens_as_token_ids": True, "return_token_ids": True}
USER = [{"role": "user", "content": "say hello"}]
PLAIN_TEXT = "Hello world, how are you today?"
THINK_TEXT = "<think>\nthe user wants a greeting\n</think>\n\nHello!"
TOOL_CALL_TEXT = '<tool_call>\n{"name": "lookup", "arguments": {"key": "value"}}\n</tool_call>'
TOOLS = [{
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a key up.",
        "parameters": {"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]},
    },
}]


# --- helpers -------------------------------------------------------------------------------------

def chat(base: str, body: dict) -> tuple[int, dict]:
    return http_json(base + "/chat/completions", body)


def regex_literal(text: str) -> str:
    """A regex matching exactly ``text`` (re.escape also escapes spaces and newlines, which
    xgrammar then warns about in the server log)."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", text).replace("\n", "\\n")


def forced(text: str) -> dict:
    return {"structured_outputs": {"regex": regex_literal(text)}, "temperature": 0}


def ok_chat(base: str, body: dict) -> dict:
    status, resp = chat(base, body)
    assert status == 200, resp
    return resp


def tokenize_chat(base: str, model: str, messages: list, tools: list | None = None) -> list[int]:
    body = {"model": model, "messages": messages}
    if tools:
        body["tools"] = tools
    status, resp = http_json(root_of(base) + "/tokenize", body)
    assert status == 200, resp
    return resp["tokens"]


def tokenize_text(base: str, model: str, text: str) -> list[int]:
    status, resp = http_json(
        root_of(base) + "/tokenize", {"model": model, "prompt": text, "add_special_tokens": False}
    )
    assert status == 200, resp
    return resp["tokens"]


def models_entry(base: str) -> dict:
    status, resp = http_json(base + "/models")
    assert status == 200, resp
    return resp["data"][0]


def prompt_of_n_tokens(base: str, model: str, n: int) -> list[dict]:
    """One user message whose chat prompt is exactly ``n`` tokens (calibrated with /tokenize)."""
    def count(text: str) -> int:
        return len(tokenize_chat(base, model, [{"role": "user", "content": text}]))

    empty = count("")
    for unit in (" x", " a", " the", " hello"):
        if count(unit * 50) - empty == 50:
            messages = [{"role": "user", "content": unit * (n - empty)}]
            if count(messages[0]["content"]) == n:
                return messages
    pytest.skip(f"could not build a chat prompt of exactly {n} tokens for this model")


def assert_continuity(p1: list[int], gen: list[int], p2: list[int]) -> None:
    assert p2[: len(p1)] == p1
    assert p2[len(p1): len(p1) + len(gen)] == gen


# --- endpoints -----------------------------------------------------------------------------------

def test_health_version_models(real_vllm, real_vllm_model, real_vllm_local):
    root = root_of(real_vllm)
    status, body = http_json(root + "/health")
    assert (status, body) == (200, "")
    status, body = http_json(root + "/version")
    assert status == 200 and set(body) == {"version"}
    if real_vllm_local:
        assert body == {"version": "0.32.0"}
    status, body = http_json(real_vllm + "/models")
    assert status == 200 and body["object"] == "list"
    entry = body["data"][0]
    assert entry["id"] == real_vllm_model
    assert entry["object"] == "model" and entry["owned_by"] == "vllm"
    assert isinstance(entry["root"], str) and isinstance(entry["max_model_len"], int)
    if real_vllm_local:
        assert entry["max_model_len"] == 2048 and entry["root"].endswith("tiny-model")


def test_base_url_without_v1_is_a_plain_404(real_vllm, real_vllm_model):
    # The most common misconfiguration: http://host:port instead of http://host:port/v1.
    status, body = chat(root_of(real_vllm), {"model": real_vllm_model, "messages": USER, "max_tokens": 1})
    assert (status, body) == (404, {"detail": "Not Found"})
    status, body = http_json(root_of(real_vllm) + "/models")
    assert (status, body) == (404, {"detail": "Not Found"})


def test_tokenize_shape_and_default_generation_prompt(real_vllm, real_vllm_model):
    status, body = http_json(root_of(real_vllm) + "/tokenize", {"model": real_vllm_model, "messages": USER})
    assert status == 200
    assert set(body) == {"count", "max_model_len", "tokens", "token_strs"}
    assert body["count"] == len(body["tokens"]) and body["token_strs"] is None
    # /tokenize adds the generation prompt by default: same ids as the chat request's prompt.
    with_prompt = http_json(root_of(real_vllm) + "/tokenize", {
        "model": real_vllm_model, "messages": USER, "add_generation_prompt": True})[1]["tokens"]
    assert body["tokens"] == with_prompt


def test_metrics_exposes_the_gauges_we_read(real_vllm, real_vllm_model):
    status, text = http_json(root_of(real_vllm) + "/metrics")
    assert status == 200 and isinstance(text, str)
    names = {line.split("{")[0] for line in text.splitlines() if line.startswith("vllm:")}
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:prefix_cache_hits_total", "vllm:num_preemptions_total"):
        assert name in names
    running = [line for line in text.splitlines() if line.startswith("vllm:num_requests_running{")]
    assert running and 'engine="0"' in running[0] and f'model_name="{real_vllm_model}"' in running[0]


# --- chat with token capture ---------------------------------------------------------------------

def test_chat_token_capture(real_vllm, real_vllm_model, real_vllm_local):
    resp = ok_chat(real_vllm, {"model": real_vllm_model, "messages": USER, "max_tokens": 8, **CAPTURE})
    assert resp["object"] == "chat.completion" and resp["id"].startswith("chatcmpl-")
    choice = resp["choices"][0]
    ids = choice["token_ids"]
    entries = choice["logprobs"]["content"]
    assert all(e["token"].startswith("token_id:") for e in entries)
    assert [int(e["token"].removeprefix("token_id:")) for e in entries] == ids
    assert all(e["top_logprobs"] == [] for e in entries)
    assert all(isinstance(e["logprob"], float) and e["logprob"] <= 0.0 for e in entries)
    # 'bytes' are those of the real token text, not of "token_id:N".
    assert b"".join(bytes(e["bytes"]) for e in entries).decode() == choice["message"]["content"]
    assert resp["usage"]["completion_tokens"] == len(ids)
    # Prompt ids: top level for chat (not per choice), equal to /tokenize of the same messages.
    assert choice.get("prompt_token_ids") is None
    assert resp["prompt_token_ids"] == tokenize_chat(real_vllm, real_vllm_model, USER)
    assert resp["usage"]["prompt_tokens"] == len(resp["prompt_token_ids"])
    assert "reasoning" in choice["message"] and choice["message"]["reasoning"] is None
    if real_vllm_local:  # the tiny model never stops on its own
        assert len(ids) == 8 and choice["finish_reason"] == "length" and choice["stop_reason"] is None


def test_chat_without_return_token_ids_has_null_ids(real_vllm, real_vllm_model):
    resp = ok_chat(real_vllm, {"model": real_vllm_model, "messages": USER, "max_tokens": 2})
    assert resp["choices"][0]["token_ids"] is None
    assert resp["prompt_token_ids"] is None
    assert resp["choices"][0]["logprobs"] is None


@pytest.mark.parametrize("extra", [
    {"logprobs": True, "top_logprobs": None},
    {"logprobs": True},
    {"logprobs": True, "top_logprobs": 0},
])
def test_top_logprobs_null_still_returns_logprobs(real_vllm, real_vllm_model, extra):
    # vllm_wire.md said a null top_logprobs reads as "no logprobs"; vLLM 0.32 treats it as 0.
    resp = ok_chat(real_vllm, {"model": real_vllm_model, "messages": USER, "max_tokens": 2, **extra})
    entries = resp["choices"][0]["logprobs"]["content"]
    assert len(entries) == 2 and all(e["top_logprobs"] == [] for e in entries)


@pytest.mark.parametrize("structured", [
    {"choice": [PLAIN_TEXT]},
    {"regex": regex_literal(PLAIN_TEXT)},
], ids=["choice", "regex"])
def test_two_turn_token_continuity(real_vllm, real_vllm_model, real_vllm_local, structured):
    model = real_vllm_model
    resp = ok_chat(real_vllm, {"model": model, "messages": USER, "max_tokens": 40, "temperature": 0,
                               "structured_outputs": structured, **CAPTURE})
    choice = resp["choices"][0]
    assert choice["message"]["content"] == PLAIN_TEXT
    assert choice["finish_reason"] == "stop"
    p1, gen = resp["prompt_token_ids"], choice["token_ids"]
    # The stop token is part of token_ids; the text is not.
    canonical = tokenize_text(real_vllm, model, PLAIN_TEXT)
    if real_vllm_local:
        assert gen[:-1] == canonical  # the tiny model's head makes forced text canonical
        assert gen[-1] == tokenize_text(real_vllm, model, "<|im_end|>")[0]
    turn2 = USER + [{"role": "assistant", "content": PLAIN_TEXT}, {"role": "user", "content": "again"}]
    resp2 = ok_chat(real_vllm, {"model": model, "messages": turn2, "max_tokens": 1, **CAPTURE})
    p2 = resp2["prompt_token_ids"]
    assert p2[: len(p1)] == p1
    if gen[:-1] == canonical:
        assert_continuity(p1, gen, p2)  # holds whenever the generation was tokenized canonically
    else:
        assert p2[len(p1): len(p1) + len(canonical)] == canonical


# --- tools ---------------------------------------------------------------------------------------

def test_forced_tool_call_is_parsed_by_hermes(real_vllm, real_vllm_model, real_vllm_local):
    model = real_vllm_model
    body = {"model": model, "messages": USER, "tools": TOOLS, "tool_choice": "auto", "max_tokens": 60,
            **forced(TOOL_CALL_TEXT), **CAPTURE}
    resp = ok_chat(real_vllm, body)
    choice = resp["choices"][0]
    msg = choice["message"]
    assert choice["finish_reason"] == "tool_calls"
    assert msg["content"] is None
    (call,) = msg["tool_calls"]
    assert call["id"].startswith("chatcmpl-tool-") and call["type"] == "function"
    assert call["function"] == {"name": "lookup", "arguments": '{"key": "value"}'}  # a JSON string
    gen = choice["token_ids"]
    if real_vllm_local:  # <tool_call> / </tool_call> are single tokens of the tiny vocab
        assert gen[0] == tokenize_text(real_vllm, model, "<tool_call>")[0]
        assert gen[:-1] == tokenize_text(real_vllm, model, TOOL_CALL_TEXT)
    # Feed the call and its result back: the prompt continues the first turn token for token.
    turn2 = USER + [
        {"role": "assistant", "content": None, "tool_calls": msg["tool_calls"]},
        {"role": "tool", "tool_call_id": call["id"], "content": "42"},
    ]
    resp2 = ok_chat(real_vllm, {"model": model, "messages": turn2, "tools": TOOLS, "max_tokens": 1, **CAPTURE})
    p1, p2 = resp["prompt_token_ids"], resp2["prompt_token_ids"]
    if real_vllm_local:
        assert_continuity(p1, gen, p2)
        tail = tokenize_text(real_vllm, model, "\n<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>\n")
        assert p2[len(p1) + len(gen):][: len(tail)] == tail
    else:
        assert p2[: len(p1)] == p1


def test_tools_without_tool_choice_default_to_auto(real_vllm, real_vllm_model):
    body = {"model": real_vllm_model, "messages": USER, "tools": TOOLS, "max_tokens": 60, **forced(TOOL_CALL_TEXT)}
    msg = ok_chat(real_vllm, body)["choices"][0]["message"]
    assert [c["function"]["name"] for c in msg["tool_calls"]] == ["lookup"]


def test_invalid_tool_call_json_falls_back_to_content(real_vllm, real_vllm_model):
    bad = '<tool_call>\n{"name": "lookup", "arguments": {"key": }\n</tool_call>'
    body = {"model": real_vllm_model, "messages": USER, "tools": TOOLS, "max_tokens": 60, **forced(bad)}
    choice = ok_chat(real_vllm, body)["choices"][0]
    assert choice["message"]["content"] == bad
    assert not choice["message"].get("tool_calls")
    assert choice["finish_reason"] == "stop"


def test_random_model_never_calls_tools_unforced(real_vllm, real_vllm_model, real_vllm_local):
    if not real_vllm_local:
        pytest.skip("a statement about the tiny local model")
    body = {"model": real_vllm_model, "messages": USER, "tools": TOOLS, "max_tokens": 16, "temperature": 0}
    choice = ok_chat(real_vllm, body)["choices"][0]
    assert not choice["message"].get("tool_calls") and choice["finish_reason"] == "length"


# --- reasoning -----------------------------------------------------------------------------------

def test_think_stays_inline_without_reasoning_parser(real_vllm, real_vllm_model, real_vllm_local):
    model = real_vllm_model
    resp = ok_chat(real_vllm, {"model": model, "messages": USER, "max_tokens": 40, **forced(THINK_TEXT), **CAPTURE})
    choice = resp["choices"][0]
    assert choice["message"]["content"] == THINK_TEXT
    assert choice["message"]["reasoning"] is None
    assert "reasoning_content" not in choice["message"]
    turn2 = USER + [{"role": "assistant", "content": THINK_TEXT}, {"role": "user", "content": "and?"}]
    p2 = ok_chat(real_vllm, {"model": model, "messages": turn2, "max_tokens": 1, **CAPTURE})["prompt_token_ids"]
    if real_vllm_local:
        assert_continuity(resp["prompt_token_ids"], choice["token_ids"], p2)


def test_reasoning_parser_splits_into_message_reasoning(real_vllm_reasoning, real_vllm_local):
    base = real_vllm_reasoning
    model = served_model_name(base)
    resp = ok_chat(base, {"model": model, "messages": USER, "max_tokens": 40, **forced(THINK_TEXT), **CAPTURE})
    choice = resp["choices"][0]
    msg = choice["message"]
    # The field is "reasoning" (vLLM >= 0.16); there is no "reasoning_content" key at all.
    assert msg["reasoning"] == "\nthe user wants a greeting\n"
    assert "reasoning_content" not in msg
    assert msg["content"] == "\n\nHello!"
    assert choice["finish_reason"] == "stop"
    details = resp["usage"]["completion_tokens_details"]
    assert details is not None and details["reasoning_tokens"] > 0
    p1, gen = resp["prompt_token_ids"], choice["token_ids"]
    if real_vllm_local:
        assert details["reasoning_tokens"] == len(tokenize_text(base, model, "\nthe user wants a greeting\n"))

    def prompt_with(assistant: dict) -> list[int]:
        turn2 = USER + [assistant, {"role": "user", "content": "and?"}]
        return ok_chat(base, {"model": model, "messages": turn2, "max_tokens": 1, **CAPTURE})["prompt_token_ids"]

    via_reasoning = prompt_with({"role": "assistant", "content": msg["content"], "reasoning": msg["reasoning"]})
    via_reasoning_content = prompt_with(
        {"role": "assistant", "content": msg["content"], "reasoning_content": msg["reasoning"]})
    without = prompt_with({"role": "assistant", "content": msg["content"]})
    # Both input spellings reach the chat template; dropping the reasoning changes the prompt.
    assert via_reasoning == via_reasoning_content
    assert without[: len(p1) + len(gen)] != p1 + gen
    if real_vllm_local:
        assert_continuity(p1, gen, via_reasoning)


def test_reasoning_then_tool_call_loses_the_whitespace_between(real_vllm_reasoning, real_vllm, real_vllm_local):
    text = "<think>\nthe user wants a greeting\n</think>\n\n" + TOOL_CALL_TEXT
    body = {"messages": USER, "tools": TOOLS, "max_tokens": 80, **forced(text), **CAPTURE}
    # With the reasoning parser: reasoning split off, call parsed, and the "\n\n" between is gone.
    model = served_model_name(real_vllm_reasoning)
    resp = ok_chat(real_vllm_reasoning, {"model": model, **body})
    msg = resp["choices"][0]["message"]
    assert msg["reasoning"] == "\nthe user wants a greeting\n"
    assert msg["content"] is None
    assert [c["function"]["name"] for c in msg["tool_calls"]] == ["lookup"]
    assert resp["choices"][0]["finish_reason"] == "tool_calls"
    if real_vllm_local:
        turn2 = USER + [{"role": "assistant", "content": None, "reasoning": msg["reasoning"],
                         "tool_calls": msg["tool_calls"]},
                        {"role": "tool", "tool_call_id": msg["tool_calls"][0]["id"], "content": "42"}]
        p2 = ok_chat(real_vllm_reasoning, {"model": model, "messages": turn2, "tools": TOOLS, "max_tokens": 1,
                                           **CAPTURE})["prompt_token_ids"]
        p1, gen = resp["prompt_token_ids"], resp["choices"][0]["token_ids"]
        assert p2[: len(p1)] == p1 and p2[: len(p1) + len(gen)] != p1 + gen  # continuity broken here
    # Without a reasoning parser the think block stays in content, whitespace included.
    model = served_model_name(real_vllm)
    msg = ok_chat(real_vllm, {"model": model, **body})["choices"][0]["message"]
    assert msg["content"] == "<think>\nthe user wants a greeting\n</think>\n\n"
    assert msg["reasoning"] is None
    assert [c["function"]["name"] for c in msg["tool_calls"]] == ["lookup"]


# --- completions ---------------------------------------------------------------------------------

def test_completions_shape(real_vllm, real_vllm_model, real_vllm_local):
    model = real_vllm_model
    status, resp = http_json(real_vllm + "/completions", {
        "model": model, "prompt": "def foo(", "max_tokens": 3, "logprobs": 0, "return_token_ids": True,
        "temperature": 0})
    assert status == 200 and resp["object"] == "text_completion"
    assert "prompt_token_ids" not in resp  # per choice here, unlike chat
    choice = resp["choices"][0]
    assert choice["prompt_token_ids"] == tokenize_text(real_vllm, model, "def foo(")
    lp = choice["logprobs"]
    assert set(lp) == {"tokens", "token_logprobs", "text_offset", "top_logprobs"}
    assert len(choice["token_ids"]) == len(lp["tokens"]) == len(lp["token_logprobs"]) == 3
    assert "".join(lp["tokens"]) == choice["text"]
    # logprobs=0: each position's top_logprobs holds the sampled token only.
    assert [list(d) for d in lp["top_logprobs"]] == [[t] for t in lp["tokens"]]
    assert lp["text_offset"][0] == 0

    prompt_ids = choice["prompt_token_ids"]
    status, resp = http_json(real_vllm + "/completions", {
        "model": model, "prompt": prompt_ids, "max_tokens": 3, "logprobs": 0, "return_token_ids": True,
        "return_tokens_as_token_ids": True})
    assert status == 200
    choice = resp["choices"][0]
    assert choice["prompt_token_ids"] == prompt_ids  # a prompt may be token ids
    tokens = choice["logprobs"]["tokens"]
    assert tokens == [f"token_id:{i}" for i in choice["token_ids"]]
    # text_offset then counts the "token_id:N" strings, not the text.
    offsets = [sum(len(t) for t in tokens[:k]) for k in range(len(tokens))]
    assert choice["logprobs"]["text_offset"] == offsets


# --- errors --------------------------------------------------------------------------------------

def _error(resp) -> dict:
    assert set(resp) == {"error"}, resp
    assert set(resp["error"]) == {"message", "type", "param", "code"}
    return resp["error"]


def test_prompt_over_the_context_is_400(real_vllm, real_vllm_model):
    m = models_entry(real_vllm)["max_model_len"]
    messages = prompt_of_n_tokens(real_vllm, real_vllm_model, m + 1)
    status, resp = chat(real_vllm, {"model": real_vllm_model, "messages": messages, "max_tokens": 16})
    assert status == 400
    assert _error(resp) == {
        "message": f"This model's maximum context length is {m} tokens. However, your prompt contains at "
                   f"least {m + 1} input tokens, which exceeds this limit even without any output tokens. "
                   f"Please reduce the length of the input prompt. (parameter=input_tokens, value={m + 1})",
        "type": "BadRequestError", "param": "input_tokens", "code": 400}


def test_prompt_exactly_at_the_context_is_400_max_tokens(real_vllm, real_vllm_model):
    m = models_entry(real_vllm)["max_model_len"]
    messages = prompt_of_n_tokens(real_vllm, real_vllm_model, m)
    for extra in ({"max_tokens": 16}, {}):
        status, resp = chat(real_vllm, {"model": real_vllm_model, "messages": messages, **extra})
        assert status == 400
        assert _error(resp) == {
            "message": "max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)",
            "type": "BadRequestError", "param": "max_tokens", "code": 400}


def test_max_tokens_above_max_model_len_is_400(real_vllm, real_vllm_model):
    m = models_entry(real_vllm)["max_model_len"]
    status, resp = chat(real_vllm, {"model": real_vllm_model, "messages": USER, "max_tokens": m + 1})
    assert status == 400
    assert _error(resp) == {
        "message": f"max_tokens={m + 1} cannot be greater than max_model_len={m}. Please request fewer "
                   f"output tokens. (parameter=max_tokens, value={m + 1})",
        "type": "BadRequestError", "param": "max_tokens", "code": 400}


def test_prompt_plus_max_tokens_over_the_context_is_clamped(real_vllm, real_vllm_model, real_vllm_local):
    m = models_entry(real_vllm)["max_model_len"]
    messages = prompt_of_n_tokens(real_vllm, real_vllm_model, m - 8)
    resp = ok_chat(real_vllm, {"model": real_vllm_model, "messages": messages, "max_tokens": 100, "temperature": 0})
    assert resp["usage"]["prompt_tokens"] == m - 8
    assert resp["usage"]["completion_tokens"] <= 8
    if real_vllm_local:
        assert resp["usage"]["completion_tokens"] == 8
        assert resp["choices"][0]["finish_reason"] == "length"


def test_prompt_text_over_the_character_bound_is_400(real_vllm, real_vllm_model, real_vllm_local):
    # Before tokenizing, vLLM refuses text longer than max_model_len * (longest token in chars).
    if not real_vllm_local:
        pytest.skip("the bound depends on the vocabulary; known for the tiny model (64 chars)")
    m = models_entry(real_vllm)["max_model_len"]
    content = "#" * (m * 64 + 1)
    status, resp = chat(real_vllm, {"model": real_vllm_model, "messages": [{"role": "user", "content": content}],
                                    "max_tokens": 4})
    assert status == 400
    err = _error(resp)
    n = len(content) + len("<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n")
    assert err == {
        "message": f"This model's maximum context length is {m} tokens. However, your prompt contains {n} "
                   f"characters (more than {m * 64} characters, which is the upper bound for {m} input "
                   f"tokens). Please reduce the length of the input prompt. (parameter=input_text, value={n})",
        "type": "BadRequestError", "param": "input_text", "code": 400}


def test_completions_prompt_over_the_context_is_400(real_vllm, real_vllm_model):
    m = models_entry(real_vllm)["max_model_len"]
    ids = tokenize_text(real_vllm, real_vllm_model, " x") * (m + 1)
    status, resp = http_json(real_vllm + "/completions", {"model": real_vllm_model, "prompt": ids, "max_tokens": 4})
    assert status == 400
    assert _error(resp) == {
        "message": f"This model's maximum context length is {m} tokens. However, your prompt contains at "
                   f"least {m + 1} input tokens, which exceeds this limit even without any output tokens. "
                   f"Please reduce the length of the input prompt. (parameter=input_tokens, value={m + 1})",
        "type": "BadRequestError", "param": "input_tokens", "code": 400}


@pytest.mark.parametrize("endpoint", ["/chat/completions", "/completions"])
def test_unknown_model_is_404(real_vllm, real_vllm_model, real_vllm_local, endpoint):
    body = {"model": "nope", "max_tokens": 1}
    body.update({"messages": USER} if endpoint == "/chat/completions" else {"prompt": "hi"})
    status, resp = http_json(real_vllm + endpoint, body)
    assert status == 404
    err = _error(resp)
    assert err["message"].startswith("The model `nope` does not exist. Valid aliases: ")
    assert (err["type"], err["param"], err["code"]) == ("NotFoundError", "model", 404)
    if real_vllm_local:
        assert err["message"] == "The model `nope` does not exist. Valid aliases: tiny."


# --- a server without a tool parser ----------------------------------------------------------------

@pytest.mark.parametrize("tool_choice, message", [
    ("auto", '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'),
    ("required", 'tool_choice="required" requires --tool-call-parser to be set'),
    ({"type": "function", "function": {"name": "lookup"}},
     'tool_choice=function "lookup" requires --tool-call-parser to be set'),
], ids=["auto", "required", "named"])
def test_tools_refused_without_tool_parser(real_vllm_no_tools, tool_choice, message):
    model = served_model_name(real_vllm_no_tools)
    status, resp = chat(real_vllm_no_tools, {"model": model, "messages": USER, "tools": TOOLS,
                                             "tool_choice": tool_choice, "max_tokens": 4})
    assert status == 400
    assert _error(resp) == {"message": message, "type": "BadRequestError", "param": None, "code": 400}


def test_tools_without_tool_choice_on_a_server_without_parser(real_vllm_no_tools):
    # No tool_choice with tools means "auto", refused the same way; tool_choice "none" is served.
    model = served_model_name(real_vllm_no_tools)
    status, resp = chat(real_vllm_no_tools, {"model": model, "messages": USER, "tools": TOOLS, "max_tokens": 4})
    assert status == 400
    assert _error(resp)["message"] == (
        '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set')
    body = {"model": model, "messages": USER, "tools": TOOLS, "tool_choice": "none", "max_tokens": 60,
            **forced(TOOL_CALL_TEXT)}
    msg = ok_chat(real_vllm_no_tools, body)["choices"][0]["message"]
    assert msg["content"] == TOOL_CALL_TEXT and not msg.get("tool_calls")  # nothing parses it


# --- keep-alive ------------------------------------------------------------------------------------

def test_server_closes_idle_keepalive_after_5s(real_vllm):
    url = urllib.parse.urlsplit(real_vllm)
    with socket.create_connection((url.hostname, url.port), timeout=15) as sock:
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: {url.hostname}\r\n\r\n".encode())
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        t0 = time.monotonic()
        while sock.recv(65536):  # read until the server closes the idle connection
            pass
        idle = time.monotonic() - t0
    assert 4.0 <= idle <= 7.0, idle
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=15)
    conn.request("GET", "/health")
    conn.getresponse().read()
    time.sleep(6.5)
    conn.request("GET", "/health")  # a client that does not watch its idle sockets
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
        conn.getresponse()
    conn.close()


async def test_aiohttp_pool_after_server_idle_close(real_vllm):
    aiohttp = pytest.importorskip("aiohttp")
    connector = aiohttp.TCPConnector(keepalive_timeout=30)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(root_of(real_vllm) + "/health") as resp:
            assert resp.status == 200
        await asyncio.sleep(6.5)
        # aiohttp notices a socket the server closed while idle and dials again; the
        # ServerDisconnectedError of vllm_wire.md needs the close to race the reuse.
        async with session.get(root_of(real_vllm) + "/health") as resp:
            assert resp.status == 200


def test_request_validation_error_body(real_vllm, real_vllm_model):
    # A body that fails request validation: same envelope, but "type" is the HTTP reason phrase
    # and "param" the location of the bad field.
    status, resp = chat(real_vllm, {"model": real_vllm_model, "messages": "not a list", "max_tokens": 1})
    assert status == 400
    assert _error(resp) == {
        "message": "1 validation error:\n  {'type': 'list_type', 'loc': 'body.messages', "
                   "'msg': 'Input should be a valid list', 'input': 'not a list'}",
        "type": "Bad Request", "param": "body.messages", "code": 400}
