"""The safe arithmetic evaluator: arithmetic in, a number out; anything else is a ToolCallError."""

from __future__ import annotations

import pytest

from gym_rollouts.resource.arithmetic import ArithmeticResource, evaluate, format_number
from gym_rollouts.resource.base import ToolCallError


@pytest.mark.parametrize(("expression", "expected"), [
    ("(43 * 21) + 14", "917"),
    ("7 / 2", "3.5"),
    ("6 / 3", "2"),
    ("7 // 2", "3"),
    ("-7 % 3", "2"),
    ("2 ** 10", "1024"),
    ("2 ** -1", "0.5"),
    ("-(3 - 5)", "2"),
    ("+4", "4"),
    ("  1.5 * 4  ", "6"),
    ("(-8) ** 2.0", "64"),
    ("2 ** 64", "18446744073709551616"),
])
def test_arithmetic(expression: str, expected: str):
    assert format_number(evaluate(expression)) == expected


@pytest.mark.parametrize(("expression", "needle"), [
    ("__import__('os').system('true')", "unsupported syntax"),
    ("open('/etc/passwd').read()", "unsupported syntax"),
    ("abs(-1)", "unsupported syntax"),
    ("x + 1", "unsupported syntax"),
    ("(1).__class__", "unsupported syntax"),
    ("[1, 2]", "unsupported syntax"),
    ("'a' * 3", "unsupported syntax"),
    ("True + 1", "unsupported syntax"),
    ("1 if 1 else 2", "unsupported syntax"),
    ("1 < 2", "unsupported syntax"),
    ("lambda: 1", "unsupported syntax"),
    ("1 & 3", "unsupported syntax"),
    ("1; 2", "cannot parse"),
    ("import os", "cannot parse"),
    ("1 +", "cannot parse"),
    ("", "cannot parse"),
    ("a\x00b", "cannot parse"),
    ("(" * 300 + "1" + ")" * 300, "cannot parse"),
    ("1 / 0", "division by zero"),
    ("1 % 0", "division by zero"),
    ("0 ** -1", "division by zero"),
    ("9 ** 9 ** 9", "exponent too large"),
    ("10.0 ** 400", "exponent too large"),
    ("(1e10) ** 64", "result too large"),
    ("((10 ** 64) ** 64) ** 64", "result too large"),
    ("(-8) ** 0.5", "not a real number"),
    ("1e308 * 10", "not a finite number"),
    ("1e400", "not a finite number"),
    ("1" * 5000, "expression too long"),
    ("-" * 100_000 + "1", "expression too long"),
])
def test_refused(expression: str, needle: str):
    with pytest.raises(ToolCallError, match=needle):
        evaluate(expression)


def test_error_messages_stay_short():
    with pytest.raises(ToolCallError) as info:
        evaluate("(" * 400 + "1" + ")" * 400)
    assert len(str(info.value)) < 200


async def test_tool_interface():
    res = ArithmeticResource()
    assert [t["name"] for t in res.tools()] == ["calculate"]
    assert await res.call_tool(None, "calculate", {"expression": "2 + 2"}) == "4"
    with pytest.raises(ToolCallError, match="unknown tool"):
        await res.call_tool(None, "eval", {"expression": "2 + 2"})
    with pytest.raises(ToolCallError, match="string argument 'expression'"):
        await res.call_tool(None, "calculate", {"expression": 4})
