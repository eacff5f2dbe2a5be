"""Wire tests: every endpoint's shape against an in-process server on 127.0.0.1."""

import asyncio
import re

from gym_rollouts.embedded.tokenizer import EOS_ID, ByteTokenizer

tok = ByteTokenizer()
CAPTURE = {"logprobs": True, "top_logprobs": 0, "return_tokens_as_token_ids": True, "return_token_ids": True}


async def test_health_version_models(wire):
    assert (await wire.get("/health"))[:2] == (200, "")
    status, text, _ = await wire.get("/version")
    assert status == 200 and '"version":"0.32.0"' in text
    async with wire.session.get(wire.base + "/models") as resp:
        models = await resp.json()
    card = models["data"][0]
    assert models["object"] == "list"
    assert card["id"] == "gym-tiny" and card["object"] == "model" and card["owned_by"] == "vllm"
    assert card["max_model_len"] == 4096 and card["root"]


async def test_unknown_path_is_fastapi_404(wire):
    status, text, _ = await wire.get("/chat/completions")
    assert status == 404 and text == '{"detail":"Not Found"}'


async def test_metrics_exposition(wire):
    await wire.chat(messages=[{"role": "user", "content": "hi"}])
    status, text, ctype = await wire.get("/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    labels = '{engine="0",model_name="gym-tiny"}'
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total",
                 "vllm:num_preemptions_total", "vllm:prompt_tokens_total", "vllm:generation_tokens_total"):
        assert re.search(rf"^{re.escape(name + labels)} [0-9.e+-]+$", text, re.M), name
    assert re.search(r"^vllm:prompt_tokens_total\S* ([1-9][0-9]*\.0)$", text, re.M)


async def test_chat_shape_without_capture(wire):
    reply = await wire.chat(model="gym-tiny", messages=[{"role": "user", "content": "What is 2+2?"}])
    assert reply["object"] == "chat.completion" and reply["id"].startswith("chatcmpl-")
    assert reply["model"] == "gym-tiny" and isinstance(reply["created"], int)
    choice = reply["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "The answer is 4."
    assert choice["message"]["reasoning"] is None and "tool_calls" not in choice["message"]
    assert choice["finish_reason"] == "stop" and choice["stop_reason"] is None
    assert choice["logprobs"] is None and choice["token_ids"] is None
    assert reply["prompt_token_ids"] is None
    usage = reply["usage"]
    assert usage["completion_tokens"] == len("The answer is 4.") + 1  # + eos
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"] is None


async def test_token_ids_agree_with_logprob_entries(wire):
    reply = await wire.chat(messages=[{"role": "user", "content": "What is 3*(4+5)?"}], **CAPTURE)
    choice = reply["choices"][0]
    ids = choice["token_ids"]
    assert ids[-1] == EOS_ID
    assert [f"token_id:{i}" for i in ids] == [e["token"] for e in choice["logprobs"]["content"]]
    assert all(e["logprob"] < 0 and e["top_logprobs"] == [] for e in choice["logprobs"]["content"])
    assert tok.decode(ids[:-1]) == choice["message"]["content"] == "The answer is 27."
    assert reply["usage"]["completion_tokens"] == len(ids)
    assert reply["usage"]["prompt_tokens"] == len(reply["prompt_token_ids"])
    again = await wire.chat(messages=[{"role": "user", "content": "What is 3*(4+5)?"}], **CAPTURE)
    assert again["choices"][0]["logprobs"] == choice["logprobs"]  # deterministic


async def test_logprob_variants(wire):
    msgs = [{"role": "user", "content": "hi"}]
    reply = await wire.chat(messages=msgs, logprobs=True, top_logprobs=3)
    entries = reply["choices"][0]["logprobs"]["content"]
    assert "".join(e["token"] for e in entries[:-1]) == reply["choices"][0]["message"]["content"]
    for e in entries:
        tops = e["top_logprobs"]
        assert len(tops) == 3 and tops[0]["token"] == e["token"]
        assert [t["logprob"] for t in tops] == sorted((t["logprob"] for t in tops), reverse=True)
        assert bytes(e["bytes"]).decode() == e["token"]
    nulls = await wire.chat(messages=msgs, logprobs=True, top_logprobs=None)
    assert nulls["choices"][0]["logprobs"] is None


async def test_tool_call_shape(wire, tools):
    reply = await wire.chat(messages=[{"role": "user", "content": "What's the weather in Paris?"}], tools=tools)
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    msg = choice["message"]
    assert msg["content"] is None
    (call,) = msg["tool_calls"]
    assert re.fullmatch(r"chatcmpl-tool-[0-9a-f]+", call["id"])
    assert call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}


async def test_n_and_stop(wire):
    msgs = [{"role": "user", "content": "What is 2+2?"}]
    reply = await wire.chat(messages=msgs, n=2, return_token_ids=True)
    assert [c["index"] for c in reply["choices"]] == [0, 1]
    assert reply["usage"]["completion_tokens"] == 2 * len(reply["choices"][0]["token_ids"])
    stopped = await wire.chat(messages=msgs, stop=["is"], return_token_ids=True)
    choice = stopped["choices"][0]
    assert choice["message"]["content"] == "The answer "
    assert choice["finish_reason"] == "stop" and choice["stop_reason"] == "is"
    assert tok.decode(choice["token_ids"]) == "The answer is"


