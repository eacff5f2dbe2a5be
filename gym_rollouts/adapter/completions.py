"""Completions mode (``use_completions_api: true``): single-turn prompts on ``/v1/completions``.

Only ``[user]`` or ``[system, user]`` conversations are allowed; the prompt is their texts joined
by a blank line. Tools and multi-turn histories are refused with a clear error.
"""

from __future__ import annotations

from typing import Any, Mapping

from gym_rollouts.adapter.reply import ModelTurn, map_usage, message_item, reasoning_item, split_message_text
from gym_rollouts.adapter.request import RequestConversionError, _PASSTHROUGH, build_chat_body
from gym_rollouts.config.schema import ModelConfig
from gym_rollouts.errors import ProtocolError


def build_completions_body(params: Mapping[str, Any], cfg: ModelConfig, model: str) -> dict[str, Any]:
    if params.get("tools"):
        raise RequestConversionError("completions mode (use_completions_api) does not support tools")
    chat = build_chat_body(params, cfg, model)
    messages = chat.pop("messages")
    roles = [m["role"] for m in messages]
    if roles not in (["user"], ["system", "user"]):
        raise RequestConversionError(
            f"completions mode needs a [user] or [system, user] conversation, got {roles}; "
            f"multi-turn and tool conversations need the chat API (use_completions_api=false)"
        )
    body = {k: v for k, v in chat.items() if k not in ("top_logprobs", "return_tokens_as_token_ids", "logprobs",
                                                     "tool_choice", "chat_template_kwargs")}
    body["prompt"] = "\n\n".join(m["content"] or "" for m in messages)
    if cfg.return_token_id_information:
        body.update(logprobs=0, return_tokens_as_token_ids=True, return_token_ids=True)
    for key in _PASSTHROUGH:
        if key in chat:
            body[key] = chat[key]
    return body


def completion_reply_to_turn(reply: Mapping[str, Any], cfg: ModelConfig) -> ModelTurn:
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices:
        raise ProtocolError(f"completion has no choices: {str(reply)[:200]}")
    choice = choices[0]
    text = choice.get("text")
    if not isinstance(text, str):
        raise ProtocolError("choices[0].text must be a string")
    blocks, visible = split_message_text({"content": text}, cfg)
    output = ([reasoning_item(blocks)] if blocks else []) + [message_item(visible)]
    finish = choice.get("finish_reason")
    return ModelTurn(output=output, usage=map_usage(reply.get("usage")), finish_reason=finish,
                     incomplete_reason="max_output_tokens" if finish == "length" else None)
