"""Sampling fields: the types and ranges vLLM (and the OpenAI API) accept, checked before sending.

A request field with a value vLLM refuses (``"temperature": "hot"``, ``max_output_tokens: -5``)
would fail every attempt of its rollout with an HTTP 400, and vLLM's answer to a negative
``max_tokens`` even reads like a context-length stop. The input scan calls ``sampling_problems``
on each row's ``responses_create_params`` (through ``request.field_problems``), so such a row is
refused with its line number before anything is sent; ``body_sampling_problems`` checks the
chat-body names of the model settings (``model.temperature`` / ``model.top_p`` /
``model.sampling_overrides``) once per run.

Ranges follow vLLM's ``SamplingParams`` and its OpenAI request models: numbers must be JSON
numbers (a quoted ``"0.7"`` is refused), integer fields take integers (a float such as ``64.0``
with no fraction is accepted, as vLLM's validation does), ``null`` means "not set". Fields vLLM
does not define (``model.extra_body``) are not checked: they are sent as given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gym_rollouts.typecheck import is_mapping

INT64 = (-(2 ** 63), 2 ** 63 - 1)
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")


@dataclass(frozen=True)
class Rule:
    """One field's accepted values: a number (``kind="number"``) or integer within bounds
    (``low_open``: the lower bound itself is refused), a boolean, a stop list, or a choice."""

    kind: str  # "number" | "integer" | "boolean" | "stop" | "choice"
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == "boolean":
            return "true or false"
        if self.kind == "stop":
            return "a non-empty string or a list of non-empty strings"
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        what = "a number" if self.kind == "number" else "an integer"
        if self.low is not None and self.high is not None:
            return f"{what} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"{what} {'>' if self.low_open else '>='} {self.low:g}"
        return what

    def accepts(self, value: Any) -> bool:
        if self.kind == "boolean":
            return isinstance(value, bool)
        if self.kind == "stop":
            items = [value] if isinstance(value, str) else value
            return isinstance(items, (list, tuple)) and all(isinstance(s, str) and s for s in items)
        if self.kind == "choice":
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.kind == "integer" and value != int(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high


_PENALTY = Rule("number", -2.0, 2.0)
# chat-body names; the Responses names differ only for max_output_tokens (see RESPONSES_NAMES)
BODY_RULES: dict[str, Rule] = {
    "temperature": Rule("number", 0.0, 2.0),
    "top_p": Rule("number", 0.0, 1.0, low_open=True),
    "max_tokens": Rule("integer", 1),
    "top_k": Rule("integer", -1),  # -1 and 0 disable it
    "min_p": Rule("number", 0.0, 1.0),
    "presence_penalty": _PENALTY,
    "frequency_penalty": _PENALTY,
    "repetition_penalty": Rule("number", 0.0, low_open=True),
    "seed": Rule("integer", *INT64),
    "stop": Rule("stop"),
    "top_logprobs": Rule("integer", -1),  # -1: the whole vocabulary (vLLM)
    "parallel_tool_calls": Rule("boolean"),
}
RESPONSES_NAMES = {"max_output_tokens": "max_tokens"}
RESPONSES_RULES: dict[str, Rule] = {
    **{k: v for k, v in BODY_RULES.items() if k not in RESPONSES_NAMES.values()},
    **{name: BODY_RULES[body] for name, body in RESPONSES_NAMES.items()},
}
EFFORT_RULE = Rule("choice", choices=REASONING_EFFORTS)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problems(fields: Mapping[str, Any], rules: Mapping[str, Rule], where: str) -> list[str]:
    problems = []
    for name, rule in rules.items():
        value = fields.get(name)
        if value is not None and not rule.accepts(value):
            problems.append(f"{where}{name} must be {rule.describe()}, got {_shown(value)}")
    return problems


def sampling_problems(params: Mapping[str, Any], where: str = "responses_create_params.") -> list[str]:
    """Every sampling field of a Responses request (``responses_create_params``) whose value
    vLLM would refuse, worded ``<where><field> must be <rule>, got <value>``."""
    problems = _problems(params, RESPONSES_RULES, where)
    reasoning = params.get("reasoning")
    if is_mapping(reasoning):
        effort = reasoning.get("effort")
        if effort is not None and not EFFORT_RULE.accepts(effort):
            problems.append(f"{where}reasoning.effort must be {EFFORT_RULE.describe()}, got {_shown(effort)}")
    return problems


def body_sampling_problems(fields: Mapping[str, Any], where: str) -> list[str]:
    """The same check for fields under their chat-body names (``model.sampling_overrides``)."""
    return _problems(fields, BODY_RULES, where)
