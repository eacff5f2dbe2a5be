"""What happens to a rollout whose model calls ran under more than one weight version.

Each answered model call records the version it was sent under (adapter/client.py; router/pause.py
says where the version comes from). A rollout *straddles* when those versions are not all equal
(None, "unknown", counts as a version of its own: a label set mid-rollout is a change). The knob
``weights.on_version_change`` decides (docs/weights.md):

- ``keep`` (default): the row is written, flagged ``_gr.weight_versions_straddled: true``: nothing
  is lost and the trainer sees every call's version (``_gr.calls``) to decide itself;
- ``drop``: no row, counted ``dropped_straddled`` (not a failure); the rollout is done for this run;
- ``redo``: the rollout runs again from scratch (not a failed attempt), at most ``max_redos``
  times; one that still straddles then is kept, flagged.
"""

from __future__ import annotations

from typing import Any, Sequence

KEEP, DROP, REDO = "keep", "drop", "redo"


def straddles(versions: Sequence[str | None]) -> bool:
    """True when the calls' versions are not all the same (an empty rollout never straddles)."""
    return len(set(versions)) > 1


def verdict(policy: str, straddled: bool, redos: int, max_redos: int) -> str:
    """``keep`` / ``drop`` / ``redo`` for one finished run of a rollout (module doc)."""
    if not straddled or policy == KEEP:
        return KEEP
    if policy == DROP:
        return DROP
    if policy == REDO:
        return REDO if redos < max_redos else KEEP
    raise ValueError(f"weights.on_version_change must be keep, drop or redo; got {policy!r}")


def provenance(servers: Sequence[str], versions: Sequence[str | None]) -> dict[str, Any]:
    """The row's ``_gr`` provenance entries: every call's server and version, and the flag."""
    return {"calls": [{"server": s, "weight_version": v} for s, v in zip(servers, versions)],
            "weight_versions_straddled": straddles(versions)}
