"""A test resource (selected with ``resource.cls=raising_resource:RaisingResource``, with this
directory on PYTHONPATH): exact-match verification that raises on rows marked ``explode``."""

from __future__ import annotations

from typing import Any, Mapping

from gym_rollouts.resource.base import Verification
from gym_rollouts.resource.exact_match import ExactMatchResource


class RaisingResource(ExactMatchResource):
    name = "raising"

    async def verify(self, row: Mapping[str, Any], response: Mapping[str, Any], state: Any) -> Verification:
        if row.get("explode"):
            raise RuntimeError(f"boom on {row['task_id']}")
        return await super().verify(row, response, state)
