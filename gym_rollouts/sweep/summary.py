"""The sweep summary: one row per job of a multirun with its overrides and key metrics.

Inputs are the per-job records (``sweep_job.json``, written by the callback inside each job) and
each job's ``<stem>_aggregate_metrics.json`` (read through metrics_view, either shape); a job its
launcher lost has a ``LOST`` record (sweep/lost_jobs.py), status ``lost``. Outputs:
``sweep_summary.json``, ``sweep_summary.csv`` and a short text table. pass@k columns appear when
a job's metrics carry them; a figure a job does not have is left empty.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from gym_rollouts.config.secrets import mask_in
from gym_rollouts.engine.outputs import OutputPaths
from gym_rollouts.sweep.metrics_view import key_figures
from gym_rollouts.sweep.paths import JOB_RECORD
from gym_rollouts.sweep.verdict import LOST

SUMMARY_STEM = "sweep_summary"
METRIC_KEYS = ("rollouts", "failures", "mean_reward", "rollouts_per_s", "output_tokens_per_s")


def display_override(override: str) -> str:
    """``++key=v`` / ``+key=v`` as the user typed it: ``key=v``."""
    return override.lstrip("+")


def split_override(override: str) -> tuple[str, str]:
    key, _, value = display_override(override).partition("=")
    return key, value


def read_records(sweep_dir: Path) -> list[dict[str, Any]]:
    """The job records under a sweep dir, by job number."""
    by_job: dict[Any, dict[str, Any]] = {}
    for path in sorted(sweep_dir.rglob(JOB_RECORD)):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        # a job's own record wins over a LOST one its launcher wrote (sweep/lost_jobs.py)
        if record.get("job") not in by_job or by_job[record.get("job")].get("status") == LOST:
            by_job[record.get("job")] = record
    return sorted(by_job.values(), key=lambda r: r.get("job", 0))


def job_row(record: Mapping[str, Any]) -> dict[str, Any]:
    """One summary row: job, overrides, status, metrics (missing metrics stay None)."""
    overrides = " ".join(map(display_override, record.get("overrides", [])))
    row: dict[str, Any] = {"job": record.get("job"), "overrides": overrides}
    rows_path = record.get("output_jsonl_fpath")
    doc: Any = None
    if rows_path and record.get("metrics_written", True):
        try:
            doc = json.loads(OutputPaths(Path(rows_path)).aggregate_metrics.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            doc = None
    figures = key_figures(doc)
    row["status"] = _status(record, figures)
    row.update({k: v for k, v in figures.items() if k != "elapsed_s"})
    row["output_jsonl_fpath"] = rows_path
    if record.get("error"):
        row["error"] = record["error"]
    elif row["status"] == "no_metrics":
        row["error"] = f"this job wrote no aggregate metrics (refused or interrupted?): see {record.get('output_dir')}"
    return row


def _status(record: Mapping[str, Any], figures: Mapping[str, Any]) -> str:
    if record.get("status") == "FAILED":
        return "error"
    if record.get("status") == LOST:
        return "lost"
    if figures.get("rollouts") is None:
        return "no_metrics"
    return "partial" if figures.get("failures") else "ok"


def build_rows(records: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows plus the column order (swept keys get a column each, after ``job``)."""
    records = list(records)
    rows = [job_row(r) for r in records]
    swept = _swept_keys(records)
    for row, record in zip(rows, records):
        values = dict(split_override(o) for o in record.get("overrides", []))
        for key in swept:
            row[key] = values.get(key)
    pass_cols = sorted({k for row in rows for k in row if "pass@" in k}, key=_pass_sort_key)
    columns = ["job", *swept, "status", *METRIC_KEYS, *pass_cols, "overrides", "output_jsonl_fpath"]
    if any("error" in row for row in rows):
        columns.append("error")
    return rows, columns


def _swept_keys(records: list[Mapping[str, Any]]) -> list[str]:
    """Override keys whose value differs between jobs (or is missing in some), in first-seen order."""
    seen: dict[str, set[str | None]] = {}
    per_job = [dict(split_override(o) for o in r.get("overrides", [])) for r in records]
    for values in per_job:
        for key in values:
            seen.setdefault(key, set())
    for key in seen:
        seen[key] = {values.get(key) for values in per_job}
    return [k for k, vals in seen.items() if len(vals) > 1]


def _pass_sort_key(col: str) -> tuple[str, int]:
    prefix, _, k = col.rpartition("pass@")
    return prefix, int(k) if k.isdigit() else 0


def write_summary(sweep_dir: Path, rows: list[dict[str, Any]], columns: list[str]) -> tuple[Path, Path]:
    """Both files, every text masked (a record of an older version may hold a key)."""
    rows = mask_in(rows)
    json_path = sweep_dir / f"{SUMMARY_STEM}.json"
    csv_path = sweep_dir / f"{SUMMARY_STEM}.csv"
    doc = {"sweep_dir": str(sweep_dir), "columns": columns, "jobs": [{c: r.get(c) for c in columns} for r in rows]}
    json_path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    with csv_path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    return json_path, csv_path


_TABLE_SKIP = ("overrides", "output_jsonl_fpath", "error")
_SHORT = {"rollouts_per_s": "rollouts/s", "output_tokens_per_s": "tokens/s", "mean_reward": "reward"}


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A fixed-width text table of the summary (long columns left to the files)."""
    cols = [c for c in columns if c not in _TABLE_SKIP]
    header = [_SHORT.get(c, c.rsplit(".", 1)[-1]) for c in cols]
    body = [[_cell(row.get(c)) for c in cols] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in body]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def summarize_sweep(sweep_dir: Path) -> tuple[list[dict[str, Any]], list[str], tuple[Path, Path]]:
    """Read every job record under ``sweep_dir`` and write the summary files."""
    rows, columns = build_rows(read_records(sweep_dir))
    return rows, columns, write_summary(sweep_dir, rows, columns)
