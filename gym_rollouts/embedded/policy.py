"""The scripted model: a deterministic, pure function from a conversation to generated text.

- Tools offered and no tool result since the last user message (and tool_choice is not
  "none"): call the best-matching tool with schema-valid arguments built from the user text,
  as a hermes block exactly as the chat template renders it.
- Otherwise answer: the last tool result, else the value of an arithmetic expression in the
  user text, else a short echo.
- With thinking on, the text starts with `<think>{one sentence}</think>\\n\\n`.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from .arith import find_expression, first_number, solve
from .template import THINK_CLOSE, THINK_OPEN, THINK_SEPARATOR, content_text, render_tool_call
from .tokenizer import SPECIAL_TOKENS

_WORD = re.compile(r"[a-z0-9]+")
_CITY_AFTER_IN = re.compile(r"\bin ((?:[A-Z][\w'.-]*)(?: [A-Z][\w'.-]*)*)")
_CAPITALISED = re.compile(r"\b[A-Z][a-zA-Z'-]*")
_SPECIALS = re.compile("|".join(re.escape(s) for s in SPECIAL_TOKENS))
_EXPRESSION_NAMES = frozenset({"expression", "expr", "formula", "equation", "math"})
_LOCATION_NAMES = frozenset({"city", "location", "place", "town"})
_STOP_WORDS = frozenset(
    "the a an of to in on for and or is it what whats how me my you your please can could "
    "would with this that be are do does get".split()
)
_SNIPPET_CHARS = 64


def tool_spec(tool: Any) -> tuple[str, str, dict]:
    """(name, description, parameters) of a chat tool (nested) or a flat Responses tool."""
    if not isinstance(tool, dict):
        return "", "", {}
    fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
    params = fn.get("parameters")
    return (
        str(fn.get("name") or ""),
        str(fn.get("description") or ""),
        params if isinstance(params, dict) else {},
    )


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP_WORDS}


def choose_tool(tools: Sequence[Any], user_text: str) -> int:
    """Index of the tool whose name/description best matches the user text (first on ties).

    Shared words score 2 in the name and 1 in the description; an expression-like parameter
    scores 1 when the text holds arithmetic, a location-like one when it names a place."""
    wanted = _words(user_text)
    has_math = solve(user_text) is not None
    has_place = _CITY_AFTER_IN.search(user_text) is not None
    best, best_score = 0, 0
    for i, tool in enumerate(tools):
        name, desc, params = tool_spec(tool)
        name_words = _words(name.replace("_", " ").replace("-", " "))
        score = 2 * len(wanted & name_words) + len(wanted & _words(desc))
        props = params.get("properties")
        if isinstance(props, dict):
            keys = {str(k).lower() for k in props}
            score += (has_math and bool(keys & _EXPRESSION_NAMES)) + (has_place and bool(keys & _LOCATION_NAMES))
        if score > best_score:
            best, best_score = i, score
    return best


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text[:_SNIPPET_CHARS].rstrip() or "example"


def _location(text: str) -> str | None:
    m = _CITY_AFTER_IN.search(text)
    if m:
        return m.group(1).rstrip(".")
    caps = _CAPITALISED.findall(text)
    return caps[-1] if caps else None


def _schema_type(schema: dict) -> str:
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "string")
    if t is None:
        if "enum" in schema:
            return "enum"
        if "properties" in schema:
            return "object"
        return "string"
    return str(t)


def _value_for(name: str, schema: dict, text: str, required: bool) -> tuple[bool, Any]:
    """(include?, value) for one property; optional ones only when the value is obvious."""
    key = name.lower()
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return required, schema["enum"][0]
    kind = _schema_type(schema)
    if kind == "string":
        if key in _EXPRESSION_NAMES:
            expr = find_expression(text)
            return (True, expr) if expr else (required, _snippet(text))
        if key in _LOCATION_NAMES:
            loc = _location(text)
            return (True, loc) if loc else (required, _snippet(text))
        return required, _snippet(text)
    if kind in ("number", "integer"):
        num = first_number(text)
        if num is None:
            return required, 0
        return required, (int(num) if kind == "integer" else num)
    if kind == "boolean":
        return required, False
    if kind == "array":
        return required, []
    if kind == "object":
        return required, build_arguments(schema, text)
    if kind == "null":
        return required, None
    return required, _snippet(text)


def build_arguments(parameters: dict, text: str) -> dict:
    """Schema-valid arguments for a JSON-schema `parameters` object."""
    props = parameters.get("properties")
    if not isinstance(props, dict):
        return {}
    required = parameters.get("required")
    required = set(required) if isinstance(required, list) else set()
    args: dict[str, Any] = {}
    for name, schema in props.items():
        include, value = _value_for(name, schema if isinstance(schema, dict) else {}, text, name in required)
        if include:
            args[name] = value
    return args


def last_user_index(messages: Sequence[Any]) -> int:
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, dict) and m.get("role") == "user":
            return i
    return -1


def _clean(text: str) -> str:
    return _SPECIALS.sub("", text) if "<" in text else text


def _sentence(text: str) -> str:
    text = text.rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."


class ScriptedModel:
    """Deterministic generation; holds no state, so one instance serves every request."""

    def generate(
        self,
        messages: Sequence[Any],
        tools: Sequence[Any] | None = None,
        tool_choice: Any = "auto",
        think: bool = False,
    ) -> str:
        idx = last_user_index(messages)
        user_text = content_text(messages[idx].get("content")) if idx >= 0 else ""
        tool_results = [
            m for m in messages[idx + 1:] if isinstance(m, dict) and m.get("role") == "tool"
        ]
        call = None
        if tools and tool_choice != "none" and not tool_results:
            call = self._tool_call(tools, tool_choice, user_text)
        if call is not None:
            name, body = call
            thought = f"The user needs {name}, so I will call it."
        else:
            thought, body = self._answer(user_text, tool_results)
        if think:
            return THINK_OPEN + thought + THINK_CLOSE + THINK_SEPARATOR + body
        return body

    def _tool_call(self, tools: Sequence[Any], tool_choice: Any, user_text: str) -> tuple[str, str] | None:
        index = None
        if isinstance(tool_choice, dict):
            wanted = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
            index = next((i for i, t in enumerate(tools) if tool_spec(t)[0] == wanted), None)
        if index is None:
            index = choose_tool(tools, user_text)
        name, _, params = tool_spec(tools[index])
        if not name:
            return None
        return name, render_tool_call(name, build_arguments(params, user_text))

    @staticmethod
    def _answer(user_text: str, tool_results: Sequence[dict]) -> tuple[str, str]:
        if tool_results:
            result = _clean(content_text(tool_results[-1].get("content")).strip())
            return "The tool returned a result, so I can answer.", f"The answer is {result}."
        solved = solve(user_text)
        if solved is not None:
            expression, value = solved
            return f"I will compute {_clean(expression)}.", f"The answer is {value}."
        text = _clean(" ".join(user_text.split()))
        if not text:
            return "I will greet the user.", "Hello! How can I help?"
        return "I will repeat what the user said.", _sentence("You said: " + text[:_SNIPPET_CHARS])
