"""Key figures of one ``<stem>_aggregate_metrics.json``, whatever its shape (pure).

Two shapes are read: a mapping with a ``summary`` dict (rollouts, failures, mean_reward,
rollouts_per_s, output_tokens_per_s, elapsed_s), and NeMo Gym's list with one entry per agent
(``agent_ref``, ``agent_metrics`` with ``count``, ``failures``, ``mean/reward``,
``pass@<k>/reward``..., and a ``run`` section). pass@k values are reported as found (the per-agent
ones are in percent, as NeMo Gym writes them); a figure a file does not have is None.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

FIGURES = ("rollouts", "failures", "mean_reward", "rollouts_per_s", "output_tokens_per_s", "elapsed_s")
_PASS_AT = re.compile(r"^pass@(\d+)(/reward)?$")
_MAX_DEPTH = 4


def find_pass_at_k(doc: Any) -> dict[str, Any]:
    """Every ``pass@k`` (or ``pass@k/reward``) value, named ``pass@k`` or ``<section>/pass@k``
    when several sections carry the same k."""
    found: dict[str, dict[str, Any]] = {}

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if len(path) > _MAX_DEPTH:
            return
        if isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, (*path, _entry_name(item, i)))
            return
        if not isinstance(node, Mapping):
            return
        for key, value in node.items():
            m = _PASS_AT.match(str(key))
            if m and isinstance(value, (int, float)) and not isinstance(value, bool):
                found.setdefault(f"pass@{m.group(1)}", {})[path[0] if path else ""] = value
            elif isinstance(value, (Mapping, list)):
                walk(value, (*path, str(key)))

    walk(doc, ())
    out: dict[str, Any] = {}
    for key, by_section in found.items():
        if len(by_section) == 1:
            out[key] = next(iter(by_section.values()))
        else:
            out.update({f"{section}/{key}" if section else key: v for section, v in by_section.items()})
    return out


def _entry_name(item: Any, i: int) -> str:
    ref = item.get("agent_ref") if isinstance(item, Mapping) else None
    if isinstance(ref, Mapping) and isinstance(ref.get("name"), str):
        return ref["name"]
    return str(i)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def key_figures(doc: Any) -> dict[str, Any]:
    """The FIGURES (None where absent) plus any pass@k columns of one metrics document."""
    if isinstance(doc, Mapping) and isinstance(doc.get("summary"), Mapping):
        out = {k: doc["summary"].get(k) for k in FIGURES}
    elif isinstance(doc, list) and doc and all(isinstance(e, Mapping) for e in doc):
        out = _from_agent_entries(doc)
    else:
        out = dict.fromkeys(FIGURES)
    out.update(find_pass_at_k(doc))
    return out


def _from_agent_entries(entries: list[Mapping[str, Any]]) -> dict[str, Any]:
    agents = [e.get("agent_metrics") or {} for e in entries]
    run = next((e["run"] for e in entries if isinstance(e.get("run"), Mapping)), {})
    counts = [_num(a.get("count")) or 0.0 for a in agents]
    total = sum(counts)
    rewards = [(_num(a.get("mean/reward")), c) for a, c in zip(agents, counts)]
    weighted = [(r, c) for r, c in rewards if r is not None and c]
    out: dict[str, Any] = {
        "rollouts": int(total) if "rollouts" not in run else run["rollouts"],
        "failures": run.get("failures", sum(int(_num(a.get("failures")) or 0) for a in agents)),
        "mean_reward": round(sum(r * c for r, c in weighted) / sum(c for _, c in weighted), 6) if weighted else None,
        "elapsed_s": run.get("elapsed_s"),
    }
    for rate in ("rollouts_per_s", "output_tokens_per_s"):
        values = [_num(a.get(rate)) for a in agents]
        out[rate] = run[rate] if rate in run else (sum(v for v in values if v is not None) if any(
            v is not None for v in values) else None)
    return out
