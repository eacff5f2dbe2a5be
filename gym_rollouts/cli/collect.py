"""``collect``: run every task through the agent loop and stream rollouts to JSONL.

Exit codes (the table is ``gym_rollouts/exit_codes.py``): 0 every rollout succeeded; 2
configuration or input error (nothing sent); 3 the run finished but some rollouts failed (see the
failures file); 4/5/6 the run stopped part-way (``RunStopped``: dead fleet, output write failed,
input changed), with the message and the resume command; 130 interrupted (Ctrl-C / SIGTERM:
in-flight rollouts get ``shutdown_grace_s``, everything written is kept, and the same command with
``resume_from_cache=true`` finishes the run). In a multirun the first
Ctrl-C stops the whole sweep, and the printed command (``-m``, ``hydra.sweep.dir=<the sweep's
dir>``, ``resume_from_cache=true``) resumes every job of it. 141: stdout was closed before the
summary was printed (the output files are complete; see cli/app.py). With no ``policy_base_url``
the embedded demo backend runs, and a notice on stderr plus a summary line say so.

A thin user of the Python API (gym_rollouts/api/, docs/library.md): Hydra composes the config,
``api.run_config`` runs it on the one engine, this module prints.
"""

from __future__ import annotations

import functools
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from gym_rollouts import exit_codes
from gym_rollouts.cli import event_loop
from gym_rollouts.cli.app import hydra_app, typed_arguments
from gym_rollouts.cli.progress import Progress
from gym_rollouts.config.schema import CollectConfig, build_collect_config
from gym_rollouts.config.secret_overrides import given_literally, hide_secret_overrides
from gym_rollouts.api import RunResult, run_config
from gym_rollouts.engine.shutdown import StopControl, install_signal_handlers
from gym_rollouts.errors import RunStopped
from gym_rollouts.sweep.paths import job_context, job_output_path

EXIT_PARTIAL = exit_codes.PARTIAL
EXIT_INTERRUPTED = exit_codes.INTERRUPTED
_NOT_REPEATED = ("resume_from_cache", "overwrite", "output_jsonl_fpath")
_NOT_REPEATED_IN_SWEEP = ("resume_from_cache", "overwrite", "hydra.sweep.dir")
_MULTIRUN_FLAGS = ("-m", "--multirun")
log = logging.getLogger(__name__)


def resume_command(rows: Path, argv: list[str], sweep_dir: str | None = None) -> str:
    """The command line that finishes this run: the same arguments, the output path spelled out,
    ``resume_from_cache=true``. In a multirun (``sweep_dir`` set) the whole sweep resumes: ``-m``
    and the output argument as typed (each job derives its own path from it, see
    sweep/paths.py) plus ``hydra.sweep.dir=<this sweep's dir>``. A key typed literally is not
    repeated: its ``${oc.env:...}`` reference is, plus one line naming the variable to export
    (config/secret_overrides.py); a reference the user typed stays as typed."""
    argv = hide_secret_overrides(argv).args
    if sweep_dir is not None:
        args = [a for a in argv if a.lstrip("+").split("=", 1)[0] not in _NOT_REPEATED_IN_SWEEP]
        if not any(a in _MULTIRUN_FLAGS for a in args):
            args.insert(0, "-m")
        args += [f"hydra.sweep.dir={sweep_dir}", "resume_from_cache=true"]
    else:
        args = [a for a in argv if a.lstrip("+").split("=", 1)[0] not in _NOT_REPEATED]
        args += [f"output_jsonl_fpath={rows.resolve()}", "resume_from_cache=true"]
    command = shlex.join(["collect", *args])  # the console script, also when started as python -m
    notes = [f"({key} was given on the command line and is not repeated: export {variable}=<the key> "
             f"first, or put the key in place of the reference)" for key, variable in given_literally(args)]
    return "\n    ".join([command, *notes])


EMBEDDED_NOTICE = ("note: no policy_base_url configured: using the embedded demo backend (a scripted toy "
                   "model on 127.0.0.1, started for this run; not your vLLM fleet). To collect from vLLM: "
                   "collect policy_base_url=http://<host>:<port>/v1 (a list for several servers) or set it "
                   "in a config_paths file; check it first with doctor and the same arguments.")


def announce_backend(cfg: CollectConfig) -> None:
    """One line on stderr before the run when the embedded demo backend stands in for vLLM."""
    if cfg.uses_embedded_backend:
        print(EMBEDDED_NOTICE, file=sys.stderr, flush=True)


