"""vLLM's error replies: the body shape and the exact message texts the embedded server uses.

Body: `{"error": {"message", "type", "param", "code"}}` (vLLM >= 0.10; `code` is the HTTP
status). Texts follow /work/shared/vllm_wire.md (observed on vLLM 0.32); validation failures
(malformed JSON, a missing field) use pydantic's error-list wording as vLLM's FastAPI handler
does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class ErrorReply(Exception):
    """An error the server answers with: HTTP status + vLLM error body."""

    status: int
    message: str
    type: str = "BadRequestError"
    param: str | None = None

    def body(self) -> bytes:
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.status}}
        )


def bad_request(message: str, param: str | None = None) -> ErrorReply:
    return ErrorReply(400, message, "BadRequestError", param)


def model_not_found(requested: str, served: str) -> ErrorReply:
    return ErrorReply(
        404, f"The model `{requested}` does not exist. Valid aliases: {served}.", "NotFoundError", "model"
    )


def prompt_too_long(max_model_len: int) -> ErrorReply:
    # vLLM tokenizes with truncation at max_model_len + 1, hence "at least".
    n = max_model_len + 1
    return bad_request(
        f"This model's maximum context length is {max_model_len} tokens. However, your prompt "
        f"contains at least {n} input tokens, which exceeds this limit even without any output "
        f"tokens. Please reduce the length of the input prompt. (parameter=input_tokens, value={n})",
        "input_tokens",
    )


def max_tokens_too_small(value: int) -> ErrorReply:
    return bad_request(
        f"max_tokens must be at least 1, got {value}. (parameter=max_tokens, value={value})",
        "max_tokens",
    )


def max_tokens_too_large(value: int, max_model_len: int) -> ErrorReply:
    return bad_request(
        f"max_tokens={value} cannot be greater than max_model_len={max_model_len}. "
        f"Please request fewer output tokens. (parameter=max_tokens, value={value})",
        "max_tokens",
    )


AUTO_TOOL_CHOICE_TEXT = (
    '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
)


def auto_tool_choice_disabled() -> ErrorReply:
    return bad_request(AUTO_TOOL_CHOICE_TEXT)


def stream_unsupported() -> ErrorReply:
    return bad_request(
        "stream=true is not supported by the embedded server (gym_rollouts.embedded); "
        "send stream=false",
        "stream",
    )


def validation_error(kind: str, loc: tuple[Any, ...], msg: str, value: Any = None) -> ErrorReply:
    """A pydantic-style list with one error, e.g. a missing `messages` field."""
    item: dict[str, Any] = {"type": kind, "loc": ("body",) + loc, "msg": msg}
    if value is not None:
        item["input"] = value
    return bad_request(repr([item]))


def invalid_json(detail: str) -> ErrorReply:
    item = {"type": "json_invalid", "loc": ("body", 0), "msg": "JSON decode error",
            "ctx": {"error": detail}}
    return bad_request(repr([item]))


def missing_field(name: str) -> ErrorReply:
    return validation_error("missing", (name,), "Field required")


def wrong_type(name: str, expected: str, value: Any) -> ErrorReply:
    kinds = {"list": "list_type", "object": "dict_type", "integer": "int_type",
             "string": "string_type", "boolean": "bool_type", "number": "float_type"}
    article = "an" if expected[0] in "aeiou" else "a"
    return validation_error(
        kinds.get(expected, "value_error"), (name,), f"Input should be {article} valid {expected}",
        value if isinstance(value, (int, float, str, bool)) else None,
    )


def fault(status: int) -> ErrorReply:
    """Injected failures, worded like the proxy / server answers they stand in for."""
    if status == 429:
        return ErrorReply(429, "Too many requests (injected by gym_rollouts.embedded)", "TooManyRequests")
    if status == 503:
        return ErrorReply(503, "Service unavailable (injected by gym_rollouts.embedded)", "ServiceUnavailableError")
    return ErrorReply(500, "Internal server error (injected by gym_rollouts.embedded)", "InternalServerError")


def echo_authorization(header: str | None) -> ErrorReply:
    """The "echo_auth" fault: a careless server that copies the request's credentials into its
    error body, both as the header and as the bare key (for the secret-masking tests)."""
    key = (header or "").partition(" ")[2] or (header or "")
    return ErrorReply(500, f"Internal server error: rejected key {key} (request headers: "
                           f"{{'Authorization': '{header}'}})", "InternalServerError")
