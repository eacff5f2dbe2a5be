"""The environment the embedded resources server serves: its tools, verifier and metrics.

A blend of NeMo Gym's `example_single_tool_call` (get_weather) and `example_session_state_mgmt`
(a counter per session), as pure functions of (parsed body, session id, `SessionStore`) that
return the JSON answer or raise `ValidationFailed` (422):

  /seed_session       the task row; `initial_count` (int, default 0) seeds the counter -> {}
  /get_weather        {"city": str} -> {"city", "weather_description": "The weather in C is cold."}
  /increment_counter  {"count": int} -> {"success": true}
  /get_counter_value  body ignored -> {"count": n}
  /verify             row + "response" -> the request echoed + "reward" + "num_tool_calls" (+
                      "extracted_answer"): with `expected_count`, 1.0 iff the session's counter
                      equals it (0.0 for a session with no state); else with `expected_answer`,
                      1.0 iff the last assistant message's text contains it (`extracted_answer`:
                      that text, null without an assistant message); else 1.0.
  /aggregate_metrics  {"verify_responses": [...]} -> mean reward overall and per task (minimal).

The /verify echo is the request as sent; NeMo Gym's re-serializes it through its models (defaults
filled in, row fields its model does not declare dropped): a client must not depend on its form.
Tools refuse unknown arguments (stricter than NeMo Gym, whose models ignore them; the tool schemas
say additionalProperties: false, so a client must cope with such a 422); /verify checks
what NeMo Gym's pydantic models require: `responses_create_params` (an object with `input` and no
keys outside NeMo Gym 0.4.0's list) and a `response` with the Responses object's required fields.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

from .sessions import SessionStore
from .validation import ValidationFailed, check_fields, error, require_object, validate

SEED, VERIFY, AGGREGATE = "/seed_session", "/verify", "/aggregate_metrics"
WEATHER, INCREMENT, GET_COUNTER = "/get_weather", "/increment_counter", "/get_counter_value"

TOOL_SCHEMAS: dict[str, dict[str, Any] | None] = {
    WEATHER: {"type": "object", "properties": {"city": {"type": "string"}},
              "required": ["city"], "additionalProperties": False},
    INCREMENT: {"type": "object", "properties": {"count": {"type": "integer"}},
                "required": ["count"], "additionalProperties": False},
    GET_COUNTER: None,  # takes no body
}
_CREATE_PARAMS_KEYS = frozenset({
    "background", "include", "input", "instructions", "max_output_tokens", "max_tool_calls",
    "metadata", "model", "parallel_tool_calls", "previous_response_id", "prompt", "reasoning",
    "service_tier", "store", "temperature", "text", "tool_choice", "tools", "top_logprobs", "top_p",
    "truncation", "user", "stream",
})
_RESPONSE_SPEC = {name: ("any", True) for name in (
    "id", "created_at", "model", "object", "parallel_tool_calls", "tool_choice", "tools")}
_RESPONSE_SPEC["output"] = ("list", True)

Handler = Callable[[Any, str, SessionStore], Any]


def seed_session(body: Any, session_id: str, store: SessionStore) -> dict:
    fields = validate(body, {"initial_count": ("int", False)})
    store.seed(session_id, fields.get("initial_count", 0))
    return {}


def get_weather(body: Any, session_id: str, store: SessionStore) -> dict:
    city = validate(body, {"city": ("str", True)}, forbid_extra=True)["city"]
    return {"city": city, "weather_description": f"The weather in {city} is cold."}


def increment_counter(body: Any, session_id: str, store: SessionStore) -> dict:
    store.add(session_id, validate(body, {"count": ("int", True)}, forbid_extra=True)["count"])
    return {"success": True}


def get_counter_value(body: Any, session_id: str, store: SessionStore) -> dict:
    return {"count": store.value(session_id)}


def _verify_errors(row: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    fields, errors = check_fields(row, {"responses_create_params": ("dict", True), "response": ("dict", True),
                                        "expected_count": ("int", False)})
    params = fields.get("responses_create_params")
    if params is not None:
        where = ("body", "responses_create_params")
        if "input" not in params:
            errors.append(error("missing", (*where, "input"), params))
        elif not isinstance(params["input"], (str, list)):
            errors.append(error("list_type", (*where, "input"), params["input"]))
        errors.extend(error("extra_forbidden", (*where, k), v) for k, v in params.items()
                      if k not in _CREATE_PARAMS_KEYS)
    if "response" in fields:
        errors.extend(check_fields(fields["response"], _RESPONSE_SPEC, loc=("body", "response"))[1])
    return fields, errors


def last_assistant_text(output: list[Any]) -> str | None:
    """The text of the last assistant message in a Responses `output` (None: no such message)."""
    for item in reversed(output):
        if not isinstance(item, dict) or item.get("type") != "message" or item.get("role", "assistant") != "assistant":
            continue
        content = item.get("content")
        if isinstance(content, str):
            return content
        parts = content if isinstance(content, list) else []
        return "".join(p["text"] for p in parts
                       if isinstance(p, dict) and p.get("type") == "output_text" and isinstance(p.get("text"), str))
    return None


def verify(body: Any, session_id: str, store: SessionStore) -> dict:
    row = require_object(body)
    fields, errors = _verify_errors(row)
    if errors:
        raise ValidationFailed(errors)
    output = fields["response"]["output"]
    extra: dict[str, Any] = {
        "num_tool_calls": sum(1 for i in output if isinstance(i, dict) and i.get("type") == "function_call")}
    if "expected_count" in fields:
        counter = store.known(session_id)
        reward = 0.0 if counter is None else float(counter == fields["expected_count"])
    elif "expected_answer" in row:
        text = last_assistant_text(output)
        reward = float(text is not None and str(row["expected_answer"]) in text)
        extra["extracted_answer"] = text
    else:
        reward = 1.0
    return {**row, "reward": reward, **extra}


def aggregate_metrics(body: Any, session_id: str, store: SessionStore) -> dict:
    rows = validate(body, {"verify_responses": ("list", True)})["verify_responses"]
    errors, by_task = [], defaultdict(list)
    for i, item in enumerate(rows):
        where = ("body", "verify_responses", i)
        if not isinstance(item, dict):
            errors.append(error("model_attributes_type", where, item))
        elif not isinstance(item.get("reward"), (int, float)) or isinstance(item.get("reward"), bool):
            errors.append(error("missing", (*where, "reward"), item) if "reward" not in item
                          else error("float_type", (*where, "reward"), item["reward"]))
        else:
            by_task[item.get("_ng_task_index")].append(float(item["reward"]))
    if errors:
        raise ValidationFailed(errors)
    rewards = [r for task in by_task.values() for r in task]
    overall = {"mean/reward": sum(rewards) / len(rewards) if rewards else 0.0, "num_rollouts": len(rewards)}
    groups = [{"_ng_task_index": t, "mean/reward": sum(v) / len(v), "num_rollouts": len(v)}
              for t, v in by_task.items()]
    return {"group_level_metrics": groups, "agent_metrics": overall, "key_metrics": {"mean/reward": overall["mean/reward"]}}


HANDLERS: dict[str, Handler] = {
    SEED: seed_session, VERIFY: verify, AGGREGATE: aggregate_metrics,
    WEATHER: get_weather, INCREMENT: increment_counter, GET_COUNTER: get_counter_value,
}
BODYLESS = frozenset({GET_COUNTER})  # the body is never read (like a FastAPI handler without one)


def openapi_document(title: str) -> dict[str, Any]:
    """A minimal OpenAPI 3 document: one `post` per route (how a client learns the tools)."""
    paths: dict[str, Any] = {}
    for route in HANDLERS:
        op: dict[str, Any] = {"operationId": route.strip("/"), "responses": {
            "200": {"description": "Successful Response", "content": {"application/json": {"schema": {}}}},
            "422": {"description": "Validation Error"}}}
        schema = TOOL_SCHEMAS.get(route, {"type": "object"})
        if schema is not None:
            op["requestBody"] = {"content": {"application/json": {"schema": schema}}, "required": True}
        paths[route] = {"post": op}
    return {"openapi": "3.1.0", "info": {"title": title, "version": "0.1.0"}, "paths": paths}
