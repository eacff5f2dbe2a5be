"""Output file layout of a run: the rows file and its ``<stem>_*`` side files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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

    def all(self) -> list[Path]:
        return [self.rows, self.materialized_inputs, self.failures, self.aggregate_metrics]

    def existing(self) -> list[Path]:
        return [p for p in self.all() if p.exists()]
