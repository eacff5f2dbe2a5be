"""Shared Hydra plumbing for our console scripts.

``hydra_app(task)`` runs ``task(cfg_dict, hydra_cfg)`` as a Hydra app over ``conf/``: it first
normalises the command line (``+key``/``key`` both work, see config/overrides.py), merges
``config_paths`` and the working directory's ``env.yaml`` with the command line winning, prints
the composition's notices once each on stderr (``note: ...``, see config/notices.py), and turns
our ``ConfigError`` into a one-line message and exit code 2 instead of a traceback.

A closed stdout (``collect --help | head -1``, ``dump_config | head``) is not an error: nothing
more goes to it and no traceback is printed; ``--help`` / ``--hydra-help`` exit 0 (the reader had
what it wanted), anything else exits 141 (128 + SIGPIPE, what a shell reports for a writer whose
reader went away). A ``collect`` run is not cut short by it: it finishes, its files complete;
only what it prints to stdout (log lines, the summary) is lost. Each command's ``--help`` text is
its ``conf/hydra/help/<command>.yaml``.

Secrets (config/secrets.py, config/secret_overrides.py): a key typed literally on the command
line is moved into a variable of this process's environment and Hydra sees only its
``${oc.env:...}`` reference; every secret of the composed config is registered for masking; while
a command runs, everything written to stdout/stderr and every record of the log handlers Hydra
installs passes ``mask_secrets``, so neither Hydra's files nor our output carry a key.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable

from gym_rollouts.cli.entry import signals_held, signals_released
from gym_rollouts.cli.one_compose import probe_skipped
from gym_rollouts.cli.run_dir import check_output_dir
from gym_rollouts.config.compose import conf_dir, merge_config_paths, to_plain
from gym_rollouts.config.notices import Notices, unseen
from gym_rollouts.config.overrides import (check_group_choices, config_group_names, normalize_overrides,
                                           primary_default_groups)
from gym_rollouts.config.secret_overrides import SECRET_ENV_PREFIX, export_secrets, hide_secret_overrides
from gym_rollouts.config.secrets import SecretMaskingFilter, mask_secrets, register_config_secrets
from gym_rollouts.errors import ConfigError, InputError
from gym_rollouts.resource.plugins import register_plugin_resources

EXIT_CONFIG = 2
# for commands that only print: no output dir, no log files, no Hydra logging
QUIET_HYDRA = ("hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=disabled",
               "hydra/hydra_logging=disabled")

EXIT_BROKEN_PIPE = 141

Task = Callable[[dict[str, Any], Any], int]


class GuardedStdout:
    """``sys.stdout`` while a command runs: a write or flush that meets a closed pipe points fd 1
    at /dev/null (so nothing later fails: prints, Hydra's console log handler, the interpreter's
    final flush) and is remembered in ``lost``, instead of raising ``BrokenPipeError``."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.lost = False

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self._lose()
            return len(text)

    def writelines(self, lines: Any) -> None:
        for text in lines:
            self.write(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._lose()

    def _lose(self) -> None:
        if not self.lost:
            self.lost = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self.stream.fileno())
            finally:
                os.close(devnull)

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, ...
        return getattr(self.stream, name)


def exit_quietly_on_broken_pipe(main: Callable[[], Any]) -> Any:
    """``main()`` with ``sys.stdout`` guarded (see ``GuardedStdout``): when its reader went away,
    exit 141 without a traceback once ``main`` is done (a ``collect`` run still finishes, its
    files complete); a ``SystemExit`` from ``main`` (``--help``: 0) keeps its code."""
    guard = GuardedStdout(sys.stdout)
    sys.stdout = guard
    try:
        result = main()
    finally:
        guard.flush()
        sys.stdout = guard.stream
    if guard.lost:
        sys.exit(EXIT_BROKEN_PIPE)
    return result


class MaskingStream:
    """``sys.stdout`` / ``sys.stderr`` while a command runs: each write passes ``mask_secrets``
    (Hydra's ``--cfg job --resolve``, tracebacks, our prints and the console log handler)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(mask_secrets(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for text in lines:
            self.write(text)

    def __getattr__(self, name: str) -> Any:  # flush, fileno, isatty, encoding, ...
        return getattr(self.stream, name)


def mask_log_records() -> None:
    """Put ``SecretMaskingFilter`` on every handler of every logger (once each): the console and
    ``<job>.log`` handlers Hydra's job logging installs, and any a library added."""
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger))]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, SecretMaskingFilter) for f in handler.filters):
                handler.addFilter(SecretMaskingFilter())


