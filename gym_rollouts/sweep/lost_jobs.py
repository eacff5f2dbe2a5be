"""Collecting the results of a cluster sweep without losing the sweep to one lost job.

The SLURM and Ray launcher plugins fetch their jobs' results one after the other and raise at the
first job that did not finish (a cancelled array task, a killed Ray worker): the multirun then
ends with a traceback while later jobs still run, and no sweep summary is written. ``gather``
waits for every job instead; a job whose result cannot be fetched gets a ``LOST`` record
(``<sweep dir>/.lost_jobs/<job>/sweep_job.json``, read with the jobs' own records by the summary
and the verdict, sweep/verdict.py) and a placeholder JobReturn, so Hydra's sweeper carries on to
the callback's ``on_multirun_end``, which prints the summary, what was lost, the resume command,
and exits non-zero.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from hydra.core.utils import JobReturn, JobStatus

from gym_rollouts import exit_codes
from gym_rollouts.config.secrets import mask_in
from gym_rollouts.sweep.paths import JOB_RECORD
from gym_rollouts.sweep.verdict import LOST

log = logging.getLogger(__name__)
LOST_DIR = ".lost_jobs"


def lost_record_path(sweep_dir: Path, job_num: int) -> Path:
    return sweep_dir / LOST_DIR / str(job_num) / JOB_RECORD


def write_lost_record(sweep_dir: Path, job_num: int, overrides: Sequence[str], error: BaseException) -> Path:
    record = {"job": job_num, "overrides": list(overrides), "status": LOST, "exit_code": None,
              "output_jsonl_fpath": None, "output_dir": None, "finished_at": time.time(),
              "metrics_written": False, "error": f"{type(error).__name__}: {str(error)[:800]}"}
    path = lost_record_path(sweep_dir, job_num)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(mask_in(record), indent=2) + "\n", encoding="utf-8")
    return path


def gather(fetchers: Sequence[Callable[[], JobReturn]], job_overrides: Sequence[Sequence[str]],
           initial_job_idx: int, sweep_dir: Path) -> list[JobReturn]:
    """Each fetcher blocks until its job is over and returns its JobReturn (or raises): all are
    called, so every job has ended when this returns."""
    results = []
    for offset, (fetch, overrides) in enumerate(zip(fetchers, job_overrides)):
        num = initial_job_idx + offset
        try:
            results.append(fetch())
        except Exception as exc:  # noqa: BLE001 - whatever the engine raises, the job is lost
            where = write_lost_record(sweep_dir, num, overrides, exc)
            log.error("sweep job %d did not finish (%s: %s); recorded in %s", num, type(exc).__name__, exc, where)
            results.append(JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED,
                                     _return_value=exit_codes.INTERRUPTED))
    return results
