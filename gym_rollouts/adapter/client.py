"""``VLLMPolicy``: one model call of one rollout, end to end through the router.

Per rollout a ``PolicySession`` remembers the server affinity key, the prompt length known from
the previous call (to clamp ``max_tokens`` under ``max_model_len``) and the token continuity
tracker. Pure conversions live in messages/request/reply/completions/tokens/context; this module
only sequences them around the dispatcher:

build body -> clamp max_tokens -> POST, the answer read inside the attempt (answer.py: an
unusable 200 is retried elsewhere like a 5xx) -> (context-length 400 -> empty turn
``context_length``; tool-parser refusal -> ``ToolSupportError`` naming the vLLM flags) -> token
capture (prompt ids from ``/tokenize`` only for servers without ``return_token_ids``) -> usage
(a reply without one: filled from the ids when captured, else counted unknown and the rollout's
``response.usage`` is null) -> continuity.

Provenance: each answered model call appends its server to ``servers`` and, in the same place of
``weight_versions``, the weight version it was sent under (router/pause.py ``version_for``, read
in the attempt that answered, after the pause gate; None without a ``PauseControl``). A reply
with ``finish_reason: "abort"`` (vLLM paused with ``/pause?mode=abort`` by someone else, or the
request aborted there) is not a turn: the attempt fails retryably (kind ``stalled``).
"""

from __future__ import annotations

import functools
import itertools
import logging
from typing import Any, Awaitable, Callable, Mapping, TypeVar

import orjson

from gym_rollouts.adapter.answer import read_generation, read_tokenize
from gym_rollouts.adapter.completions import build_completions_body
from gym_rollouts.adapter.context import clamp_max_tokens, is_context_length_error, ran_out_of_context
from gym_rollouts.adapter.reply import ModelTurn, counted_usage
from gym_rollouts.adapter.request import build_chat_body, tokenize_request
from gym_rollouts.adapter.tokens import CapturedTokens, ContinuityTracker
from gym_rollouts.config.schema import ModelConfig
from gym_rollouts.errors import ProtocolError, ServerStatusError, ToolSupportError, TransportError
from gym_rollouts.router.dispatcher import Dispatcher
from gym_rollouts.transport.client import Answer

log = logging.getLogger(__name__)
Read = TypeVar("Read")

CONTEXT_LENGTH = "context_length"
ABORTED = "abort"  # vLLM's finish_reason for a generation aborted server-side (e.g. /pause?mode=abort)
TOOL_PARSER_HINT = ("the vLLM server refused a request with tools because it runs without a tool-call "
                    "parser: restart it with --enable-auto-tool-choice --tool-call-parser <name> "
                    "(e.g. hermes for Qwen/Hermes-style models)")


def is_tool_refusal(err: ServerStatusError) -> bool:
    message = err.server_message
    return err.status == 400 and ("enable-auto-tool-choice" in message or "tool-call-parser" in message)


class VLLMPolicy:
    """Shared by all workers: config + model name + context size + the dispatcher."""

    def __init__(self, cfg: ModelConfig, dispatcher: Dispatcher, *, model_name: str,
                 max_model_len: int | None) -> None:
        self.cfg = cfg
        self.dispatcher = dispatcher
        self.model_name = model_name
        self.max_model_len = max_model_len
        self._keys = itertools.count()
        self.context_length_stops = 0
        self.clamped_calls = 0
        self.tokenize_fallbacks = 0
        self.usage_filled_from_ids = 0  # replies without usage, counted from their token ids
        self.usage_unknown_calls = 0  # replies without usage and without ids to count
        self._warned_no_usage: set[str] = set()
        self.read_generation = functools.partial(read_generation, cfg=cfg)  # the send= hooks' reader

    def session(self, group: str | None = None) -> "PolicySession":
        """A new rollout's model side; ``group`` (its task) lets the router keep a group on one server."""
        return PolicySession(self, f"r{next(self._keys)}", group)

    def stats(self) -> dict[str, int]:
        return {"context_length_stops": self.context_length_stops, "clamped_calls": self.clamped_calls,
                "tokenize_fallbacks": self.tokenize_fallbacks, "usage_filled_from_ids": self.usage_filled_from_ids,
                "usage_unknown_calls": self.usage_unknown_calls}

    def usage_unknown(self, server: str) -> None:
        """A reply of ``server`` had no usage and there were no ids to count: say so once per server."""
        self.usage_unknown_calls += 1
        if server not in self._warned_no_usage:
            self._warned_no_usage.add(server)
            log.warning("%s answers without usage: the token counts of its calls are unknown (response.usage "
                        "is null in their rollouts); token capture (model=vllm_for_training) counts them "
                        "from the ids", server)