def error_text(exc: BaseException) -> str:
    """An error's message for the terminal: secrets masked; a missing variable of a key given on
    the command line gets the reason it is missing."""
    text = mask_secrets(str(exc))
    if SECRET_ENV_PREFIX in text and "not found" in text:
        text += (". collect moves a key typed on the command line into that variable of its own environment; "
                 "a job started elsewhere (a Ray worker, another machine) needs it exported there, or give "
                 "the key as a reference: policy_api_key='${oc.env:YOUR_VARIABLE}'")
    return text


def typed_arguments() -> list[str]:
    """The command line as typed, each literal key replaced by its reference: what a resume
    command may repeat and a launcher may pickle into files (submitit's ``.submitit/*.pkl``)."""
    try:
        return hide_secret_overrides(sys.argv[1:]).args
    except ConfigError:
        return list(sys.argv[1:])  # hydra_app refuses it before any job starts


def composed(cfg: Any, notices: Notices | None = None) -> dict[str, Any]:
    """The final plain config for a Hydra job (env.yaml and config_paths merged, CLI on top; the
    composition's notices go to ``notices``); its secrets are registered for masking."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    # raw strings: iterating the node would resolve a value such as limit='${x}' as an interpolation
    overrides = OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False)
    cwd = HydraConfig.get().runtime.cwd  # where the command was typed, also with hydra.job.chdir
    plain = to_plain(merge_config_paths(cfg, overrides, cwd=cwd, notices=notices), notices)
    register_config_secrets(plain)
    return plain


def hydra_app(task: Task, *, config_name: str = "collect", extra_overrides: tuple[str, ...] = ()) -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig

    cdir = conf_dir()
    try:
        secret_free = hide_secret_overrides(sys.argv[1:])  # Hydra never sees a literal key
        check_group_choices(secret_free.args, cdir, register_plugin_resources(cdir))  # resource/plugins.py
    except ConfigError as exc:
        print(f"error: {error_text(exc)}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    export_secrets(secret_free)
    argv = normalize_overrides(secret_free.args, config_group_names(cdir), primary_default_groups(cdir, config_name))
    sys.argv = [sys.argv[0], *extra_overrides, *argv]
    try:
        check_output_dir(sys.argv[1:])  # Hydra creates it before any job: a message, not its traceback
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    codes: list[int] = []
    printed: set[str] = set()  # notices already shown (a multirun composes once per job)

    @hydra.main(config_path=str(cdir), config_name=config_name, version_base="1.3")
    def _main(cfg: Any) -> int:  # the code is the job's return value: launchers in other processes
        mask_log_records()  # Hydra has just configured this job's logging
        notices = Notices()
        try:
            raw = composed(cfg, notices)
            _print_notes(notices, printed)
            with signals_released():  # held while Hydra composed (cli/entry.py)
                codes.append(task(raw, HydraConfig.get()))
        except (ConfigError, InputError) as exc:
            _print_notes(notices, printed)
            print(f"error: {error_text(exc)}", file=sys.stderr)
            codes.append(EXIT_CONFIG)
        return codes[-1]  # (joblib, SLURM, Ray) hand it to the sweep callback (sweep/callback.py)

    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = MaskingStream(sys.stdout), MaskingStream(sys.stderr)
    try:
        # a Ctrl-C mid-compose is raised once Hydra is done (cli/entry.py); one compose, not two
        # (cli/one_compose.py); a closed stdout: exit 141, no traceback
        with signals_held(), probe_skipped(cdir):
            exit_quietly_on_broken_pipe(_main)
    except SystemExit:
        sys.stdout, sys.stderr = streams
        raise  # any other exception keeps the masking streams: the interpreter prints its traceback
    sys.stdout, sys.stderr = streams
    sys.exit(max(codes) if codes else 0)


def _print_notes(notices: Notices, printed: set[str]) -> None:
    for line in unseen(notices, printed):
        print(f"note: {line}", file=sys.stderr, flush=True)
