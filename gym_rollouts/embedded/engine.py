"""The fake engine: request bodies in, vLLM-shaped response bodies out (no I/O, no aiohttp).

Owns request validation (with vLLM's exact error texts), the context-length budget, running
the scripted model, stop/length handling, output parsing (reasoning + tool calls), logprobs,
token ids and usage, for /v1/chat/completions, /v1/completions, /tokenize and /detokenize.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import vllm_errors as E
from .config import EmbeddedConfig
from .logprobs import LogprobBuilder
from .parsers import parse_tool_calls, split_reasoning
from .policy import ScriptedModel
from .template import ChatTemplate, TemplateError, parse_chatml
from .tokenizer import EOS_ID, ByteTokenizer

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # vLLM's CompletionRequest default


@dataclass
class Outcome:
    """A successful reply plus what the server's metrics need to know about it."""

    body: bytes
    prompt_ids: list[int] = field(default_factory=list)
    completion_tokens: int = 0
    sequences: int = 1  # the request's n (the simulated GPU decodes them in parallel)


@dataclass
class _Gen:
    ids: list[int]
    text: str
    finish: str
    stop_reason: str | None


def _load(raw: bytes) -> dict:
    try:
        req = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise E.invalid_json(str(exc).split(":", 1)[0]) from None
    if not isinstance(req, dict):
        raise E.wrong_type("", "object", None)
    return req


def _int_or_none(req: dict, name: str, default: int | None = None) -> int | None:
    value = req.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise E.wrong_type(name, "integer", value)
    return value


