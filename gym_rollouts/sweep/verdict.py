"""The verdict of a multirun: which jobs did not succeed, and the exit code of the whole sweep.

Launchers that run jobs in other processes (joblib, SLURM, Ray) do not hand the jobs' exit codes
to the launching shell, so ``collect -m`` would end in 0 whatever the jobs did. The verdict is
made from the per-job records (``sweep_job.json``: the job's exit code, or ``LOST`` for a job its
launcher reported as cancelled / killed, see sweep/lost_jobs.py) and the number of jobs the sweep
launched: a job with no record at all did not finish either. Pure functions; the callback
(sweep/callback.py) prints the result and exits with it.

Exit code of the sweep: the largest of the jobs' codes (as for jobs run in-process), where a job
that did not finish (lost, no record, an exception) counts as interrupted (130): its outputs are
kept and ``resume_from_cache=true`` on the same ``hydra.sweep.dir`` finishes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from gym_rollouts import exit_codes

LOST = "LOST"
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


@dataclass(frozen=True)
class Verdict:
    exit_code: int
    problems: tuple[str, ...]  # one line per job that did not succeed


def job_code(record: Mapping[str, Any]) -> int:
    """One job's exit code as the sweep counts it."""
    if record.get("status") in (LOST, "FAILED"):
        return exit_codes.INTERRUPTED
    code = record.get("exit_code")
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    return exit_codes.OK if record.get("metrics_written", True) else exit_codes.INTERRUPTED


def _describe(record: Mapping[str, Any], code: int) -> str:
    what = " ".join(o.lstrip("+") for o in record.get("overrides", []))
    if record.get("status") == LOST:
        why = "did not finish (cancelled, killed, or its node went away)"
    elif record.get("status") == "FAILED":
        why = "raised an exception"
    elif code == exit_codes.PARTIAL:
        why = "finished with failed rollouts (exit 3, see its failures file)"
    else:
        why = f"exited {code}"
    detail = f": {record['error']}" if record.get("error") else ""
    return f"job {record.get('job')} ({what}) {why}{detail}"


def sweep_verdict(records: Iterable[Mapping[str, Any]], expected_jobs: int | None) -> Verdict:
    """The verdict from the jobs' records; ``expected_jobs`` None when the count is unknown."""
    by_job = {r.get("job"): r for r in records}
    codes, problems = [exit_codes.OK], []
    for num in sorted(by_job, key=lambda n: (n is None, n)):
        code = job_code(by_job[num])
        codes.append(code)
        if code != exit_codes.OK:
            problems.append(_describe(by_job[num], code))
    if expected_jobs is not None:
        missing = [n for n in range(expected_jobs) if n not in by_job]
        if missing:
            codes.append(exit_codes.INTERRUPTED)
            problems += [f"job {n} left no record: it did not finish (cancelled or killed before its end)"
                         for n in missing]
    return Verdict(max(codes), tuple(problems))


def expected_job_count(sweeper_target: str | None, task_overrides: Sequence[str],
                       sweeper_params: Mapping[str, Any] | None = None) -> int | None:
    """How many jobs Hydra's basic sweeper makes of these overrides (None for any other sweeper:
    Optuna & co. decide their job count themselves)."""
    if sweeper_target != BASIC_SWEEPER:
        return None
    from hydra.core.override_parser.overrides_parser import OverridesParser

    given = [*(f"{k}={v}" for k, v in (sweeper_params or {}).items()), *task_overrides]
    sizes = []
    for override in OverridesParser.create().parse_overrides(given):
        if override.is_sweep_override():
            sizes.append(len(list(override.sweep_string_iterator())))
    return math.prod(sizes)
