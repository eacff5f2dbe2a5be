"""``exact_match``: no tools; reward 1.0 when the final answer contains the row's expected_answer."""

from __future__ import annotations

from typing import Any, Mapping

from gym_rollouts.resource.base import Resource, Verification, final_text


def contains_answer(text: str, expected: Any) -> bool:
    return expected is not None and str(expected).strip() != "" and str(expected).strip() in text


def expected_answer_problem(row: Mapping[str, Any], resource: str) -> str | None:
    """Rows scored by their ``expected_answer`` must carry one (a row without it would score 0
    whatever the model says: it was most likely meant for another environment)."""
    expected = row.get("expected_answer")
    if expected is None or str(expected).strip() == "":
        return (f"no 'expected_answer' to score against (resource {resource} scores by it); is this row meant "
                f"for another environment? (see README: Bring your NeMo Gym environments)")
    return None


class ExactMatchResource(Resource):
    name = "exact_match"

    def row_problem(self, row: Mapping[str, Any]) -> str | None:
        return expected_answer_problem(row, self.name)

    async def verify(self, row: Mapping[str, Any], response: Mapping[str, Any], state: Any) -> Verification:
        return Verification(1.0 if contains_answer(final_text(response), row.get("expected_answer")) else 0.0)