def print_summary(result: RunResult, argv: list[str], sweep_dir: str | None = None, *,
                  embedded: bool = False) -> None:
    s = result.summary
    assert result.paths is not None, "collect always has an output (cli/collect.py _task sets it)"
    for repair in result.repairs:
        print(f"  repaired: {repair}")
    if not result.started:
        print("Interrupted during start-up: stopped before any rollout was sent.")
        print(f"  To run it, use:\n    {resume_command(result.paths.rows, argv, sweep_dir)}")
        return
    if result.interrupted:
        print(f"Interrupted: {s['rollouts']} of {s['total']} rollouts are in {result.paths.rows} "
              f"({s['rollouts_this_run']} from this run); nothing written was lost.")
        print(f"  To finish, run:\n    {resume_command(result.paths.rows, argv, sweep_dir)}")
        return
    resumed = f" ({s['resumed_rows']} from earlier runs)" if s["resumed_rows"] else ""
    reward = "n/a" if s["mean_reward"] is None else f"{s['mean_reward']:.4f}"
    print(f"Wrote {s['rollouts']} rollouts to {result.paths.rows}{resumed}")
    print(f"  rollouts: {s['rollouts']}  failures: {s['failures']}  mean reward: {reward}")
    print(f"  this run: {s['rollouts_this_run']} rollouts, {s['rollouts_per_s']} rollouts/s, "
          f"{s['output_tokens_per_s']} generated tokens/s ({s['elapsed_s']} s, "
          f"model {result.fleet.model_name if result.fleet else '?'})")
    if embedded:
        print("  backend: the embedded demo backend (a scripted toy model), not vLLM; "
              "set policy_base_url to collect from your fleet")
    if s["context_length_stops"]:
        print(f"  context-length stops: {s['context_length_stops']} (rows ended 'incomplete')")
    if s["attempt_retries"] or s["request_retries"]:
        print(f"  retries: {s['attempt_retries']} rollout attempts, {s['request_retries']} model calls")
    if s["skipped_inputs"]:
        print(f"  {s['skipped_inputs']} bad input rows skipped: listed in {result.paths.failures}")
    if s["failures"]:
        print(f"  {s['failures']} rollouts FAILED after all attempts: see {result.paths.failures} "
              f"(one row per failed attempt, with the error)")
    if result.metrics_written:
        print(f"  metrics: {result.paths.aggregate_metrics}")
    else:
        print("  metrics: not written (disable_aggregation=true): merge or aggregate the shards afterwards "
              "(merge_rollouts)")


def _announce(cfg: CollectConfig):
    def on_signal(name: str, stop: StopControl) -> None:
        if stop.forced:
            print(f"\n{name} again: cancelling in-flight rollouts now (they will run again on resume).",
                  file=sys.stderr, flush=True)
        else:
            print(f"\n{name}: no new rollouts; waiting up to {cfg.shutdown_grace_s:g} s for those in flight "
                  f"(press Ctrl-C again to cancel them now).", file=sys.stderr, flush=True)
    return on_signal


async def _collect(cfg: CollectConfig, progress: Progress) -> RunResult:
    stop = StopControl()
    remove = install_signal_handlers(stop, _announce(cfg))
    try:
        return await run_config(cfg, stop=stop, on_tick=progress if progress.enabled else None)  # the Python API
    finally:
        remove()


def _task(raw: dict[str, Any], hydra_cfg: Any, *, argv: list[str]) -> int:
    output_dir, job_num = job_context(hydra_cfg)  # in a multirun, explicit paths get _job<N>
    raw["output_jsonl_fpath"] = job_output_path(raw.get("output_jsonl_fpath"), output_dir=output_dir, job_num=job_num)
    cfg = build_collect_config(raw)
    announce_backend(cfg)
    progress = Progress(cfg.progress, line_every_s=cfg.progress_interval_s)
    sweep_dir = None if job_num is None else sweep_dir_of(hydra_cfg)
    try:
        result = event_loop.run(_collect(cfg, progress), os.environ)  # uvloop when installed
    except RunStopped as exc:
        progress.close()
        return report_stopped(exc, argv, sweep_dir)
    finally:
        progress.close()
    print_summary(result, argv, sweep_dir, embedded=cfg.uses_embedded_backend)
    if result.interrupted:
        if job_num is not None:  # stop the whole sweep: SystemExit escapes Hydra's per-job capture
            sys.stdout.flush()
            sys.exit(EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    return EXIT_PARTIAL if result.failures else 0


def report_stopped(exc: RunStopped, argv: list[str], sweep_dir: str | None) -> int:
    """A run stopped part-way: its message, the command that resumes it, its exit code."""
    print(f"error: {exc}", file=sys.stderr, flush=True)
    paths = getattr(exc, "paths", None)
    if paths is not None:
        print(f"  The outputs so far are kept. After fixing this, run:\n    "
              f"{resume_command(paths.rows, argv, sweep_dir)}", file=sys.stderr, flush=True)
    return exc.exit_code


def sweep_dir_of(hydra_cfg: Any) -> str:
    """This multirun's ``hydra.sweep.dir``, absolute (against the directory collect ran in)."""
    return str((Path(str(hydra_cfg.runtime.cwd)) / str(hydra_cfg.sweep.dir)).resolve())


def main() -> None:
    argv = typed_arguments()  # as typed (secrets as references): hydra_app rewrites sys.argv
    hydra_app(functools.partial(_task, argv=argv))


if __name__ == "__main__":
    main()
