"""Output file layout of a run: the rows file and its ``<stem>_*`` side files.

``<stem>.jsonl`` rows, ``<stem>_materialized_inputs.jsonl`` the expanded inputs,
``<stem>_failures.jsonl`` one row per failed attempt (the attempt ledger resume reads),
``<stem>_aggregate_metrics.json`` written at the end, ``<stem>_run.json`` the run manifest
(fingerprint of inputs + settings; written first, removed first).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

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
        for path in self.all() + [self.manifest.with_name(self.manifest.name + ".tmp")]:
            if path.exists():
                path.unlink()
                removed.append(path)
        return removed
