"""Completions mode (``use_completions_api: true``): single-turn prompts on ``/v1/completions``.

Only ``[user]`` or ``[system, user]`` conversations of text are allowed (``instructions`` count
as the system message); the prompt is their texts joined by a blank line, sent as is (no chat
template). Tools, images, audio, assistant turns and tool outputs are refused with an error that
names the chat API as the way out (``request.completions_problems``: what a row scan can see).
The body follows the same precedence rules as chat (request.py); token capture asks for
``logprobs: 0`` (the sampled token only), ``return_tokens_as_token_ids`` and ``return_token_ids``.
Note that vLLM's completions endpoint defaults ``max_tokens`` to 16: set ``max_output_tokens``.
"""

from __future__ import annotations

from typing import Any, Mapping

from gym_rollouts.adapter.messages import RequestConversionError, raise_problems, responses_to_chat_messages
from gym_rollouts.adapter.reply import ModelTurn, first_choice, generation_turn, text_to_items
from gym_rollouts.adapter.request import completions_problems, mapped_fields, require_single_choice, shape_body
from gym_rollouts.config.schema import ModelConfig
from gym_rollouts.errors import ProtocolError

# Chat-only fields that have no meaning on /v1/completions.
_CHAT_ONLY = ("tools", "tool_choice", "parallel_tool_calls", "reasoning_effort", "top_logprobs", "response_format")


def completion_prompt(params: Mapping[str, Any], cfg: ModelConfig) -> str:
    raise_problems(completions_problems(params))
    messages = responses_to_chat_messages(params, cfg)
    roles = [m["role"] for m in messages]
    if roles not in (["user"], ["system", "user"]):
        raise RequestConversionError(
            f"completions mode (use_completions_api=true) needs a [user] or [system, user] conversation, "
            f"got {roles}; multi-turn and tool conversations need the chat API (use_completions_api=false)")
    return "\n\n".join(m["content"] or "" for m in messages)


def build_completions_body(params: Mapping[str, Any], cfg: ModelConfig, model: str) -> dict[str, Any]:
    mapped = {k: v for k, v in mapped_fields(params).items() if k not in _CHAT_ONLY}
    if "logprobs" in mapped:  # top_logprobs=N in the request: completions spell it logprobs=N
        mapped["logprobs"] = params["top_logprobs"]
    mapped["prompt"] = completion_prompt(params, cfg)
    body = shape_body(mapped, params, cfg, model, template_kwargs=False)
    if cfg.return_token_id_information:
        body.update(logprobs=0, return_tokens_as_token_ids=True, return_token_ids=True)
        require_single_choice(body)
    return body


def completion_reply_to_turn(reply: Mapping[str, Any], cfg: ModelConfig) -> ModelTurn:
    choice = first_choice(reply, "completion")
    text = choice.get("text")
    if not isinstance(text, str):
        raise ProtocolError("choices[0].text must be a string")
    finish = choice.get("finish_reason")
    output = text_to_items(text, None, [], cfg, truncated=finish == "length")
    return generation_turn(output, reply, finish)
