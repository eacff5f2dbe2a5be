"""The few tiny request bodies ``doctor`` sends, built with the adapter's own builders (pure).

Each body goes through ``build_chat_body`` / ``build_completions_body`` with the user's model
config, so ``extra_body``, ``chat_template_kwargs``, ``sampling_overrides`` and token capture
are exactly what ``collect`` would send; only ``max_tokens`` is pinned small afterwards.

The basic probe also asks vLLM's structured outputs to write ``<think>ok</think>ok``: a model
that never reasons on its own (or a random test model) then still produces a think block, and
the reply shows whether the server split it off (``--reasoning-parser``) or left it inline.
Servers that do not know ``structured_outputs`` ignore it (the probe is then inconclusive).
"""

from __future__ import annotations

from typing import Any, Mapping

from gym_rollouts.adapter.completions import build_completions_body
from gym_rollouts.adapter.request import build_chat_body, tokenize_request
from gym_rollouts.config.schema import ModelConfig

PROBE_MAX_TOKENS = 32
FORCED_TEXT = "<think>ok</think>ok"
BASIC_PROMPT = "Reply with the word ok."
TOOLS_MAX_TOKENS = 128  # room for one complete tool call, so the parser can be seen working
TOOLS_PROMPT = "Use one of your tools if it helps, then answer: what is 2 + 3?"


def _pin(body: dict[str, Any], max_tokens: int = PROBE_MAX_TOKENS) -> dict[str, Any]:
    body.pop("max_completion_tokens", None)
    body["max_tokens"] = max_tokens
    body.pop("stream", None)
    return body


def basic_body(cfg: ModelConfig, model: str, *, force_reasoning: bool) -> tuple[str, dict[str, Any]]:
    """(path, body) of the one plain generation: chat, or completions in completions mode."""
    params = {"input": BASIC_PROMPT, "max_output_tokens": PROBE_MAX_TOKENS}
    if cfg.use_completions_api:
        return "/completions", _pin(build_completions_body(params, cfg, model))
    body = _pin(build_chat_body(params, cfg, model))
    if force_reasoning:
        body["structured_outputs"] = {"choice": [FORCED_TEXT]}
    return "/chat/completions", body


def tools_body(cfg: ModelConfig, model: str, tool: Mapping[str, Any]) -> dict[str, Any]:
    """A chat body offering one of the run's tools with ``tool_choice: "auto"`` (what vLLM
    refuses when it runs without a tool-call parser)."""
    params = {"input": TOOLS_PROMPT, "tools": [dict(tool)], "tool_choice": "auto",
              "max_output_tokens": TOOLS_MAX_TOKENS}
    return _pin(build_chat_body(params, cfg, model), TOOLS_MAX_TOKENS)




def row_tokenize_body(cfg: ModelConfig, model: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``/tokenize`` body rendering a dataset row's first prompt exactly as collect would."""
    if cfg.use_completions_api:
        body = build_completions_body(params, cfg, model)
    else:
        body = build_chat_body(params, cfg, model)
    return tokenize_request(body)
