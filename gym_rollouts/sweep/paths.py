"""Where one Hydra job writes its rollouts (pure, shared by ``collect`` and the sweep callback).

- no ``output_jsonl_fpath``: ``<job output dir>/rollouts.jsonl``; in a multirun the job output dir
  is the job's sweep sub-directory (``${hydra.sweep.dir}/${hydra.sweep.subdir}``);
- an explicit path in a single run: that path;
- an explicit path in a multirun: the job number goes into the file name
  (``out.jsonl`` -> ``out_job3.jsonl``), so jobs of one sweep never write the same files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEFAULT_NAME = "rollouts.jsonl"
JOB_RECORD = "sweep_job.json"


def with_job_number(path: str, job_num: int) -> str:
    p = Path(path)
    if p.suffix == ".jsonl":
        return str(p.with_name(f"{p.stem}_job{job_num}.jsonl"))
    return str(p.with_name(f"{p.name}_job{job_num}"))


def job_output_path(configured: str | None, *, output_dir: str, job_num: int | None) -> str:
    """The rows file of a job; ``job_num`` is None outside a multirun."""
    if not configured:
        return str(Path(output_dir) / DEFAULT_NAME)
    if job_num is None:
        return configured
    return with_job_number(configured, job_num)


def job_context(hydra_cfg: Any) -> tuple[str, int | None]:
    """(job output dir, job number or None when not a multirun) from a HydraConfig node."""
    from hydra.types import RunMode

    output_dir = str(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    return output_dir, (int(hydra_cfg.job.num) if multirun else None)
