"""``arithmetic``: a ``calculate(expression)`` tool and an exact-match verifier.

Expressions are evaluated by a whitelist over Python's AST (numbers, + - * / // % ** and
parentheses, bounded exponents): never ``eval``.
"""

from __future__ import annotations

import ast
import operator
from typing import Any, Mapping

from gym_rollouts.resource.base import Resource, ToolCallError, Verification, called_tools, final_text
from gym_rollouts.resource.exact_match import contains_answer

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


def evaluate(expression: str) -> float | int:
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ToolCallError(f"cannot parse expression {expression!r}") from None
    return _eval(tree.body)


def _eval(node: ast.AST) -> float | int:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ToolCallError("exponent too large")
        try:
            return _BINOPS[type(node.op)](left, right)
        except ZeroDivisionError:
            raise ToolCallError("division by zero") from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    raise ToolCallError(f"unsupported syntax in expression: {ast.dump(node)[:60]}")


def format_number(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


class ArithmeticResource(Resource):
    name = "arithmetic"

    def tools(self) -> list[dict[str, Any]]:
        return [CALCULATE_TOOL]

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
