"""``doctor``: check the run's vLLM servers against its config; PASS / WARN / FAIL with the fix.

Same Hydra config and overrides as ``collect`` (``doctor +config_paths=[...]``, ``key=value``);
``--json`` (or ``doctor.json=true``) prints one JSON object instead of text.
Exit codes: 0 nothing FAILs (WARNs allowed); 1 at least one check FAILs; 2 configuration error.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import textwrap
from typing import Any

import orjson

from gym_rollouts.cli.app import QUIET_HYDRA, hydra_app
from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.config.secrets import mask_in, mask_secrets
from gym_rollouts.doctor import Report, Status, run_doctor

_MARK = {Status.PASS: "PASS", Status.WARN: "WARN", Status.FAIL: "FAIL", Status.SKIP: "skip"}
_INDENT = " " * 7


def _block(label: str, text: str, width: int = 100) -> list[str]:
    """``text`` under a label, each of its lines wrapped to ``width`` and indented."""
    pad = _INDENT + " " * len(label)
    lines = [w for line in (text.splitlines() or [""])
             for w in (textwrap.wrap(line, width - len(pad), break_on_hyphens=False) or [""])]
    return [f"{_INDENT}{label}{lines[0]}"] + [pad + line for line in lines[1:]]


def render_text(report: Report) -> str:
    counts = report.counts()
    servers = len(report.servers)
    where = "the embedded demo backend" if report.embedded else "policy_base_url"
    model = f", model {report.model!r}" if report.model else ""
    out = [f"doctor: {servers} server{'s' if servers != 1 else ''} from {where}{model}"]
    out += [textwrap.fill(f"note: {n}", 100) for n in report.notes]
    out.append("")
    for f in report.ordered():
        scope = f" {f.server}" if f.server else ""
        out.append(f"[{_MARK[f.status]}] {f.number} {f.check}{scope}: {f.summary}")
        if f.evidence:
            out += _block("evidence: " if f.status in (Status.WARN, Status.FAIL) else "", f.evidence)
        if f.fix and f.status in (Status.WARN, Status.FAIL):
            out += _block("fix:      ", f.fix)
    verdict = "nothing FAILs" if report.exit_code == 0 else "fix the FAIL lines first, then run doctor again"
    out += ["", f"{counts['PASS']} PASS, {counts['WARN']} WARN, {counts['FAIL']} FAIL, {counts['SKIP']} skipped: "
                f"{verdict} (exit {report.exit_code})"]
    return "\n".join(out)


def _task(raw: dict[str, Any], _hydra: Any) -> int:
    cfg = build_collect_config(raw)
    # doctor reports what it sees itself; the library's own warnings would only repeat it.
    logging.getLogger("gym_rollouts").setLevel(logging.ERROR)
    report = asyncio.run(run_doctor(cfg))
    # evidence quotes server error bodies, which may echo the request's credentials
    if cfg.doctor.json:
        print(orjson.dumps(mask_in(report.as_dict()), option=orjson.OPT_INDENT_2).decode())
    else:
        print(mask_secrets(render_text(report)))
    return report.exit_code


def main() -> None:
    args = sys.argv[1:]
    if "--json" in args:
        args = [a for a in args if a != "--json"] + ["doctor.json=true"]
    sys.argv = [sys.argv[0], *args]
    hydra_app(_task, extra_overrides=(*QUIET_HYDRA, "hydra/help=doctor"))  # --help: conf/hydra/help/doctor.yaml


if __name__ == "__main__":
    main()
