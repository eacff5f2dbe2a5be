"""Wire tests: the prompt-id prefix property over multi-call tool conversations.

For each call k+1, prompt_token_ids(k+1) must start with prompt_token_ids(k) + token_ids(k)
when the assistant messages are fed back exactly as the server returned them.
"""

import pytest

from gym_rollouts.embedded import EmbeddedConfig, launch_embedded

CAPTURE = {"logprobs": True, "top_logprobs": 0, "return_tokens_as_token_ids": True, "return_token_ids": True}
VARIANTS = {
    "plain": {},
    "reasoning-inline": {"reasoning": True},
    "reasoning-parser": {"reasoning": True, "reasoning_parser": "qwen3"},
    "reasoning-content": {"reasoning": True, "reasoning_parser": "deepseek_r1", "reasoning_field": "reasoning_content"},
}
FEEDBACK_KEYS = ("role", "content", "tool_calls", "reasoning", "reasoning_content")


def _feed_back(message, strip_inline_reasoning=False):
    out = {k: message[k] for k in FEEDBACK_KEYS if k in message and message[k] is not None}
    out.setdefault("content", None)
    if strip_inline_reasoning and (out["content"] or "").startswith("<think>"):
        # a client that extracts inline reasoning itself (uses_reasoning_parser on its side)
        reasoning, _, rest = out["content"][len("<think>"):].partition("</think>")
        out["reasoning"], out["content"] = reasoning, rest.strip() or None
    return out


async def run_conversation(w, tools, strip_inline_reasoning=False):
    """Four calls: tool call, answer, (new user turn) tool call, answer. Returns the replies."""
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "What's the weather in Paris?"}]
    replies, results = [], iter(["Sunny, 21 C", "391"])
    for step in range(4):
        if step == 2:
            messages.append({"role": "user", "content": "Now compute 17*23 please."})
        reply = await w.chat(model="gym-tiny", messages=messages, tools=tools, **CAPTURE)
        replies.append(reply)
        message = reply["choices"][0]["message"]
        messages.append(_feed_back(message, strip_inline_reasoning))
        for call in message.get("tool_calls") or []:
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": next(results)})
    return replies, messages


def assert_prefix_property(replies):
    for prev, nxt in zip(replies, replies[1:]):
        head = prev["prompt_token_ids"] + prev["choices"][0]["token_ids"]
        assert nxt["prompt_token_ids"][: len(head)] == head


@pytest.mark.parametrize("variant", list(VARIANTS))
async def test_prefix_property(make_wire, tools, variant):
    w = await make_wire(**VARIANTS[variant])
    replies, messages = await run_conversation(w, tools)
    finishes = [r["choices"][0]["finish_reason"] for r in replies]
    assert finishes == ["tool_calls", "stop", "tool_calls", "stop"]
    assert replies[1]["choices"][0]["message"]["content"].endswith("The answer is Sunny, 21 C.")
    assert replies[3]["choices"][0]["message"]["content"].endswith("The answer is 391.")
    calls = [r["choices"][0]["message"]["tool_calls"][0]["function"]["name"] for r in replies[::2]]
    assert calls == ["get_weather", "calculator"]
    assert_prefix_property(replies)
    # the token ids agree with the logprob entries on every call
    for r in replies:
        entries = r["choices"][0]["logprobs"]["content"]
        assert [e["token"] for e in entries] == [f"token_id:{i}" for i in r["choices"][0]["token_ids"]]
    # /tokenize of the same messages gives the same prompt ids
    status, tk = await w.post("/tokenize", {"messages": messages[:-1], "tools": tools})
    assert tk["tokens"] == replies[-1]["prompt_token_ids"]


async def test_reasoning_shapes(make_wire, tools):
    msgs = [{"role": "user", "content": "What is 2+2?"}]
    inline = (await (await make_wire(reasoning=True)).chat(messages=msgs))["choices"][0]["message"]
    assert inline["content"] == "<think>I will compute 2+2.</think>\n\nThe answer is 4."
    assert inline["reasoning"] is None
    split = (await (await make_wire(reasoning=True, reasoning_parser="qwen3")).chat(messages=msgs))
    message = split["choices"][0]["message"]
    assert (message["reasoning"], message["content"]) == ("I will compute 2+2.", "The answer is 4.")
    old = await make_wire(reasoning=True, reasoning_parser="deepseek_r1", reasoning_field="reasoning_content")
    message = (await old.chat(messages=msgs))["choices"][0]["message"]
    assert message["reasoning_content"] == "I will compute 2+2." and "reasoning" not in message
    off = await (await make_wire(reasoning=True)).chat(messages=msgs,
                                                      chat_template_kwargs={"enable_thinking": False})
    assert off["choices"][0]["message"]["content"] == "The answer is 4."


async def test_prefix_property_with_client_side_reasoning_extraction(make_wire, tools):
    w = await make_wire(reasoning=True)
    replies, _ = await run_conversation(w, tools, strip_inline_reasoning=True)
    assert_prefix_property(replies)


async def test_no_token_ids_when_server_does_not_support_them(make_wire, tools):
    w = await make_wire(return_token_ids_supported=False)
    reply = await w.chat(messages=[{"role": "user", "content": "hi"}], **CAPTURE)
    assert "prompt_token_ids" not in reply and "token_ids" not in reply["choices"][0]
    # the fallback: /tokenize + token_id:N logprob entries still give the full picture
    assert reply["choices"][0]["logprobs"]["content"][-1]["token"].startswith("token_id:")
    completion = await w.completion(prompt="hi", **{"return_token_ids": True})
    assert "token_ids" not in completion["choices"][0] and "prompt_token_ids" not in completion["choices"][0]


async def test_prefix_property_against_a_subprocess(tools, wire_to):
    cfg = EmbeddedConfig(reasoning=True, reasoning_parser="qwen3")
    async with launch_embedded(cfg) as proc:
        replies, _ = await run_conversation(wire_to(proc.base_url), tools)
    assert_prefix_property(replies)
