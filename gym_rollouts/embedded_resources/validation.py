"""Request-body validation that answers the way a FastAPI server does (status 422).

NeMo Gym's resources servers are FastAPI apps whose handlers take pydantic models, so a bad body
gets `422 {"detail": [{"type", "loc", "msg", "input"[, "ctx"]}, ...]}`. This module reproduces the
cases our clients can meet: a body that is not JSON (`json_invalid`), an empty body (`missing` at
`["body"]`), a body that is not an object (`model_attributes_type`), a missing field (`missing`),
a wrong type (`string_type`, `int_type`, `int_parsing`, `int_from_float`, `float_type`, `list_type`,
`dict_type`) and an unknown field where the model forbids extras (`extra_forbidden`).

Like FastAPI, a body is parsed as JSON only when the request says `Content-Type: application/json`
(or `...+json`); otherwise the raw text is the input and an object-shaped model refuses it. The
integer coercion follows pydantic's lax mode: ints and bools pass, integral floats and numeric
strings are converted, anything else is refused. All functions are pure.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Sequence

Loc = tuple[Any, ...]

_MSGS = {
    "missing": "Field required",
    "string_type": "Input should be a valid string",
    "int_type": "Input should be a valid integer",
    "int_parsing": "Input should be a valid integer, unable to parse string as an integer",
    "int_from_float": "Input should be a valid integer, got a number with a fractional part",
    "int_parsing_size": "Unable to parse input string as an integer, exceeded maximum size",
    "float_type": "Input should be a valid number",
    "list_type": "Input should be a valid list",
    "dict_type": "Input should be a valid dictionary",
    "model_attributes_type": "Input should be a valid dictionary or object to extract fields from",
    "extra_forbidden": "Extra inputs are not permitted",
    "json_invalid": "JSON decode error",
}
_INT_LIMIT = 2**63  # pydantic refuses floats beyond i64 with int_parsing_size


class ValidationFailed(Exception):
    """One or more FastAPI-shaped validation errors; `body()` is the 422 payload."""

    def __init__(self, errors: Sequence[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = list(errors)

    def body(self) -> dict[str, Any]:
        return {"detail": self.errors}


def error(kind: str, loc: Iterable[Any], value: Any, **ctx: Any) -> dict[str, Any]:
    """One entry of a 422 `detail` list."""
    entry: dict[str, Any] = {"type": kind, "loc": list(loc), "msg": _MSGS[kind], "input": value}
    if ctx:
        entry["ctx"] = ctx
    return entry


def is_json_content_type(content_type: str | None) -> bool:
    main = (content_type or "").split(";", 1)[0].strip().lower()
    return main == "application/json" or (main.startswith("application/") and main.endswith("+json"))


def parse_body(content_type: str | None, raw: bytes) -> Any:
    """The request body as FastAPI hands it to a model: parsed JSON, raw text, or a 422."""
    if not raw:
        raise ValidationFailed([error("missing", ("body",), None)])
    if not is_json_content_type(content_type):
        return raw.decode("utf-8", errors="replace")
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationFailed([error("json_invalid", ("body", exc.pos), {}, error=exc.msg)]) from None


def require_object(body: Any, loc: Loc = ("body",)) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationFailed([error("model_attributes_type", loc, body)])
    return body


def coerce_int(value: Any, loc: Loc) -> tuple[bool, Any]:
    """`value` as pydantic's lax `int` sees it: (True, the int) or (False, the error entry)."""
    if isinstance(value, bool):
        return True, int(value)
    if isinstance(value, int):
        return True, value
    if isinstance(value, float):
        if value != value or abs(value) >= _INT_LIMIT:  # NaN, inf, beyond i64
            return False, error("int_parsing_size", loc, value)
        return (True, int(value)) if value.is_integer() else (False, error("int_from_float", loc, value))
    if isinstance(value, str):
        text = value.strip()
        try:
            return True, int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            number = float("nan")
        if number.is_integer() and abs(number) < _INT_LIMIT:
            return True, int(number)
        return False, error("int_parsing", loc, value)
    return False, error("int_type", loc, value)


_TYPE_CHECKS = {
    "str": (str, "string_type"),
    "list": (list, "list_type"),
    "dict": (dict, "dict_type"),
}


def check_value(kind: str, value: Any, loc: Loc) -> tuple[bool, Any]:
    """(True, the coerced value) or (False, the error entry); kind: str | int | list | dict | any."""
    if kind == "int":
        return coerce_int(value, loc)
    if kind == "any":
        return True, value
    try:
        cls, error_type = _TYPE_CHECKS[kind]
    except KeyError:
        raise ValueError(f"unknown field kind {kind!r}") from None
    return (True, value) if isinstance(value, cls) else (False, error(error_type, loc, value))


Spec = Mapping[str, tuple[str, bool]]  # field -> (kind, required)


def check_fields(body: Mapping[str, Any], spec: Spec, *, loc: Loc = ("body",),
                 forbid_extra: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Validate the object `body` against `spec`: (the coerced fields present, the errors)."""
    values: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for field, (kind, required) in spec.items():
        if field not in body:
            if required:
                errors.append(error("missing", (*loc, field), dict(body)))
            continue
        ok, checked = check_value(kind, body[field], (*loc, field))
        if ok:
            values[field] = checked
        else:
            errors.append(checked)
    if forbid_extra:
        errors.extend(error("extra_forbidden", (*loc, k), v) for k, v in body.items() if k not in spec)
    return values, errors


def validate(body: Any, spec: Spec, *, forbid_extra: bool = False) -> dict[str, Any]:
    """`body` must be an object matching `spec`; returns the coerced fields or raises a 422."""
    values, errors = check_fields(require_object(body), spec, forbid_extra=forbid_extra)
    if errors:
        raise ValidationFailed(errors)
    return values
