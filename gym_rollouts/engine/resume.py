"""Starting a run on its output path: fresh, overwrite, or resume; and the resume state.

Rules: a fresh run refuses an existing output (``overwrite=true`` removes it first, manifest
first). ``resume_from_cache=true`` with no previous output starts fresh; with one, the manifest
must match the current inputs and settings (else a ``ConfigError`` lists the differences), and
files without a manifest are refused (we cannot tell what they came from).

The resume state is rebuilt from the files alone, so it is right after any interruption: torn
last lines are repaired; every output row's ``_gr.seq`` marks that job done (a bitmap: one bit per
job); every failure row counts one attempt of its ``seq`` (the failures file is the ledger); the
number of complete materialized-input lines says which jobs were already materialized (the file
is written in stream order, so it is always a prefix of the expanded inputs).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from gym_rollouts.config.schema import CollectConfig
from gym_rollouts.engine.manifest import check_same_run, read_manifest, write_manifest
from gym_rollouts.engine.outputs import OutputPaths
from gym_rollouts.errors import ConfigError
from gym_rollouts.io.os_errors import explain
from gym_rollouts.io.jsonl import Repair, count_lines, iter_json_lines, repair_tail
from gym_rollouts.records import EXTRAS

log = logging.getLogger(__name__)
TERMINAL_FAILURE = "_ng_failure_terminal"
TERMINAL_ATTEMPTS = 1 << 30  # a terminal failure uses up every attempt, whatever max_attempts


class Bitmap:
    """A growable set of small non-negative ints, one bit each."""

    __slots__ = ("_bits", "count")

    def __init__(self) -> None:
        self._bits = bytearray()
        self.count = 0

    def add(self, n: int) -> bool:
        """Set bit ``n``; False when it was already set."""
        byte, bit = divmod(n, 8)
        if byte >= len(self._bits):
            self._bits.extend(bytes(byte - len(self._bits) + 1 + (len(self._bits) >> 2)))
        mask = 1 << bit
        if self._bits[byte] & mask:
            return False
        self._bits[byte] |= mask
        self.count += 1
        return True

    def __contains__(self, n: int) -> bool:
        byte = n >> 3
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << (n & 7)))


@dataclass
class ResumeState:
    """What earlier runs on this output already did (empty for a fresh run)."""

    done: Bitmap = field(default_factory=Bitmap)
    attempts: dict[int, int] = field(default_factory=dict)  # seq -> failed attempts recorded
    materialized: int = 0
    recorded_bad_lines: set[int] = field(default_factory=set)
    prior_failure_rows: int = 0
    duplicates: int = 0
    repairs: list[Repair] = field(default_factory=list)

    def failed_attempts(self, seq: int) -> int:
        return self.attempts.get(seq, 0)


def plan_run(cfg: CollectConfig, paths: OutputPaths, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """Decide how this run uses ``paths`` (see module doc) without writing anything: the stored
    manifest when it resumes an earlier run, None when it starts fresh. Refusals raise."""
    if cfg.resume_from_cache and cfg.overwrite:
        raise ConfigError("resume_from_cache=true and overwrite=true contradict each other: pass one of them")
    existing = paths.existing()
    if not cfg.resume_from_cache:
        if existing and not cfg.overwrite:
            raise ConfigError(
                f"{existing[0]} already exists. Pass resume_from_cache=true to continue that run, "
                f"overwrite=true to start clean, or choose another output_jsonl_fpath.")
        return None
    if not paths.manifest.exists():
        if existing:
            raise ConfigError(
                f"resume refused: {existing[0]} exists but the run manifest {paths.manifest} does not, so "
                f"there is no telling which inputs and settings produced it. Pass overwrite=true to start "
                f"clean, or choose another output_jsonl_fpath.")
        log.info("resume_from_cache=true and no previous output at %s: starting a new run", paths.rows)
        return None
    stored = read_manifest(paths.manifest)
    check_same_run(paths.manifest, stored, manifest)
    paths.check_appendable()
    return stored


def begin_fresh(paths: OutputPaths, manifest: dict[str, Any]) -> None:
    """Remove a previous run's files (``overwrite=true``; manifest first), write the manifest. The
    caller holds the output's lock (engine/output_lock.py), which is not one of these files. A
    file-system error (no rollout was sent yet) is a ``ConfigError`` that says what to do."""
    try:
        removed = paths.remove_all()
    except OSError as exc:
        raise ConfigError(f"overwrite=true: cannot remove {exc.filename or 'a file'} of the earlier run on "
                          f"{paths.rows}: {explain(exc)}") from None
    if removed:
        log.warning("overwrite=true: removed %s", ", ".join(map(str, removed)))
    try:
        write_manifest(paths.manifest, manifest)
    except OSError as exc:
        with contextlib.suppress(OSError):
            paths.manifest_partial.unlink()  # a partial manifest left by a full disk
        raise ConfigError(f"cannot write the run manifest {paths.manifest} (nothing was sent): {explain(exc)}") from None


def load_state(paths: OutputPaths, on_prior_row: Callable[[dict[str, Any]], None]) -> ResumeState:
    """Repair torn tails and read the previous run's files (see module doc). Each prior output
    row is passed to ``on_prior_row`` (the aggregate metrics cover the whole run)."""
    state = ResumeState()
    for path in paths.line_files():
        repair = repair_tail(path)
        if repair is not None:
            state.repairs.append(repair)
    try:
        for line_no, row in iter_json_lines(paths.rows):
            seq = (row.get(EXTRAS) or {}).get("seq")
            if not isinstance(seq, int):
                raise ConfigError(f"{paths.rows}:{line_no}: row without {EXTRAS}.seq; was this file written "
                                  f"by this version of collect? Pass overwrite=true to start clean.")
            if state.done.add(seq):
                on_prior_row(row)
            else:
                state.duplicates += 1
        for _line_no, failure in iter_json_lines(paths.failures):
            state.prior_failure_rows += 1
            seq = failure.get("seq")
            if isinstance(seq, int):
                state.attempts[seq] = state.attempts.get(seq, 0) + 1
                if failure.get(TERMINAL_FAILURE):  # would fail the same way again (engine/attempts.py)
                    state.attempts[seq] = max(state.attempts[seq], TERMINAL_ATTEMPTS)
            elif isinstance(failure.get("input_line"), int):
                state.recorded_bad_lines.add(failure["input_line"])
    except ValueError as exc:
        raise ConfigError(f"cannot resume: {exc} (only a torn last line can be repaired)") from None
    for seq in list(state.attempts):
        if seq in state.done:
            del state.attempts[seq]  # retried and succeeded later: no longer needed
    state.materialized = count_lines(paths.materialized_inputs)
    if state.duplicates:
        log.warning("%s holds %d duplicate rows (same %s.seq); the first of each is kept in the metrics",
                    paths.rows, state.duplicates, EXTRAS)
    return state
