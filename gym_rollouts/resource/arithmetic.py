"""``arithmetic``: a ``calculate(expression)`` tool and an exact-match verifier.

Expressions are evaluated by a whitelist over Python's AST (numbers, + - * / // % ** and
parentheses): never ``eval``. Length, exponents and result sizes are bounded, results must be
finite real numbers; everything else is a ``ToolCallError`` the model sees as the tool output.
"""

from __future__ import annotations

import ast
import math
import operator
from typing import Any, Mapping

from gym_rollouts.resource.base import Resource, ToolCallError, Verification, called_tools, final_text
from gym_rollouts.resource.exact_match import contains_answer, expected_answer_problem

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}

CALCULATE_TOOL = {
    "type": "function",
    "name": "calculate",
    "description": "Evaluate an arithmetic expression and return the result.",
    "parameters": {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "e.g. (3 + 4) * 12"}},
        "required": ["expression"],
        "additionalProperties": False,
    },
    "strict": True,
}

MAX_EXPRESSION_CHARS = 1000
MAX_INT_BITS = 4096  # about 1230 decimal digits: far beyond any task, far below a slow computation


def evaluate(expression: str) -> float | int:
    """The value of an arithmetic expression; anything else raises ``ToolCallError``."""
    text = expression.strip()
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ToolCallError(f"expression too long ({len(text)} characters, at most {MAX_EXPRESSION_CHARS})")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise ToolCallError(f"cannot parse expression {_short(text)}") from None
    try:
        return _checked(_eval(tree.body))
    except RecursionError:
        raise ToolCallError("expression nested too deeply") from None


def _short(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _eval(node: ast.AST) -> float | int:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return _checked(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        try:
            return _checked(_BINOPS[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ToolCallError("division by zero") from None
        except OverflowError:
            raise ToolCallError("result too large") from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    raise ToolCallError(f"unsupported syntax in expression: {type(node).__name__} "
                        f"(only numbers, + - * / // % ** and parentheses)")


def _check_power(base: float | int, exponent: float | int) -> None:
    if abs(exponent) > 64:
        raise ToolCallError("exponent too large")
    if base < 0 and not float(exponent).is_integer():
        raise ToolCallError("a negative number to a fractional power is not a real number")
    if isinstance(base, int) and isinstance(exponent, int) and base.bit_length() * exponent > MAX_INT_BITS:
        raise ToolCallError("result too large")


def _checked(value: float | int) -> float | int:
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolCallError("result is not a finite number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolCallError("result too large")
    if not isinstance(value, (int, float)):  # e.g. complex: never expected after the checks above
        raise ToolCallError("result is not a real number")
    return value


def format_number(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


class ArithmeticResource(Resource):
    name = "arithmetic"

    def tools(self) -> list[dict[str, Any]]:
        return [CALCULATE_TOOL]

    def row_problem(self, row: Mapping[str, Any]) -> str | None:
        return expected_answer_problem(row, self.name)

    async def call_tool(self, state: Any, name: str, arguments: Mapping[str, Any]) -> str:
        if name != "calculate":
            raise ToolCallError(f"unknown tool '{name}' (available: calculate)")
        expression = arguments.get("expression")
        if not isinstance(expression, str):
            raise ToolCallError("calculate needs a string argument 'expression'")
        return format_number(evaluate(expression))

    async def verify(self, row: Mapping[str, Any], response: Mapping[str, Any], state: Any) -> Verification:
        correct = contains_answer(final_text(response), row.get("expected_answer"))
        return Verification(1.0 if correct else 0.0, {"used_tool": float("calculate" in called_tools(response))})
