"""Hydra callback that writes the sweep summary after a multirun (registered in conf/collect.yaml).

Launchers may run jobs in other processes or on other machines (joblib, submitit, Ray), so each
job leaves a small record in its own job directory (``sweep_job.json``: job number, overrides,
where its rollouts went, whether the task raised) from ``on_job_end``, which runs inside the job.
Whether the job wrote its aggregate metrics is told by their modification time before and after
the job (a refused or interrupted job leaves an earlier run's file untouched).
``on_multirun_end`` runs in the launching process once every job is back, reads the records and
the jobs' aggregate metrics, writes ``sweep_summary.{csv,json}`` into the sweep dir and prints a
short table (this callback is part of the command line's output, hence the print), then judges
the sweep (sweep/verdict.py): when a job failed or did not finish, it names it, prints the resume
command and exits with the sweep's code (the launchers do not pass jobs' codes on). A record's
overrides are Hydra's, so a key typed on the command line is its ``${oc.env:...}`` reference
(cli/app.py); its texts are masked all the same (config/secrets.py).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from gym_rollouts.config.secrets import mask_in
from gym_rollouts.engine.outputs import OutputPaths
from gym_rollouts.sweep.paths import JOB_RECORD, job_output_path
from gym_rollouts.sweep.summary import format_table, read_records, summarize_sweep
from gym_rollouts.sweep.verdict import Verdict, expected_job_count, sweep_verdict

log = logging.getLogger(__name__)


def _is_multirun(config: DictConfig) -> bool:
    return OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN


def configured_output(config: DictConfig, overrides: list[str]) -> str | None:
    """``output_jsonl_fpath`` as the job's task sees it (config_paths merged, CLI on top)."""
    from gym_rollouts.config.compose import merge_config_paths

    job_cfg = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
    merged = merge_config_paths(job_cfg, overrides)
    value = OmegaConf.select(merged, "output_jsonl_fpath")
    return None if value in (None, "") else str(value)


def _overrides(config: DictConfig) -> list[str]:
    return list(OmegaConf.to_container(config.hydra.overrides.task))  # type: ignore[arg-type]


def job_rows_path(config: DictConfig) -> str:
    """The rows file this job's ``collect`` writes (see sweep/paths.py)."""
    return job_output_path(configured_output(config, _overrides(config)),
                           output_dir=str(config.hydra.runtime.output_dir), job_num=int(config.hydra.job.num))


def metrics_stamp(rows_path: str | None) -> int | None:
    """Modification time (ns) of a rows file's aggregate metrics, None when absent."""
    if not rows_path:
        return None
    try:
        return OutputPaths(Path(rows_path)).aggregate_metrics.stat().st_mtime_ns
    except OSError:
        return None


def job_record(config: DictConfig, job_return: Any, stamp_before: int | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"job": int(config.hydra.job.num), "overrides": _overrides(config),
                              "status": getattr(getattr(job_return, "status", None), "name", None),
                              "output_dir": str(config.hydra.runtime.output_dir), "finished_at": time.time()}
    try:
        record["output_jsonl_fpath"] = job_rows_path(config)
    except Exception as exc:  # a config the task itself rejected: the record still says which job
        record["output_jsonl_fpath"] = None
        record["error"] = str(exc)
    stamp = metrics_stamp(record["output_jsonl_fpath"])
    record["metrics_written"] = stamp is not None and stamp != stamp_before  # not a leftover of an earlier run
    if record["status"] == "COMPLETED":
        code = getattr(job_return, "_return_value", None)  # collect's exit code (cli/app.py)
        record["exit_code"] = code if isinstance(code, int) and not isinstance(code, bool) else None
    if record["status"] == "FAILED":
        try:
            job_return.return_value  # raises the task's exception for a failed job
        except BaseException as exc:  # noqa: BLE001 - we only record it
            record["error"] = f"{type(exc).__name__}: {exc}"
    return mask_in(record)  # an error message may quote a key (config/secrets.py)


class SweepSummary(Callback):
    """``hydra.callbacks.sweep_summary`` in conf/collect.yaml; ``print_table: false`` to keep quiet."""

    def __init__(self, print_table: bool = True) -> None:
        self.print_table = print_table
        self._stamp_before: int | None = None  # per job process: the metrics file's mtime at job start

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from gym_rollouts.cli.entry import release_signals

        release_signals()  # Hydra has composed: a Ctrl-C now stops the launcher at once (cli/entry.py)
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if sweep_dir.is_dir():  # a re-used sweep dir: forget the records of an earlier sweep
            for stale in sweep_dir.rglob(JOB_RECORD):
                stale.unlink(missing_ok=True)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._stamp_before = None
        if _is_multirun(config):
            try:
                self._stamp_before = metrics_stamp(job_rows_path(config))
            except Exception:  # the job itself will report a bad config
                self._stamp_before = None

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        record = job_record(config, job_return, self._stamp_before)
        path = Path(record["output_dir"]) / JOB_RECORD
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        rows, columns, (json_path, csv_path) = summarize_sweep(sweep_dir)
        log.info("sweep summary: %s, %s", json_path, csv_path)
        if self.print_table:
            print(f"\nSweep summary ({len(rows)} jobs): {csv_path}")
            print(format_table(rows, columns))
        hydra = config.hydra
        expected = expected_job_count(OmegaConf.select(hydra, "sweeper._target_"), _overrides(config),
                                      OmegaConf.select(hydra, "sweeper.params"))
        verdict = sweep_verdict(read_records(sweep_dir), expected)
        if verdict.exit_code != 0:
            report_and_exit(verdict, str(sweep_dir))


def report_and_exit(verdict: Verdict, sweep_dir: str) -> None:
    """Launchers that run jobs elsewhere do not pass their exit codes on: say which jobs did not
    succeed and how to finish the sweep, and end ``collect -m`` with the sweep's code."""
    import sys

    from gym_rollouts.cli.collect import resume_command

    absolute = str(Path(sweep_dir).resolve())
    lines = "\n".join(f"  - {p}" for p in verdict.problems)
    print(f"error: {len(verdict.problems)} sweep job(s) did not succeed:\n{lines}\n"
          f"  The outputs so far are kept. After fixing the cause, finish the sweep with:\n"
          f"    {resume_command(Path(absolute), sys.argv[1:], absolute)}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    raise SystemExit(verdict.exit_code)
