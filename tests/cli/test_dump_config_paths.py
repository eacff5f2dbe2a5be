"""``dump_config`` prints the input file collect would read (the bundled example when
input_jsonl_fpath is null) and says where the rows would go when output_jsonl_fpath is null."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gym_rollouts.cli.dump_config import gives_run_dir, with_comments
from gym_rollouts.engine.session import bundled_dataset


def _comments(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("#")]


@pytest.mark.parametrize("resource", ["arithmetic", "weather"])
def test_null_input_prints_the_bundled_example(run_cli, tmp_path: Path, resource: str) -> None:
    result = run_cli("dump_config", f"resource={resource}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    cfg = yaml.safe_load(result.stdout)
    assert cfg["input_jsonl_fpath"] == str(bundled_dataset(f"{resource}.jsonl"))
    assert Path(cfg["input_jsonl_fpath"]).is_file()
    above = result.stdout.split("\ninput_jsonl_fpath:", 1)[0].splitlines()[-1]
    assert above.startswith("# input_jsonl_fpath: the bundled example dataset") and f"'{resource}'" in above
    assert list(tmp_path.iterdir()) == []


def test_null_output_is_explained_not_invented(run_cli, tmp_path: Path) -> None:
    result = run_cli("dump_config", cwd=tmp_path)
    cfg = yaml.safe_load(result.stdout)
    assert cfg["output_jsonl_fpath"] is None  # collect's run dir is only made when collect starts
    [comment] = [c for c in _comments(result.stdout) if c.startswith("# output_jsonl_fpath")]
    assert "rollouts.jsonl" in comment and "hydra.run.dir=DIR" in comment


def test_run_dir_on_the_command_line_gives_the_output_path(run_cli, tmp_path: Path) -> None:
    for spelling in ("hydra.run.dir", "++hydra.run.dir"):
        result = run_cli("dump_config", f"{spelling}=runs/a", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert yaml.safe_load(result.stdout)["output_jsonl_fpath"] == str(tmp_path / "runs" / "a" / "rollouts.jsonl")


def test_collect_writes_where_dump_config_says(run_cli, tmp_path: Path) -> None:
    dumped = yaml.safe_load(run_cli("dump_config", "hydra.run.dir=runs/b", "limit=1", cwd=tmp_path).stdout)
    ran = run_cli("collect", "hydra.run.dir=runs/b", "limit=1", "progress=off", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert f"Wrote 1 rollouts to {dumped['output_jsonl_fpath']}" in ran.stdout


def test_explicit_paths_are_printed_as_given(run_cli, tmp_path: Path) -> None:
    result = run_cli("dump_config", "input_jsonl_fpath=/data/t.jsonl", "output_jsonl_fpath=/data/o.jsonl", cwd=tmp_path)
    cfg = yaml.safe_load(result.stdout)
    assert (cfg["input_jsonl_fpath"], cfg["output_jsonl_fpath"]) == ("/data/t.jsonl", "/data/o.jsonl")
    assert _comments(result.stdout) == []


def test_a_resource_without_example_says_collect_would_stop(run_cli, tmp_path: Path) -> None:
    result = run_cli("dump_config", "resource.example_dataset=null", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["input_jsonl_fpath"] is None
    assert any("has no example dataset" in c and "input_jsonl_fpath" in c for c in _comments(result.stdout))


@pytest.mark.parametrize(("argv", "expected"), [
    (["hydra.run.dir=x"], True), (["+hydra.run.dir=x"], True), (["++hydra.run.dir=x"], True),
    (["hydra.run.dir_x=1"], False), (["hydra.sweep.dir=x"], False), ([], False), (["--help"], False),
])
def test_gives_run_dir(argv: list[str], expected: bool) -> None:
    assert gives_run_dir(argv) is expected


def test_comments_go_above_top_level_keys_only() -> None:
    text = "a: 1\nb:\n  a: 2\n- a: 3\n"
    assert with_comments(text, {"a": "note"}) == "# note\na: 1\nb:\n  a: 2\n- a: 3\n"
