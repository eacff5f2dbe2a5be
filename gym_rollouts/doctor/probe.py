"""The thin async prober: the only part of ``doctor`` that does I/O.

Per server, in this order and never more: ``GET /health``; ``GET /v1/models`` through
``adapter.startup.check_server`` (which also tries ``<url>/v1`` when the URL lacks it);
``GET /version``; one tiny generation (``max_tokens`` 32; sent again without
``structured_outputs`` only if the server refused that field); one tiny tools request when the
run offers tools; one ``/tokenize`` in training mode when the reply had no prompt ids; and
``GET /metrics`` last (so the prefix-cache counters have seen a request). A server that does not
answer ``/health`` at the transport level is not asked anything else. Then up to
``doctor.sample_rows`` ``/tokenize`` calls on the first usable server to size the dataset's
prompts. Every failure is recorded as data (``Exchange``), never raised.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Mapping

import orjson

from gym_rollouts.adapter.request import tokenize_request
from gym_rollouts.adapter.startup import check_server
from gym_rollouts.agent.loop import request_params
from gym_rollouts.config.schema import CollectConfig
from gym_rollouts.doctor.bodies import basic_body, row_tokenize_body, tools_body
from gym_rollouts.doctor.facts import Exchange, FleetFacts, SampleRow, ServerFacts, probe_model
from gym_rollouts.embedded.server import VERSION_MARKER
from gym_rollouts.errors import GymRolloutsError, ProtocolError, ServerStatusError, StartupError, TransportError
from gym_rollouts.io.source import materialize, read_rows
from gym_rollouts.router.dispatcher import root_url
from gym_rollouts.transport.client import HttpTransport

log = logging.getLogger(__name__)
RawRow = tuple[int, Any, Any]  # (line number, the row or None, the problem or None)


def _decode(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace")


class Prober:
    """Sends the probes of one ``doctor`` run through one ``HttpTransport``."""

    def __init__(self, transport: HttpTransport, cfg: CollectConfig) -> None:
        self._t = transport
        self._cfg = cfg
        self._timeout = cfg.doctor.timeout_s

    # -- single exchanges -----------------------------------------------------------------------
    async def get(self, url: str) -> Exchange:
        started = time.perf_counter()
        try:
            status, raw = await self._t.get(url, timeout_s=self._timeout)
        except TransportError as exc:
            return self._failed(url, exc, started)
        return Exchange(url, status, _decode(raw), elapsed_ms=_ms(started))

    async def post(self, url: str, body: Mapping[str, Any]) -> Exchange:
        started = time.perf_counter()
        try:
            reply = await self._t.post_json(url, body, timeout_s=self._timeout)
        except ServerStatusError as exc:
            return Exchange(url, exc.status, _decode(exc.body.encode()), elapsed_ms=_ms(started))
        except TransportError as exc:
            return self._failed(url, exc, started)
        except ProtocolError as exc:
            return Exchange(url, 200, None, error=str(exc), elapsed_ms=_ms(started))
        return Exchange(url, 200, reply, elapsed_ms=_ms(started))

    @staticmethod
    def _failed(url: str, exc: TransportError, started: float) -> Exchange:
        return Exchange(url, None, None, error=str(exc), kind=exc.kind,
                        reason=getattr(exc, "reason", None), elapsed_ms=_ms(started))

    # -- one server -----------------------------------------------------------------------------
    async def server(self, configured: str, tools: list[dict[str, Any]]) -> ServerFacts:
        facts = ServerFacts(configured=configured)
        root = root_url(configured.rstrip("/"))
        facts.health = await self.get(root + "/health")
        if not facts.reachable:
            return facts
        try:
            facts.base_url, facts.models = await check_server(self._t, configured, self._timeout)
        except StartupError as exc:
            facts.models_error, facts.models_status = str(exc), exc.status
        version = await self.get(root + "/version")
        if version.ok and isinstance(version.body, Mapping):
            facts.version = str(version.body.get("version"))
            if version.body.get(VERSION_MARKER) is not None:  # our embedded demo backend, not vLLM
                facts.embedded_version = str(version.body[VERSION_MARKER])
        facts.probe_model = probe_model(self._cfg.model.model, facts.served_ids)
        if facts.base_url and facts.probe_model:
            await self._generate(facts, root, tools)
        facts.metrics = await self.get(root + "/metrics")
        return facts

    async def _generate(self, facts: ServerFacts, root: str, tools: list[dict[str, Any]]) -> None:
        cfg, model, base = self._cfg.model, facts.probe_model or "", facts.base_url or ""
        try:
            path, body = basic_body(cfg, model, force_reasoning=True)
        except GymRolloutsError as exc:  # the user's model config cannot build a request
            facts.basic = Exchange(base, None, None, error=f"cannot build a request from the config: {exc}")
            return
        facts.basic_forced = "structured_outputs" in body
        facts.basic = await self.post(base + path, body)
        if facts.basic_forced and facts.basic.status == 400:  # a server that rejects the field
            body.pop("structured_outputs")
            facts.basic_forced = False
            facts.basic = await self.post(base + path, body)
        if tools and not cfg.use_completions_api:
            try:
                facts.tools = await self.post(base + "/chat/completions", tools_body(cfg, model, tools[0]))
            except GymRolloutsError as exc:
                facts.tools = Exchange(base, None, None, error=f"cannot build a tools request: {exc}")
        if cfg.return_token_id_information and facts.basic.ok and not _has_prompt_ids(facts.basic.body):
            facts.tokenize = await self.post(root + "/tokenize", tokenize_request(body))

    # -- the dataset ----------------------------------------------------------------------------
    async def rows(self, facts: FleetFacts, rows: list[RawRow], resource: Any) -> None:
        """Sizes the sampled input rows on the first usable server."""
        cfg = self._cfg
        usable = next((s for s in facts.servers if s.base_url and s.probe_model), None)
        for line_no, row, problem in rows:
            if row is None:
                facts.rows.append(SampleRow(line_no, None, None, error=problem))
                continue
            params = request_params(materialize(row, cfg.responses_create_params, "doctor"), resource)
            max_out = params.get("max_output_tokens")
            max_out = max_out if isinstance(max_out, int) else None
            if usable is None:
                facts.rows.append(SampleRow(line_no, None, max_out, error="no usable server to tokenize with"))
                continue
            try:
                body = row_tokenize_body(cfg.model, usable.probe_model or "", params)
            except GymRolloutsError as exc:
                facts.rows.append(SampleRow(line_no, None, max_out, error=f"cannot build the request: {exc}"))
                continue
            answer = await self.post(root_url(usable.base_url or "") + "/tokenize", body)
            facts.rows.append(SampleRow(line_no, _token_count(answer), max_out,
                                        error=None if answer.ok else f"/tokenize: {answer.message}"))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _has_prompt_ids(reply: Any) -> bool:
    if not isinstance(reply, Mapping):
        return False
    if reply.get("prompt_token_ids") is not None:
        return True
    choices = reply.get("choices") or [{}]
    return isinstance(choices[0], Mapping) and choices[0].get("prompt_token_ids") is not None


def _token_count(answer: Exchange) -> int | None:
    if not answer.ok or not isinstance(answer.body, Mapping):
        return None
    if isinstance(answer.body.get("count"), int):
        return answer.body["count"]
    tokens = answer.body.get("tokens")
    return len(tokens) if isinstance(tokens, list) else None


def sample_rows(path: Path, count: int) -> list[RawRow]:
    """The first ``count`` rows of the task JSONL as ``read_rows`` yields them."""
    return list(read_rows(path, count)) if count > 0 else []


async def probe_fleet(transport: HttpTransport, cfg: CollectConfig, urls: tuple[str, ...],
                      facts: FleetFacts, rows: list[RawRow], resource: Any) -> FleetFacts:
    """Fills ``facts.servers`` (all servers at once) and ``facts.rows``."""
    prober = Prober(transport, cfg)
    facts.servers = list(await asyncio.gather(*(prober.server(url, facts.tools) for url in urls)))
    if resource is not None and rows:
        await prober.rows(facts, rows, resource)
    return facts
