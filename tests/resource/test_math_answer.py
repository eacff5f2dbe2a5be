"""resource=math with the real math-verify: reward = verify(parse(expected), parse(answer)), NeMo
Gym's math row fields, the recorded answer, unparsable expected answers named, and the checks in
worker processes (a slow comparison does not stall the others)."""

from __future__ import annotations

import asyncio
import time

import pytest
from math_verify import parse, verify

from gym_rollouts.adapter.reply import message_item
from gym_rollouts.errors import ConfigError, ResourceError
from gym_rollouts.resource.math_answer import MathResource

ANSWERS = [r"So the answer is \boxed{\frac{1}{2}}.", "The answer is 0.5.", r"\boxed{0.25}", "I give up.",
           r"$x = \frac{2}{4}$", r"first \boxed{1} then \boxed{1/2}", ""]
EXPECTED = ["0.5", r"\(\frac{1}{2}\)", "1/2", "$\\frac{1}{4}$", "32"]


def response(text: str) -> dict:
    return {"output": [message_item(text)]}


async def test_reward_is_math_verify_on_the_whole_final_text() -> None:
    resource = MathResource()
    seen = set()
    for expected in EXPECTED:
        row = {"expected_answer": expected}
        state = await resource.seed(row)
        for text in ANSWERS:
            verdict = await resource.verify(row, response(text), state)
            assert verdict.reward == float(verify(parse(expected), parse(text))), (expected, text)
            parsed = parse(text)
            assert verdict.extras == {"extracted_answer": parsed[-1] if parsed else None,
                                      "parsed_answer": str(parsed[0]) if parsed else None}
            seen.add(verdict.reward)
    assert seen == {0.0, 1.0}


async def test_another_rule_cuts_the_answer_out_first() -> None:
    resource = MathResource(answer_format="answer_tag")
    row = {"expected_answer": "3/4"}
    state = await resource.seed(row)
    verdict = await resource.verify(row, response(r"\boxed{0.75} <answer>0.7</answer>"), state)
    assert (verdict.reward, verdict.extras["extracted_answer"]) == (float(verify(parse("3/4"), parse("0.7"))), "0.7")
    unparsed = await resource.verify(row, response("<answer>banana split</answer>"), state)
    assert unparsed.reward == 0.0 and unparsed.extras == {"extracted_answer": "banana split", "parsed_answer": None}


@pytest.mark.parametrize(("row", "found"), [
    ({"question": "q", "expected_answer": "32"}, "32"),            # math_with_judge, polymath, ns_tools
    ({"id": "0", "expected_result": r"\(\sqrt{2}\)"}, r"\(\sqrt{2}\)"),  # math_with_code
    ({"question": "q", "answer": "-4"}, "-4"),                     # verifiers' acereason-math
    ({"expected_answer": 7}, "7"),
])
def test_nemo_gym_math_field_names(row: dict, found: str) -> None:
    resource = MathResource()
    assert resource.row_problem(row) is None and resource.expected(row)[1] == found


def test_rows_without_an_expected_answer_are_refused_and_the_field_is_configurable() -> None:
    problem = MathResource().row_problem({"question": "q", "expected_answer": " "})
    assert problem is not None and "expected_answer / expected_result / answer" in problem
    custom = MathResource(expected_answer_field="gold")
    assert custom.row_problem({"gold": "1"}) is None and custom.row_problem({"expected_answer": "1"}) is not None


async def test_an_expected_answer_math_verify_cannot_parse_fails_the_rollout_naming_it() -> None:
    with pytest.raises(ResourceError, match="cannot parse the expected answer 'Algebra'"):
        await MathResource().seed({"expected_answer": "Algebra"})


@pytest.mark.parametrize("params", [{"parsing_timeout_s": -1}, {"verify_timeout_s": 1.5}, {"processes": 0},
                                    {"expected_answer_field": ""}])
def test_bad_params(params: dict) -> None:
    with pytest.raises(ConfigError):
        MathResource(**params)


async def test_checks_in_worker_processes_keep_the_event_loop_free() -> None:
    slow = r"\(\frac{(3-\sqrt{3})(2-\sqrt{3})^{2016}+(3+\sqrt{3})(2+\sqrt{3})^{2016}}{6}\)"  # math_with_judge
    resource = MathResource(processes=2, verify_timeout_s=2)
    await resource.start(None)
    try:
        slow_row, quick_row = {"expected_answer": slow}, {"expected_answer": "4"}
        await asyncio.gather(resource.seed(slow_row), resource.seed(quick_row))  # both workers up
        slow_task = asyncio.ensure_future(resource.verify(slow_row, response("0"), await resource.seed(slow_row)))
        await asyncio.sleep(0.3)  # the slow comparison is running in a worker
        started = time.monotonic()
        quick = await resource.verify(quick_row, response("The answer is 4."), await resource.seed(quick_row))
        assert quick.reward == 1.0 and not slow_task.done(), time.monotonic() - started
        assert (await slow_task).reward == 0.0  # its comparison timed out: not equal
    finally:
        await resource.stop()
