"""``exact_match``: no tools; reward 1.0 when the final answer contains the row's expected_answer."""

from __future__ import annotations

from typing import Any, Mapping

from gym_rollouts.resource.base import Resource, Verification, final_text


def contains_answer(text: str, expected: Any) -> bool:
    return expected is not None and str(expected).strip() != "" and str(expected).strip() in text


class ExactMatchResource(Resource):
    name = "exact_match"

    async def verify(self, row: Mapping[str, Any], response: Mapping[str, Any], state: Any) -> Verification:
        return Verification(1.0 if contains_answer(final_text(response), row.get("expected_answer")) else 0.0)
