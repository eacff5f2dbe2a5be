"""What the prober saw, as plain data: the checks are pure functions over these objects.

``Exchange`` is one request's outcome (an HTTP answer, or why there was none); ``ServerFacts``
gathers every exchange with one configured server; ``FleetFacts`` adds what is config- or
dataset-wide (the sampled input rows and their prompt sizes, the tools on offer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import orjson

from gym_rollouts.adapter.startup import choose_model, closest_model, model_entry, model_lengths, served_ids
from gym_rollouts.transport.client import error_message


@dataclass(frozen=True)
class Exchange:
    """One request: ``status`` None means no HTTP answer (see ``kind`` / ``reason``)."""

    url: str
    status: int | None = None
    body: Any = None  # decoded JSON, or the text when the answer was not JSON
    error: str | None = None  # why there was no usable answer (transport error, bad body)
    kind: str | None = None  # TransportError.kind: connect | timeout | disconnected
    reason: str | None = None  # TransportError.reason for connect: refused | dns | None
    elapsed_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and self.error is None

    @property
    def message(self) -> str:
        """The server's error message (vLLM's error body) or the transport error."""
        if self.error:
            return self.error
        if self.body is None:
            return ""
        if isinstance(self.body, str):
            return error_message(self.body)
        return error_message(orjson.dumps(self.body).decode())[:300]


@dataclass
class ServerFacts:
    """Everything learned about one server of ``policy_base_url`` (as the user wrote it)."""

    configured: str
    health: Exchange | None = None
    base_url: str | None = None  # the usable base URL (``/v1`` added when it was missing)
    models: Mapping[str, Any] | None = None  # the /models answer
    models_error: str | None = None  # why /models could not be used
    models_status: int | None = None  # the HTTP status /models answered when it was not usable
    version: str | None = None
    embedded_version: str | None = None  # set when /version carries our embedded backend's marker
    metrics: Exchange | None = None
    probe_model: str | None = None  # the id the generation probes used
    basic: Exchange | None = None  # one tiny generation (reasoning + token capture)
    basic_forced: bool = False  # the basic probe forced a <think> block with structured_outputs
    tools: Exchange | None = None  # one tiny request offering a tool with tool_choice "auto"
    tokenize: Exchange | None = None  # /tokenize of the basic probe's prompt (training mode)

    @property
    def reachable(self) -> bool:
        return self.health is not None and self.health.status is not None

    @property
    def served_ids(self) -> list[str]:
        return served_ids(self.models)

    def max_model_len(self, model: str | None) -> int | None:
        return model_lengths(self.models).get(model) if model is not None else None

    def model_entry(self, model: str | None) -> Mapping[str, Any]:
        return model_entry(self.models, model)


@dataclass(frozen=True)
class SampleRow:
    """One of the dataset's first rows, measured in prompt tokens with ``/tokenize``."""

    line_no: int
    prompt_tokens: int | None
    max_output_tokens: int | None
    error: str | None = None


@dataclass
class FleetFacts:
    servers: list[ServerFacts]
    embedded: bool = False
    input_path: str | None = None
    input_error: str | None = None
    rows: list[SampleRow] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)  # Responses tools on offer
    tools_source: str | None = None
    tools_error: str | None = None  # e.g. the resource could not be loaded

    def model(self, wanted: str | None) -> str | None:
        """The model the run would use: the configured one, else the single one served."""
        return choose_model(wanted, (i for s in self.servers for i in s.served_ids))


def probe_model(wanted: str | None, served_ids: list[str]) -> str | None:
    """The id to send generation probes with: the configured one when served, else the only
    (or the closest) served id, so the other checks still run while ``model`` FAILs."""
    if not served_ids:
        return None
    if wanted in served_ids:
        return wanted
    if wanted:
        return closest_model(wanted, served_ids) or served_ids[0]
    return served_ids[0]
