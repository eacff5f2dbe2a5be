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
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

from gym_rollouts.config.compose import conf_dir, merge_config_paths, to_plain
from gym_rollouts.config.notices import Notices, unseen
from gym_rollouts.config.overrides import (check_group_choices, config_group_names, normalize_overrides,
                                           primary_default_groups)
from gym_rollouts.errors import ConfigError, InputError

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


def composed(cfg: Any, notices: Notices | None = None) -> dict[str, Any]:
    """The final plain config for a Hydra job (env.yaml and config_paths merged, CLI on top; the
    composition's notices go to ``notices``)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    # raw strings: iterating the node would resolve a value such as limit='${x}' as an interpolation
    overrides = OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False)
    cwd = HydraConfig.get().runtime.cwd  # where the command was typed, also with hydra.job.chdir
    return to_plain(merge_config_paths(cfg, overrides, cwd=cwd, notices=notices), notices)


def hydra_app(task: Task, *, config_name: str = "collect", extra_overrides: tuple[str, ...] = ()) -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig

    cdir = conf_dir()
    try:
        check_group_choices(sys.argv[1:], cdir)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    argv = normalize_overrides(sys.argv[1:], config_group_names(cdir), primary_default_groups(cdir, config_name))
    sys.argv = [sys.argv[0], *extra_overrides, *argv]
    codes: list[int] = []
    printed: set[str] = set()  # notices already shown (a multirun composes once per job)

    @hydra.main(config_path=str(cdir), config_name=config_name, version_base="1.3")
    def _main(cfg: Any) -> None:
        notices = Notices()
        try:
            raw = composed(cfg, notices)
            _print_notes(notices, printed)
            codes.append(task(raw, HydraConfig.get()))
        except (ConfigError, InputError) as exc:
            _print_notes(notices, printed)
            print(f"error: {exc}", file=sys.stderr)
            codes.append(EXIT_CONFIG)

    exit_quietly_on_broken_pipe(_main)  # a closed stdout: exit 141, no traceback
    sys.exit(max(codes) if codes else 0)


def _print_notes(notices: Notices, printed: set[str]) -> None:
    for line in unseen(notices, printed):
        print(f"note: {line}", file=sys.stderr, flush=True)