class FakeEngine:
    """One per server; stateless apart from id counters and caches."""

    def __init__(self, cfg: EmbeddedConfig) -> None:
        self.cfg = cfg
        self.tok = ByteTokenizer()
        self.template = ChatTemplate()
        self.model = ScriptedModel()
        self.lp = LogprobBuilder(self.tok)
        self._prefix = os.urandom(4).hex()
        self._counter = itertools.count(1)
        self._models_body = orjson.dumps(
            {
                "object": "list",
                "data": [
                    {
                        "id": cfg.model_name,
                        "object": "model",
                        "created": int(time.time()),
                        "owned_by": "vllm",
                        "root": cfg.model_name,
                        "parent": None,
                        "max_model_len": cfg.max_model_len,
                        "prefix_caching": cfg.prefix_caching,
                        "permission": [],
                    }
                ],
            }
        )

    # -- shared helpers -----------------------------------------------------------------------
    def _new_id(self) -> str:
        return f"{self._prefix}{next(self._counter):024x}"

    def _tool_call_id(self) -> str:
        return f"chatcmpl-tool-{self._new_id()}"

    def models_body(self) -> bytes:
        return self._models_body

    def _check_model(self, req: dict) -> None:
        model = req.get("model")
        if model and model != self.cfg.model_name:
            raise E.model_not_found(str(model), self.cfg.model_name)

    def _budget(self, req: dict, prompt_len: int, default: int | None) -> int:
        mml = self.cfg.max_model_len
        requested = _int_or_none(req, "max_completion_tokens")
        if requested is None:
            requested = _int_or_none(req, "max_tokens", default)
        if requested is not None:
            if requested > mml:
                raise E.max_tokens_too_large(requested, mml)
            if requested < 1:
                raise E.max_tokens_too_small(requested)
        if prompt_len > mml:
            raise E.prompt_too_long(mml)
        room = mml - prompt_len
        if room == 0:
            raise E.max_tokens_too_small(0)
        return room if requested is None else min(requested, room)

    def _generate(self, text: str, budget: int, stop: Any) -> _Gen:
        tok = self.tok
        stop_reason = None
        if stop:
            stops = [stop] if isinstance(stop, str) else [s for s in stop if isinstance(s, str) and s]
            hits = [(text.find(s), s) for s in stops if s in text]
            if hits:
                idx, stop_reason = min(hits)
                ids = tok.encode(text[: idx + len(stop_reason)])
                text = text[:idx]
        if stop_reason is None:
            ids = tok.encode(text)
            ids.append(EOS_ID)
        if len(ids) > budget:
            ids = ids[:budget]
            return _Gen(ids, tok.decode(ids), "length", None)
        return _Gen(ids, text, "stop", stop_reason)

    def _wants_token_ids(self, req: dict) -> bool:
        return bool(req.get("return_token_ids")) and self.cfg.return_token_ids_supported

    def _envelope(self, kind: str, choices: list[dict], prompt_len: int, completion_tokens: int) -> dict:
        return {
            "id": ("chatcmpl-" if kind == "chat.completion" else "cmpl-") + self._new_id(),
            "object": kind,
            "created": int(time.time()),
            "model": self.cfg.model_name,
            "choices": choices,
            "service_tier": None,
            "system_fingerprint": None,
            "usage": {
                "prompt_tokens": prompt_len,
                "total_tokens": prompt_len + completion_tokens,
                "completion_tokens": completion_tokens,
                "prompt_tokens_details": None,
            },
        }

    # -- chat -----------------------------------------------------------------------------------
    def _chat_request(self, req: dict) -> tuple[list, list | None, Any]:
        """Validated (messages, tools, tool_choice)."""
        self._check_model(req)
        if req.get("stream"):
            raise E.stream_unsupported()
        messages = req.get("messages")
        if messages is None:
            raise E.missing_field("messages")
        if not isinstance(messages, list):
            raise E.wrong_type("messages", "list", messages)
        tools = req.get("tools") or None
        if tools is not None and not isinstance(tools, list):
            raise E.wrong_type("tools", "list", tools)
        tool_choice = req.get("tool_choice")
        if tool_choice is None:
            tool_choice = "auto" if tools else "none"
        if tools and tool_choice == "auto" and not self.cfg.tool_parser:
            raise E.auto_tool_choice_disabled()
        return messages, tools, tool_choice

    def _thinks(self, req: dict) -> bool:
        kwargs = req.get("chat_template_kwargs") or {}
        return (self.cfg.reasoning and kwargs.get("enable_thinking", True) is not False
                and kwargs.get("thinking", True) is not False)

    def chat(self, raw: bytes) -> Outcome:
        cfg = self.cfg
        req = _load(raw)
        messages, tools, tool_choice = self._chat_request(req)
        n = _int_or_none(req, "n", 1) or 1
        try:
            prompt_text = self.template.render(messages, tools, req.get("add_generation_prompt", True) is not False)
        except TemplateError as exc:
            raise E.bad_request(str(exc), "messages") from None
        prompt_ids = self.tok.encode(prompt_text)
        budget = self._budget(req, len(prompt_ids), None)
        generated = self.model.generate(messages, tools, tool_choice, self._thinks(req))
        gen = self._generate(generated, budget, req.get("stop"))

        want_ids = self._wants_token_ids(req)
        logprobs = None
        top = req.get("top_logprobs", 0)
        if req.get("logprobs") and top is not None:
            top = top if isinstance(top, int) and top > 0 else 0
            logprobs = self.lp.chat(gen.ids, top, bool(req.get("return_tokens_as_token_ids")))
        parse_tools = bool(tools) and tool_choice != "none" and gen.finish != "length" \
            and (cfg.tool_parser or tool_choice != "auto")
        choices = []
        for i in range(n):
            message, finish = self._message(gen, parse_tools)
            choice = {"index": i, "message": message, "logprobs": logprobs,
                      "finish_reason": finish, "stop_reason": gen.stop_reason}
            if cfg.return_token_ids_supported:
                choice["token_ids"] = gen.ids if want_ids else None
            choices.append(choice)
        completion_tokens = n * len(gen.ids)
        resp = self._envelope("chat.completion", choices, len(prompt_ids), completion_tokens)
        resp["prompt_logprobs"] = None
        resp["kv_transfer_params"] = None
        if cfg.return_token_ids_supported:
            resp["prompt_token_ids"] = prompt_ids if want_ids else None
        return Outcome(orjson.dumps(resp), prompt_ids, completion_tokens, n)

    def _message(self, gen: _Gen, parse_tools: bool) -> tuple[dict, str]:
        cfg = self.cfg
        reasoning, content = None, (gen.text or None)
        if cfg.reasoning_parser:
            reasoning, content = split_reasoning(gen.text)
        calls: list[dict] = []
        if parse_tools and content:
            content, calls = parse_tool_calls(content, self._tool_call_id)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": content,
            "refusal": None,
            "annotations": None,
            "audio": None,
            "function_call": None,
        }
        if calls:
            message["tool_calls"] = calls
        message[cfg.reasoning_field] = reasoning
        return message, ("tool_calls" if calls else gen.finish)

    # -- completions ------------------------------------------------------------------------------
    def _prompt(self, req: dict) -> tuple[str, list[int]]:
        prompt = req.get("prompt")
        if prompt is None:
            raise E.missing_field("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]
        if isinstance(prompt, str):
            return prompt, self.tok.encode(prompt)
        if isinstance(prompt, list) and prompt and all(type(t) is int for t in prompt):
            bad = next((t for t in prompt if not self.tok.is_valid_id(t)), None)
            if bad is not None:
                raise E.bad_request(f"Token id {bad} is out of vocabulary", "prompt")
            return self.tok.decode(prompt), list(prompt)
        raise E.bad_request(
            "prompt must be a string, a list of token ids, or a one-element list of either "
            "(batched prompts are not supported by the embedded server)", "prompt")

    def completion(self, raw: bytes) -> Outcome:
        cfg = self.cfg
        req = _load(raw)
        self._check_model(req)
        if req.get("stream"):
            raise E.stream_unsupported()
        text, prompt_ids = self._prompt(req)
        n = _int_or_none(req, "n", 1) or 1
        budget = self._budget(req, len(prompt_ids), COMPLETIONS_DEFAULT_MAX_TOKENS)
        messages, tools = parse_chatml(text)
        generated = self.model.generate(messages, tools or None, "auto", cfg.reasoning)
        gen = self._generate(generated, budget, req.get("stop"))
        want_ids = self._wants_token_ids(req)
        top = _int_or_none(req, "logprobs")
        logprobs = None
        if top is not None:
            logprobs = self.lp.completion(gen.ids, top, bool(req.get("return_tokens_as_token_ids")))
        choices = []
        for i in range(n):
            choice = {"index": i, "text": gen.text, "logprobs": logprobs,
                      "finish_reason": gen.finish, "stop_reason": gen.stop_reason,
                      "prompt_logprobs": None}
            if cfg.return_token_ids_supported:
                choice["prompt_token_ids"] = prompt_ids if want_ids else None
                choice["token_ids"] = gen.ids if want_ids else None
            choices.append(choice)
        completion_tokens = n * len(gen.ids)
        resp = self._envelope("text_completion", choices, len(prompt_ids), completion_tokens)
        resp["kv_transfer_params"] = None
        return Outcome(orjson.dumps(resp), prompt_ids, completion_tokens, n)

    # -- tokenize / detokenize --------------------------------------------------------------------
    def tokenize(self, raw: bytes) -> bytes:
        req = _load(raw)
        self._check_model(req)
        if "messages" in req:
            messages = req.get("messages")
            if not isinstance(messages, list):
                raise E.wrong_type("messages", "list", messages)
            try:
                text = self.template.render(
                    messages, req.get("tools") or None, req.get("add_generation_prompt", True) is not False
                )
            except TemplateError as exc:
                raise E.bad_request(str(exc), "messages") from None
        elif isinstance(req.get("prompt"), str):
            text = req["prompt"]
        elif "prompt" in req:
            raise E.wrong_type("prompt", "string", req.get("prompt"))
        else:
            raise E.missing_field("prompt")
        ids = self.tok.encode(text)
        strs = self.tok.token_strs(ids) if req.get("return_token_strs") else None
        return orjson.dumps(
            {"count": len(ids), "max_model_len": self.cfg.max_model_len, "tokens": ids, "token_strs": strs}
        )

    def detokenize(self, raw: bytes) -> bytes:
        req = _load(raw)
        self._check_model(req)
        ids = req.get("tokens")
        if ids is None:
            raise E.missing_field("tokens")
        if not isinstance(ids, list) or not all(self.tok.is_valid_id(t) for t in ids):
            raise E.wrong_type("tokens", "list", None)
        return orjson.dumps({"prompt": self.tok.decode(ids)})