async def test_max_tokens_truncates_and_skips_tool_parsing(wire, tools):
    reply = await wire.chat(messages=[{"role": "user", "content": "weather in Rome"}], tools=tools,
                            max_tokens=5, return_token_ids=True)
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "length" and len(choice["token_ids"]) == 5
    assert "tool_calls" not in choice["message"]
    assert choice["message"]["content"] == tok.decode(choice["token_ids"]) == "<tool_call>\n{\"n"


async def test_stream_is_refused_clearly(wire):
    status, body = await wire.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                                            "stream": True})
    assert status == 400 and "stream" in body["error"]["message"]


async def test_completions_shape(wire):
    reply = await wire.completion(model="gym-tiny", prompt="What is 10-4?", max_tokens=50, logprobs=1,
                                  return_token_ids=True)
    assert reply["object"] == "text_completion" and reply["id"].startswith("cmpl-")
    choice = reply["choices"][0]
    assert choice["text"] == "The answer is 6."
    assert choice["finish_reason"] == "stop"
    assert choice["prompt_token_ids"] == tok.encode("What is 10-4?")
    assert choice["token_ids"] == tok.encode("The answer is 6.") + [EOS_ID]
    lp = choice["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["text_offset"]) == len(choice["token_ids"])
    assert lp["text_offset"][:3] == [0, 1, 2]
    assert all(len(t) == 1 for t in lp["top_logprobs"])
    assert "prompt_token_ids" not in reply


async def test_completions_defaults_and_token_prompt(wire):
    reply = await wire.completion(prompt=tok.encode("What is 1+1?"))
    choice = reply["choices"][0]
    assert choice["text"] == "The answer is 2." and choice["logprobs"] is None
    long = await wire.completion(prompt="please echo this long sentence back to me")
    assert long["choices"][0]["finish_reason"] == "length"  # vLLM's default max_tokens is 16
    assert long["usage"]["completion_tokens"] == 16


async def test_completions_on_a_rendered_chat_prompt_calls_tools(wire, tools):
    msgs = [{"role": "user", "content": "What's the weather in Paris?"}]
    status, tk = await wire.post("/tokenize", {"messages": msgs, "tools": tools})
    reply = await wire.completion(prompt=tk["tokens"], max_tokens=200, return_token_ids=True)
    chat = await wire.chat(messages=msgs, tools=tools, return_token_ids=True)
    assert reply["choices"][0]["token_ids"] == chat["choices"][0]["token_ids"]
    assert reply["choices"][0]["text"].startswith("<tool_call>\n")


async def test_tokenize_matches_prompt_token_ids(wire, tools):
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "weather in Oslo"}]
    chat = await wire.chat(messages=msgs, tools=tools, return_token_ids=True)
    status, tk = await wire.post("/tokenize", {"model": "gym-tiny", "messages": msgs, "tools": tools})
    assert status == 200
    assert tk == {"count": len(chat["prompt_token_ids"]), "max_model_len": 4096,
                  "tokens": chat["prompt_token_ids"], "token_strs": None}
    status, plain = await wire.post("/tokenize", {"prompt": "ab<|im_end|>", "return_token_strs": True})
    assert plain["tokens"] == [97, 98, EOS_ID] and plain["token_strs"] == ["a", "b", "<|im_end|>"]
    status, no_gen = await wire.post("/tokenize", {"messages": msgs, "add_generation_prompt": False})
    assert not tok.decode(no_gen["tokens"]).endswith("<|im_start|>assistant\n")
    status, detok = await wire.post("/detokenize", {"tokens": plain["tokens"]})
    assert detok == {"prompt": "ab<|im_end|>"}


async def test_extra_keys_are_accepted(wire):
    reply = await wire.chat(messages=[{"role": "user", "content": "hi"}], temperature=0.7, top_p=0.9, seed=3,
                            reasoning_effort="low", top_k=5, repetition_penalty=1.1, extra_thing={"a": 1},
                            chat_template_kwargs={"enable_thinking": False}, max_completion_tokens=50)
    assert reply["choices"][0]["message"]["content"] == "You said: hi."


async def test_prefix_cache_and_running_metrics(make_wire):
    w = await make_wire(latency_ms=300)
    body = {"messages": [{"role": "user", "content": "x" * 100}]}
    tasks = [asyncio.ensure_future(w.chat(**body)) for _ in range(4)]
    await asyncio.sleep(0.15)
    assert w.server.metrics.running == 4
    _, text, _ = await w.get("/metrics")
    assert re.search(r"^vllm:num_requests_running\S* 4\.0$", text, re.M)
    assert re.search(r"^vllm:kv_cache_usage_perc\S* 0\.0*[1-9]", text, re.M)
    await asyncio.gather(*tasks)
    stats = w.server.stats()
    assert stats["running"] == 0 and stats["requests"]["chat"] == 4
    assert stats["prefix_cache_hits"] > 0 and stats["prefix_cache_queries"] == stats["prompt_tokens"]
