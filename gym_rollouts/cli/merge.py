"""``merge_rollouts``: combine shard outputs into one rows file sorted by (task, rollout).

    merge_rollouts multirun/2026-11-30/12-00-00 -o all.jsonl      # every output under a sweep dir
    merge_rollouts out_job0.jsonl out_job1.jsonl -o all.jsonl      # or name the rows files

Writes ``all.jsonl`` plus its side files (materialized inputs, failures, recomputed aggregate
metrics). Exit codes: 0 every expected rollout has a row; 3 merged, but some rollouts had failed in
their shard (see the failures file); 1 the shards do not add up (nothing written); 2 usage error;
141 stdout closed before the summary was printed (``--help`` exits 0 then).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gym_rollouts.cli.app import exit_quietly_on_broken_pipe
from gym_rollouts.engine.outputs import OutputPaths
from gym_rollouts.sweep.merge import MergeError, discover, plan_merge, write_merge
from gym_rollouts.sweep.metrics_view import key_figures

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


DESCRIPTION = """\
merge_rollouts: combine the outputs of several collect jobs (the shards of a sweep, e.g.
collect -m shard_index=0,1,2,3 num_shards=4) into one rows file sorted by (task, rollout), plus
its side files: materialized inputs, failures, and aggregate metrics recomputed over all rows.
It refuses, writing nothing, when shards overlap, a rollout appears twice, or an expected
rollout has neither a row nor a failure record."""

EPILOG = """\
examples:
  merge_rollouts multirun/2026-11-30/12-00-00 -o all.jsonl     every output under a sweep dir
  merge_rollouts out_job0.jsonl out_job1.jsonl -o all.jsonl     or name the rows files

exit codes:
  0    every expected rollout has a row
  1    the shards do not add up (overlap, duplicate or missing rollouts): nothing written
  2    usage error (bad arguments, no collect outputs found, output exists without --overwrite)
  3    merged, but some rollouts had failed in their shard (see <output stem>_failures.jsonl)
  141  stdout was closed before the summary was printed (the merged files are complete)

docs: docs/sweeps.md ("Sharding a big dataset"), README.md ("Sweeps and clusters")."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="merge_rollouts", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", type=Path,
                        help="shard rows files, or directories (e.g. a Hydra sweep dir) searched for outputs")
    parser.add_argument("-o", "--output", required=True, type=Path, help="merged rows file (side files go beside it)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing merged output")
    return parser.parse_args(argv)


def run(argv: list[str]) -> int:
    args = parse_args(argv)
    output = OutputPaths(args.output.expanduser())
    existing = output.existing()
    if existing and not args.overwrite:
        print(f"error: {existing[0]} already exists (pass --overwrite to replace it)", file=sys.stderr)
        return EXIT_USAGE
    shards = discover([p.expanduser() for p in args.inputs], exclude=output.rows)
    if not shards:
        print(f"error: no collect outputs found in {' '.join(map(str, args.inputs))}", file=sys.stderr)
        return EXIT_USAGE
    plan = plan_merge(shards)
    try:
        metrics = write_merge(plan, output)
    except MergeError as exc:
        print(f"error: {exc}\nnothing was written.", file=sys.stderr)
        return EXIT_MISMATCH
    s = key_figures(metrics)
    reward = "n/a" if s["mean_reward"] is None else f"{s['mean_reward']:.4f}"
    print(f"Merged {s['rollouts']} rollouts from {len(shards)} shard output(s) into {output.rows}")
    print(f"  failures: {s['failures']}  mean reward: {reward}  metrics: {output.aggregate_metrics}")
    if s["failures"]:
        print(f"  {s['failures']} rollouts had failed in their shard: see {output.failures}")
        return EXIT_PARTIAL
    return EXIT_OK


def main() -> None:
    argv = sys.argv[1:]
    sys.exit(exit_quietly_on_broken_pipe(lambda: run(argv)))


if __name__ == "__main__":
    main()
