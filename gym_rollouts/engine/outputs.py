"""Output file layout of a run: the rows file and its ``<stem>_*`` side files.

``<stem>.jsonl`` rows, ``<stem>_materialized_inputs.jsonl`` the expanded inputs,
``<stem>_failures.jsonl`` one row per failed attempt (the attempt ledger resume reads),
``<stem>_aggregate_metrics.json`` written at the end, ``<stem>_run.json`` the run manifest
(fingerprint of inputs + settings; written first, removed first). ``<stem>_run.lock`` is the
writer's lock (engine/output_lock.py): not a file of the run, so ``all()`` leaves it out and
``overwrite=true`` never deletes it; its holder removes it when the run ends.

Before anything is written, ``check_paths`` refuses what cannot work (a rows path or side file that
is a directory or a device, a folder under a file) and ``create_folder`` makes the output folder
(missing folders are created, as NeMo Gym does), each failure a ``ConfigError`` saying what to do.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from gym_rollouts.errors import ConfigError
from gym_rollouts.io.os_errors import explain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputPaths:
    rows: Path

    @property
    def stem(self) -> Path:
        return self.rows.with_suffix("") if self.rows.suffix == ".jsonl" else self.rows

    def side(self, suffix: str) -> Path:
        return self.stem.parent / f"{self.stem.name}_{suffix}"

    @property
    def materialized_inputs(self) -> Path:
        return self.side("materialized_inputs.jsonl")

    @property
    def failures(self) -> Path:
        return self.side("failures.jsonl")

    @property
    def aggregate_metrics(self) -> Path:
        return self.side("aggregate_metrics.json")

    @property
    def manifest(self) -> Path:
        return self.side("run.json")

    @property
    def manifest_partial(self) -> Path:
        """The manifest being written (engine/manifest.py writes it there, then renames it)."""
        return self.manifest.with_name(self.manifest.name + ".tmp")

    @property
    def lock(self) -> Path:
        return self.side("run.lock")

    @property
    def folder(self) -> Path:
        return self.rows.parent

    def line_files(self) -> list[Path]:
        """The append-only JSONL files (a crash may tear their last line)."""
        return [self.rows, self.failures, self.materialized_inputs]

    def all(self) -> list[Path]:
        return [self.manifest, self.rows, self.materialized_inputs, self.failures, self.aggregate_metrics]

    def existing(self) -> list[Path]:
        return [p for p in self.all() if p.exists()]

    def remove_all(self) -> list[Path]:
        """Delete every file of a previous run, the manifest first: a crash half-way leaves files
        without a manifest, which resume refuses instead of mixing them into a new run."""
        removed = []
        for path in self.all() + [self.manifest_partial]:
            if path.exists():
                path.unlink()
                removed.append(path)
        return removed

    def check_paths(self) -> None:
        """Refuse output paths no run can use, before anything is touched (see module doc)."""
        rows = self.rows
        for path in [*self.all(), self.lock]:
            mode = _mode(path, rows)
            if mode is None:
                continue
            if stat.S_ISDIR(mode) and path == rows:
                raise ConfigError(f"output_jsonl_fpath={rows} is a directory; give the path of a file in it, "
                                  f"e.g. output_jsonl_fpath={rows / 'rollouts.jsonl'}")
            if stat.S_ISDIR(mode):
                raise ConfigError(f"{path} (a file of the run on output_jsonl_fpath={rows}) is a directory: "
                                  f"move it away, or choose another output_jsonl_fpath")
            if not stat.S_ISREG(mode):
                raise ConfigError(f"{path} (a file of the run on output_jsonl_fpath={rows}) is not a regular file "
                                  f"(a device, pipe or socket): choose an output_jsonl_fpath for ordinary files")
        for folder in (self.folder, *self.folder.parents):
            mode = _mode(folder, rows)
            if mode is None and folder.is_symlink():
                raise ConfigError(f"cannot use output_jsonl_fpath={rows}: {folder} is a broken symbolic link "
                                  f"(it points to {os.readlink(folder)}); fix or remove the link")
            if mode is not None:
                if not stat.S_ISDIR(mode):
                    raise ConfigError(f"cannot use output_jsonl_fpath={rows}: {folder} is a file, not a directory, "
                                      f"so the output folder {self.folder} cannot exist; fix the path")
                break

    def create_folder(self) -> None:
        """Create the output folder (and its parents) when missing; a failure says what to do."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create the output folder {self.folder} (output_jsonl_fpath={self.rows}): "
                              f"{explain(exc)}") from None

    def check_appendable(self) -> None:
        """Every existing line file can be opened for writing (a resume repairs and appends to them);
        opening for append changes nothing."""
        for path in self.line_files():
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ConfigError(f"cannot resume on {self.rows}: cannot write {path}: {explain(exc)}") from None


def _mode(path: Path, rows: Path) -> int | None:
    """``path``'s ``st_mode``; None when it is missing (or a parent is missing or a file)."""
    try:
        return path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # permission denied on a parent, a link loop, ...
        raise ConfigError(f"cannot use output_jsonl_fpath={rows}: {path}: {explain(exc)}") from None
