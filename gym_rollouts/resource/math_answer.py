"""``math``: rows with an expected answer, rewarded by math-verify on the model's final answer (no judge).

The expected answer is the row's ``expected_answer`` (NeMo Gym's math_with_judge, polymath,
math_with_autograder, ns_tools rows), else ``expected_result`` (math_with_code), else ``answer``
(verifiers' math rows); ``expected_answer_field`` names another field. Reward =
``float(verify(parse(expected), parse(answer)))`` of math-verify: ``\\boxed{1/2}`` equals ``0.5``.

``answer_format`` (resource/answers.py) says what ``parse`` is given: ``full`` (the default) hands it
the whole final text, so math-verify's own extraction picks the answer (the last ``\\boxed{}`` first,
then the last LaTeX or plain expression); another rule cuts the answer out first. The row records
``extracted_answer`` (the answer text math-verify found; with a rule other than ``full``, what the
rule cut out even when math-verify could not parse it; null: nothing) and ``parsed_answer`` (its
parsed form, null when nothing parsed). An expected answer math-verify cannot parse fails the
rollout with that answer named (never a silent reward 0).

Checks run in ``processes`` worker processes (resource/process_pool.py; null = min(4, cpu count)):
one comparison can take seconds (NeMo Gym's math_with_judge example rows hold a gold answer with
``(2+sqrt(3))^2016``, whose comparison with a wrong answer runs into the 5 s timeout), and it must
not stall the other rollouts. math-verify bounds each parse / comparison with ``signal.alarm``
(``parsing_timeout_s`` / ``verify_timeout_s``, whole seconds, 0 = none), which works in a main
thread only: in the workers always, inline (the resource used without ``start``) only on the main
thread. A timed-out parse counts as no answer, a timed-out comparison as not equal.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from gym_rollouts.errors import ConfigError, ResourceError
from gym_rollouts.resource.answers import AnswerExtractor
from gym_rollouts.resource.base import Resource, Verification, final_text
from gym_rollouts.resource.optional_libs import installed_version, require
from gym_rollouts.resource.process_pool import VerifierPool

DISTRIBUTION = "math-verify"
EXPECTED_ANSWER_FIELDS = ("expected_answer", "expected_result", "answer")


def _timeout(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"resource.params.{key} must be whole seconds >= 0 (0 = no timeout), got {value!r}")
    return value


def _usable(seconds: int) -> int | None:
    """math-verify's timeout argument: signal.alarm works on the main thread only."""
    return (seconds or None) if threading.current_thread() is threading.main_thread() else None


def _parse(text: str, parsing_timeout_s: int) -> list[Any]:
    import math_verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its timeout warnings: the reward says it
    return math_verify.parse(text, parsing_timeout=_usable(parsing_timeout_s))


def expected_parses(expected: str, parsing_timeout_s: int) -> bool:
    """Whether math-verify parses the expected answer (run in a worker process)."""
    return bool(_parse(expected, parsing_timeout_s))


def check_answer(expected: str, answer: str | None, parsing_timeout_s: int,
                 verify_timeout_s: int) -> tuple[bool, str | None, str | None]:
    """``verify(parse(expected), parse(answer))`` (run in a worker process): (equal, the answer text
    math-verify matched, its parsed form)."""
    import math_verify

    gold = _parse(expected, parsing_timeout_s)
    parsed = _parse(answer, parsing_timeout_s) if answer is not None else []
    if not parsed:
        return False, None, None
    equal = bool(gold) and math_verify.verify(gold, parsed, timeout_seconds=_usable(verify_timeout_s))
    found = next((p for p in reversed(parsed) if isinstance(p, str)), answer)
    return bool(equal), found, str(parsed[0])


class MathResource(Resource):
    name = "math"

    def __init__(self, answer_format: str = "full", answer_pattern: str | None = None,
                 expected_answer_field: str | None = None, parsing_timeout_s: int = 5,
                 verify_timeout_s: int = 5, processes: int | None = None) -> None:
        require("math_verify", DISTRIBUTION, self.name)
        self.extractor = AnswerExtractor(answer_format, answer_pattern)
        if expected_answer_field is not None and not (isinstance(expected_answer_field, str)
                                                      and expected_answer_field):
            raise ConfigError(f"resource.params.expected_answer_field must be a field name or null, got "
                              f"{expected_answer_field!r}")
        self.fields = (expected_answer_field,) if expected_answer_field else EXPECTED_ANSWER_FIELDS
        self.parsing_timeout_s = _timeout(parsing_timeout_s, "parsing_timeout_s")
        self.verify_timeout_s = _timeout(verify_timeout_s, "verify_timeout_s")
        self.pool = VerifierPool(processes, "resource.params.processes")

    def library_versions(self) -> dict[str, str]:
        return {DISTRIBUTION: installed_version(DISTRIBUTION)}

    async def start(self, ctx: Any) -> None:
        self.pool.start()

    async def stop(self) -> None:
        await self.pool.stop()

    def expected(self, row: Mapping[str, Any]) -> tuple[str, str] | None:
        """(field, expected answer text) of a row (None: it has none)."""
        for key in self.fields:
            value = row.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return key, str(value)
            if isinstance(value, str) and value.strip():
                return key, value
        return None

    def row_problem(self, row: Mapping[str, Any]) -> str | None:
        if self.expected(row) is None:
            return (f"no expected answer to score against (resource math reads {' / '.join(self.fields)}: a "
                    f"non-empty text or number); is this row meant for another environment?")
        return None

    async def seed(self, row: Mapping[str, Any]) -> str:
        """The expected answer, once math-verify parsed it (an unparsable one fails the rollout, naming it)."""
        key, expected = self.expected(row) or ("?", "")
        if not await self.pool.run(expected_parses, expected, self.parsing_timeout_s):
            raise ResourceError(f"math-verify cannot parse the expected answer {expected!r} of this row (field "
                                f"{key}): fix or drop the row, or score it with another resource")
        return expected

    async def verify(self, row: Mapping[str, Any], response: Mapping[str, Any], state: str) -> Verification:
        extracted = self.extractor.extract(final_text(response))
        equal, found, parsed = await self.pool.run(check_answer, state, extracted, self.parsing_timeout_s,
                                                   self.verify_timeout_s)
        if parsed is None and self.extractor.answer_format != "full":
            found = extracted  # what the rule cut out, though math-verify could not parse it
        return Verification(1.0 if equal else 0.0, {"extracted_answer": found, "parsed_answer": parsed})
