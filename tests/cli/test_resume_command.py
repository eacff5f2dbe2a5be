"""The resume command printed after an interrupt: a single run spells out its rows file; a
multirun keeps ``-m`` and the output argument as typed and pins the sweep dir."""

from __future__ import annotations

import shlex
from pathlib import Path

from gym_rollouts.cli.collect import resume_command

def test_single_run_spells_out_the_output_path(tmp_path: Path) -> None:
    argv = ["resource=weather", f"output_jsonl_fpath={tmp_path / 'out.jsonl'}", "overwrite=true"]
    args = shlex.split(resume_command(tmp_path / "out.jsonl", argv))[1:]
    assert args == ["resource=weather", f"output_jsonl_fpath={(tmp_path / 'out.jsonl').resolve()}",
                    "resume_from_cache=true"]


def test_multirun_keeps_the_typed_output_and_pins_the_sweep_dir(tmp_path: Path) -> None:
    argv = ["-m", "shard_index=0,1", "num_shards=2", "output_jsonl_fpath=out.jsonl", "hydra.sweep.dir=old"]
    args = shlex.split(resume_command(tmp_path / "out_job0.jsonl", argv, str(tmp_path / "sweep")))[1:]
    assert args == ["-m", "shard_index=0,1", "num_shards=2", "output_jsonl_fpath=out.jsonl",
                    f"hydra.sweep.dir={tmp_path / 'sweep'}", "resume_from_cache=true"]
    assert "out_job0" not in " ".join(args)