class PolicySession:
    """The model side of one rollout."""

    def __init__(self, policy: VLLMPolicy, key: str, group: str | None = None) -> None:
        self._p = policy
        self.key = key
        self.group = group  # the router's group key (router/policy.py group affinity)
        self.known_prompt_len: int | None = None
        self.continuity = ContinuityTracker()
        self.servers: list[str] = []
        self.weight_versions: list[str | None] = []  # one per entry of ``servers`` (module doc)
        self._sent_version: str | None = None  # the version of the latest attempt sent
        self.sampling: dict[str, Any] = {}  # temperature / top_p actually sent (config overrides included)

    def close(self) -> None:
        self._p.dispatcher.forget(self.key)

    def _body(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        p, cfg = self._p, self._p.cfg
        if cfg.use_completions_api:
            return build_completions_body(params, cfg, p.model_name), "/completions"
        return build_chat_body(params, cfg, p.model_name), "/chat/completions"

    async def respond(self, params: Mapping[str, Any]) -> ModelTurn:
        """One model call; context exhaustion yields a turn marked ``context_length``."""
        p, cfg = self._p, self._p.cfg
        body, path = self._body(params)
        self.sampling = {k: body[k] for k in ("temperature", "top_p") if k in body}
        wanted = body.get("max_tokens")
        if cfg.clamp_max_tokens_to_context and p.max_model_len:
            clamped = clamp_max_tokens(wanted, self.known_prompt_len, p.max_model_len)
            if clamped == 0:
                return self._context_stop()
            if clamped is not None and clamped != wanted:
                body["max_tokens"] = clamped
                p.clamped_calls += 1
        try:
            server, reply = await p.dispatcher.post(path, body, self.key, send=self._sender(body, p.read_generation),
                                                    group=self.group)
        except ServerStatusError as err:
            if is_context_length_error(err.status, err.server_message):
                return self._context_stop()
            if is_tool_refusal(err):
                raise ToolSupportError(err.status, err.body, server=err.server,
                                       message=f"{TOOL_PARSER_HINT} (server said: {err.server_message})") from None
            raise
        self.servers.append(server)
        self.weight_versions.append(self._sent_version)
        turn = reply.turn
        if reply.captured is not None:
            await self._attach_tokens(turn, reply.captured, body)
        usage = turn.usage
        if usage is None:
            p.usage_unknown(server)
            self.known_prompt_len = None
            return turn
        self.known_prompt_len = usage["input_tokens"] + usage["output_tokens"] or None
        if ran_out_of_context(turn.finish_reason, usage["input_tokens"], usage["output_tokens"], wanted,
                              p.max_model_len):
            turn.incomplete_reason = CONTEXT_LENGTH
            p.context_length_stops += 1
        return turn

    def _sender(self, body: Mapping[str, Any], read: Callable[[Answer, str, str], Read]
                ) -> Callable[[str, str], Awaitable[Read]]:
        """The dispatcher's ``send=`` hook: post ``body`` (serialised once for all attempts) and
        ``read`` the answer inside the attempt, so an unusable 200 counts against the server."""
        dispatcher = self._p.dispatcher
        transport, data, pause = dispatcher.transport, orjson.dumps(body), getattr(dispatcher, "pause", None)

        async def send(url: str, server: str) -> Read:
            if pause is not None:  # the attempt passed the pause gate: it runs under this version
                self._sent_version = pause.version_for(server)
            result = read(await transport.post(url, data, server=server), url, server)
            turn = getattr(result, "turn", None)
            if turn is not None and turn.finish_reason == ABORTED:
                raise TransportError(f"{server} aborted the generation (finish_reason=abort: the server was paused "
                                     f"with /pause?mode=abort, or the request aborted there); sent again",
                                     server=server, kind="stalled")
            return result

        return send

    def _context_stop(self) -> ModelTurn:
        self._p.context_length_stops += 1
        return ModelTurn(output=[], usage=counted_usage(0, 0), finish_reason=None, incomplete_reason=CONTEXT_LENGTH)

    async def _attach_tokens(self, turn: ModelTurn, captured: CapturedTokens, body: Mapping[str, Any]) -> None:
        """Ids onto the last output item (the reply's ids already agree with its usage: answer.py);
        prompt ids from /tokenize are checked here; a reply without usage is counted from the ids."""
        cfg = self._p.cfg
        prompt_ids = captured.prompt_token_ids
        if prompt_ids is None:
            prompt_ids = await self._tokenize(body)
            if turn.usage is not None and turn.usage["input_tokens"] != len(prompt_ids):
                raise ProtocolError(f"the server reported {turn.usage['input_tokens']} prompt tokens but /tokenize "
                                    f"gives the prompt {len(prompt_ids)} ids")
        if turn.usage is None:
            turn.usage = counted_usage(len(prompt_ids), len(captured.generation_token_ids))
            self._p.usage_filled_from_ids += 1
        if not turn.output:
            raise ProtocolError("a model call with token capture produced no output item to attach ids to")
        last = turn.output[-1]
        last["prompt_token_ids"] = prompt_ids
        last["generation_token_ids"] = captured.generation_token_ids
        last["generation_log_probs"] = captured.generation_log_probs
        if cfg.check_token_continuity:
            self.continuity.observe(prompt_ids, captured.generation_token_ids)

    async def _tokenize(self, body: Mapping[str, Any]) -> list[int]:
        """Prompt ids from ``/tokenize`` (same messages, tools and template kwargs as the call)
        for servers without ``return_token_ids``."""
        self._p.tokenize_fallbacks += 1
        request = tokenize_request(body)
        _, tokens = await self._p.dispatcher.post("/tokenize", request, self.key, at_root=True,
                                                  send=self._sender(request, read_tokenize))
        return tokens


__all__ = ["VLLMPolicy", "PolicySession", "CapturedTokens", "CONTEXT_LENGTH", "TOOL_PARSER_HINT"]
