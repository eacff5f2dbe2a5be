"""Checks 5-7, per server: tool calling, reasoning, training-mode token capture (pure).

They read the replies of the probes (``ServerFacts.tools``, ``.basic``, ``.tokenize``) and judge
them against the user's model config; token ids are read with the adapter's own capture code, so
doctor fails exactly where collect would.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from gym_rollouts.adapter.client import is_tool_refusal
from gym_rollouts.adapter.reasoning import CLOSE, OPEN
from gym_rollouts.adapter.reply import REASONING_FIELDS
from gym_rollouts.adapter.tokens import capture_chat_tokens, capture_completion_tokens
from gym_rollouts.config.schema import CollectConfig
from gym_rollouts.doctor.bodies import FORCED_TEXT
from gym_rollouts.doctor.facts import FleetFacts, ServerFacts
from gym_rollouts.doctor.findings import Finding, Status
from gym_rollouts.errors import ProtocolError, ServerStatusError

TOOL_FLAGS = "--enable-auto-tool-choice --tool-call-parser hermes"
_PARSER_NOTE = "(hermes suits Qwen and Llama 3.x; mistral for Mistral models)"


def _no_probe(check: str, facts: ServerFacts) -> Finding:
    return Finding(check, Status.SKIP, "no probe was sent (see base_url / model)", server=facts.configured)


def _message(reply: Any) -> Mapping[str, Any]:
    choices = reply.get("choices") if isinstance(reply, Mapping) else None
    if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
        msg = choices[0].get("message")
        return msg if isinstance(msg, Mapping) else {}
    return {}


def check_tools(cfg: CollectConfig, fleet: FleetFacts, facts: ServerFacts) -> Finding:
    server = facts.configured
    if not fleet.tools:  # config-wide findings carry no server (the report shows them once)
        why = f" ({fleet.tools_error})" if fleet.tools_error else ""
        return Finding("tools", Status.SKIP, f"neither the dataset nor the resource offers tools{why}")
    names = ", ".join(str(t.get("name")) for t in fleet.tools)
    if cfg.model.use_completions_api:
        return Finding("tools", Status.FAIL, "tools are offered but completions mode cannot send them",
                       f"{fleet.tools_source} offers {names}; use_completions_api is true",
                       "use the chat API: model=vllm (or model.use_completions_api=false)")
    probe = facts.tools
    if facts.base_url is None or probe is None:
        return _no_probe("tools", facts)
    sent = f"a tools request offering {fleet.tools[0].get('name')!r} (from {fleet.tools_source}), tool_choice auto"
    if probe.ok:
        calls = _message(probe.body).get("tool_calls") or []
        seen = (f"the model called {calls[0].get('function', {}).get('name')!r}" if calls
                else "the model answered without a tool call this time (fine for a check)")
        return Finding("tools", Status.PASS, "the server accepts tools requests",
                       f"{sent} -> HTTP 200; {seen}", server=server)
    if probe.status is None:
        return Finding("tools", Status.FAIL, "the tools request got no answer", f"{sent}: {probe.message}",
                       "see reachability; then run doctor again", server)
    err = ServerStatusError(probe.status, str(probe.body), server=server, message=probe.message)
    if is_tool_refusal(err):
        return Finding("tools", Status.FAIL, "vLLM runs without a tool-call parser: tools requests are refused",
                       f"{sent} -> HTTP {probe.status}: {probe.message}",
                       f"restart vLLM with {TOOL_FLAGS} {_PARSER_NOTE}", server)
    return Finding("tools", Status.FAIL, f"the server refused the tools request (HTTP {probe.status})",
                   f"{sent} -> HTTP {probe.status}: {probe.message[:400]}",
                   "check the tool definitions (JSON schema) and that the model supports tool calling; "
                   f"vLLM needs {TOOL_FLAGS} {_PARSER_NOTE}", server)


def _reasoning_seen(facts: ServerFacts) -> tuple[str | None, str | None]:
    """(the field the server put reasoning in, or None; the inline text when <think> stayed inline)."""
    body = facts.basic.body if facts.basic else None
    msg = _message(body)
    for name in REASONING_FIELDS:
        if isinstance(msg.get(name), str) and msg[name]:
            return name, None
    text = msg.get("content")
    if text is None and isinstance(body, Mapping):
        choice = (body.get("choices") or [{}])[0]
        text = choice.get("text") if isinstance(choice, Mapping) else None
    if isinstance(text, str) and (OPEN in text or CLOSE in text):
        return None, text
    return None, None


def check_reasoning(cfg: CollectConfig, facts: ServerFacts) -> Finding:
    server, parses = facts.configured, cfg.model.uses_reasoning_parser
    if facts.base_url is None or facts.basic is None:
        return _no_probe("reasoning", facts)
    if not facts.basic.ok:
        return Finding("reasoning", Status.SKIP, "the probe generation failed",
                       f"HTTP {facts.basic.status}: {facts.basic.message[:300]}", server=server)
    field, inline = _reasoning_seen(facts)
    forced = f" (the probe forced {FORCED_TEXT!r} with structured_outputs)" if facts.basic_forced else ""
    if field:
        evidence = (f"the reply carried the think block in message.{field}{forced}: the server was started "
                    f"with --reasoning-parser" + (" (vLLM < 0.16 names the field reasoning_content)"
                                                  if field == "reasoning_content" else ""))
        if parses:
            return Finding("reasoning", Status.WARN, "the server splits reasoning itself (--reasoning-parser)",
                           evidence + ". The pipeline accepts it, but the recommended setup lets the "
                           "pipeline parse <think> (the server's parser can drop or reshape text).",
                           "restart vLLM without --reasoning-parser (keep model.uses_reasoning_parser=true)",
                           server)
        return Finding("reasoning", Status.FAIL,
                       "the server splits reasoning but uses_reasoning_parser is false",
                       evidence + "; with model.uses_reasoning_parser=false the pipeline puts it back into "
                       "the message text, so rollouts have no reasoning items.",
                       "restart vLLM without --reasoning-parser and set model.uses_reasoning_parser=true "
                       "(the default)", server)
    if inline:
        evidence = f"the think block stayed inline in the text{forced}: no --reasoning-parser (good)"
        if parses:
            return Finding("reasoning", Status.PASS, "the pipeline parses <think> itself, as recommended",
                           evidence, server=server)
        return Finding("reasoning", Status.WARN, "reasoning stays inside the message text",
                       evidence + "; with model.uses_reasoning_parser=false no reasoning items are made.",
                       "set model.uses_reasoning_parser=true unless you want the raw text", server)
    return Finding("reasoning", Status.SKIP, "inconclusive: the probe reply held no reasoning",
                   "the server ignored structured_outputs and the model did not think out loud, so whether "
                   "it splits reasoning cannot be told from here", server=server)


def _capture(cfg: CollectConfig, reply: Any) -> tuple[list[int] | None, list[int], list[float]]:
    captured = (capture_completion_tokens(reply) if cfg.model.use_completions_api
                else capture_chat_tokens(reply))
    return captured.prompt_token_ids, captured.generation_token_ids, captured.generation_log_probs


def _consistency(reply: Mapping[str, Any], gen: list[int], logprobs: list[float]) -> str | None:
    usage = reply.get("usage") or {}
    if isinstance(usage.get("completion_tokens"), int) and usage["completion_tokens"] != len(gen):
        return f"usage.completion_tokens={usage['completion_tokens']} but {len(gen)} generation token ids"
    bad = [v for v in logprobs if not math.isfinite(v) or v > 1e-6]
    if bad:
        return f"logprobs must be finite and <= 0, got {bad[:3]}"
    if not gen:
        return "the reply has no generated tokens"
    return None


def check_training(cfg: CollectConfig, facts: ServerFacts) -> Finding:
    server = facts.configured
    if not cfg.model.return_token_id_information:
        return Finding("training", Status.SKIP, "training mode is off (return_token_id_information: false)",
                       "no token ids or logprobs are captured; to capture them for a trainer use "
                       "model=vllm_for_training (or model.return_token_id_information=true)")
    if facts.base_url is None or facts.basic is None:
        return _no_probe("training", facts)
    basic = facts.basic
    if not basic.ok:
        return Finding("training", Status.SKIP, "the probe generation failed",
                       f"HTTP {basic.status}: {basic.message[:300]}", server=server)
    fix = ("use a vLLM that honours logprobs, top_logprobs=0 and return_tokens_as_token_ids on "
           "/v1/chat/completions; do not start it with --max-logprobs 0")
    try:
        prompt_ids, gen, logprobs = _capture(cfg, basic.body)
    except ProtocolError as exc:
        return Finding("training", Status.FAIL, "the reply cannot give token ids and logprobs",
                       f"one call with token capture on: {exc}", fix, server)
    problem = _consistency(basic.body, gen, logprobs)
    if problem:
        return Finding("training", Status.FAIL, "token ids and logprobs disagree", problem, fix, server)
    usage = basic.body.get("usage") or {}
    got = f"{len(gen)} generation ids with {len(logprobs)} logprobs"
    if prompt_ids is not None:
        if isinstance(usage.get("prompt_tokens"), int) and usage["prompt_tokens"] != len(prompt_ids):
            return Finding("training", Status.FAIL, "prompt token ids disagree with usage",
                           f"{len(prompt_ids)} prompt ids but usage.prompt_tokens={usage['prompt_tokens']}",
                           fix, server)
        return Finding("training", Status.PASS, "token ids and logprobs are captured",
                       f"{got}, {len(prompt_ids)} prompt ids (return_token_ids supported)", server=server)
    return _without_return_token_ids(facts, usage, got)


def _without_return_token_ids(facts: ServerFacts, usage: Mapping[str, Any], got: str) -> Finding:
    server, tok = facts.configured, facts.tokenize
    upgrade = ("upgrade vLLM to a version that supports return_token_ids (prompt ids come back in the "
               "reply, no extra /tokenize call per model turn)")
    if tok is None or not tok.ok or not isinstance(tok.body, Mapping) or not isinstance(tok.body.get("tokens"), list):
        why = tok.message[:300] if tok is not None else "not probed"
        return Finding("training", Status.FAIL, "no prompt token ids: return_token_ids is not supported and "
                       "/tokenize failed", f"{got}; the reply had no prompt_token_ids; /tokenize: {why}",
                       upgrade, server)
    n = len(tok.body["tokens"])
    if isinstance(usage.get("prompt_tokens"), int) and usage["prompt_tokens"] != n:
        return Finding("training", Status.FAIL, "/tokenize renders a different prompt than generation",
                       f"/tokenize gave {n} ids but the call used usage.prompt_tokens={usage['prompt_tokens']}",
                       upgrade, server)
    return Finding("training", Status.WARN, "the server ignores return_token_ids: prompt ids come from /tokenize",
                   f"{got}; no prompt_token_ids in the reply; /tokenize gave {n} ids matching "
                   f"usage.prompt_tokens (one extra request per model turn)", upgrade, server)
