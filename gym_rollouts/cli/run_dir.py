"""Hydra's output directory must be creatable before Hydra tries (else: a traceback, exit 1).

Hydra creates ``hydra.run.dir`` (``outputs/<date>/<time>`` under the current directory by default;
``hydra.sweep.dir``, ``multirun/...``, with ``-m``) before any job runs, and writes the job's log
and ``.hydra/`` config into it. ``check_output_dir`` looks at the command line Hydra will get and
refuses, with the fix, a directory that cannot be created or written: a current directory that is
not writable (a read-only checkout, a system folder) is the usual case. Commands that run no job
(``--help``, ``--cfg``, ``--info``) and a directory that exists where Hydra writes nothing
(``hydra.output_subdir=null`` with job logging disabled, as ``dump_config`` and ``doctor`` run)
are not checked.
"""

from __future__ import annotations

import os
from pathlib import Path

from gym_rollouts.errors import ConfigError

_NO_JOB_FLAGS = frozenset({"-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info", "-sc",
                           "--shell-completion"})
_MULTIRUN_FLAGS = frozenset({"-m", "--multirun"})
_DEFAULTS = {"hydra.run.dir": "outputs/<date>/<time>", "hydra.sweep.dir": "multirun/<date>/<time>"}


def _overrides(args: list[str]) -> dict[str, str]:
    """key -> value of ``key=value`` arguments (``+``/``++`` stripped, the last one wins)."""
    found: dict[str, str] = {}
    for arg in args:
        if "=" in arg and not arg.startswith("-"):
            key, value = arg.split("=", 1)
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            found[key.lstrip("+")] = value
    return found


def _static_part(value: str) -> Path:
    """The directory part of ``value`` before its first interpolation (``${now:...}``)."""
    if "${" not in value:
        return Path(value)
    prefix = value.split("${", 1)[0]
    return Path(prefix) if prefix.endswith("/") or not prefix else Path(prefix).parent


def _writes_into_existing(overrides: dict[str, str]) -> bool:
    quiet = (overrides.get("hydra.output_subdir") in ("null", "~")
             and overrides.get("hydra/job_logging") == "disabled")
    return not quiet


def check_output_dir(args: list[str], cwd: Path | None = None) -> None:
    """Raise ``ConfigError`` when Hydra could not create or write its output directory (module doc)."""
    if any(arg in _NO_JOB_FLAGS for arg in args):
        return
    overrides = _overrides(args)
    multirun = any(arg in _MULTIRUN_FLAGS for arg in args) or overrides.get("hydra.mode") == "MULTIRUN"
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    cwd = cwd or Path.cwd()
    given = overrides.get(key)
    target = cwd / (_static_part(given) if given is not None else Path(_DEFAULTS[key].split("/", 1)[0]))
    shown = given if given is not None else _DEFAULTS[key]
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == target and not _writes_into_existing(overrides):
        return
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return
    if not existing.is_dir():
        why = f"{existing} is a file, not a directory"
    elif os.statvfs(existing).f_flag & os.ST_RDONLY:
        why = f"{existing} is on a read-only file system"
    else:
        why = f"{existing} is not writable (permission denied)"
    where = f" under {cwd}" if given is None or not Path(given).is_absolute() else ""
    raise ConfigError(
        f"cannot create Hydra's output directory {shown}{where} ({key}; Hydra keeps each run's log and config "
        f"there): {why}. Run collect from a directory you can write to, or pass {key}=<a writable directory>, "
        f"e.g. {key}=/tmp/collect_runs/run1")
