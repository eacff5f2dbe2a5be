"""Fresh / overwrite / resume decisions and the resume state rebuilt from the files alone."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.engine.manifest import build_manifest, differences
from gym_rollouts.engine.outputs import OutputPaths
from gym_rollouts.engine.resume import Bitmap, begin_fresh, load_state, plan_run
from gym_rollouts.errors import ConfigError
from gym_rollouts.io.source import scan_file


def _cfg(tmp_path: Path, **over):
    return build_collect_config({"output_jsonl_fpath": str(tmp_path / "out.jsonl"), **over})


def _manifest(tmp_path: Path, cfg, text: str = "q") -> dict:
    src = tmp_path / "in.jsonl"
    src.write_bytes(orjson.dumps({"responses_create_params": {"input": text}}) + b"\n")
    return build_manifest(cfg, scan_file(src), "agent")


def _lines(path: Path, rows: list, tail: bytes = b"") -> None:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows) + tail)


def test_bitmap() -> None:
    bits = Bitmap()
    assert bits.add(0) and bits.add(1_000_003) and not bits.add(0)
    assert 0 in bits and 1_000_003 in bits and 5 not in bits and 10**9 not in bits
    assert bits.count == 2


def test_fresh_run_refuses_existing_output_and_overwrite_starts_clean(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    paths = OutputPaths(tmp_path / "out.jsonl")
    assert plan_run(cfg, paths, _manifest(tmp_path, cfg)) is None  # nothing there yet
    paths.failures.write_text('{"seq": 0}\n')  # a stale ledger must never leak into a new run
    with pytest.raises(ConfigError, match="already exists.*resume_from_cache=true.*overwrite=true"):
        plan_run(cfg, paths, _manifest(tmp_path, cfg))
    over = _cfg(tmp_path, overwrite=True)
    assert plan_run(over, paths, _manifest(tmp_path, over)) is None
    begin_fresh(paths, _manifest(tmp_path, over))
    assert paths.existing() == [paths.manifest]


def test_resume_without_previous_output_starts_fresh(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, resume_from_cache=True)
    assert plan_run(cfg, OutputPaths(tmp_path / "out.jsonl"), _manifest(tmp_path, cfg)) is None


def test_resume_refuses_files_without_a_manifest(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, resume_from_cache=True)
    (tmp_path / "out.jsonl").write_text("")
    with pytest.raises(ConfigError, match="manifest .* does not"):
        plan_run(cfg, OutputPaths(tmp_path / "out.jsonl"), _manifest(tmp_path, cfg))


def test_resume_refuses_changed_inputs_or_settings(tmp_path: Path) -> None:
    first = _cfg(tmp_path, num_repeats=2, responses_create_params={"temperature": 0.5})
    paths = OutputPaths(tmp_path / "out.jsonl")
    begin_fresh(paths, _manifest(tmp_path, first))
    same = _cfg(tmp_path, num_repeats=2, responses_create_params={"temperature": 0.5}, resume_from_cache=True,
                num_samples_in_parallel=3, max_attempts=5)  # "how", not "what": allowed to change
    assert plan_run(same, paths, _manifest(tmp_path, same)) is not None
    changed = _cfg(tmp_path, num_repeats=4, responses_create_params={"temperature": 0.9}, resume_from_cache=True)
    with pytest.raises(ConfigError) as err:
        plan_run(changed, paths, _manifest(tmp_path, changed, text="other"))
    text = str(err.value)
    assert "resume refused" in text and "num_repeats: 2 -> 4" in text
    assert "responses_create_params.temperature: 0.5 -> 0.9" in text and "input rows changed" in text


def test_differences_lists_nothing_for_the_same_run(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    assert differences(_manifest(tmp_path, cfg), _manifest(tmp_path, cfg)) == []


def test_load_state_repairs_tails_and_counts_attempts(tmp_path: Path) -> None:
    paths = OutputPaths(tmp_path / "out.jsonl")
    _lines(paths.rows, [{"_gr": {"seq": 0}, "reward": 1}, {"_gr": {"seq": 3}, "reward": 0}], tail=b'{"_gr": {"se')
    _lines(paths.failures, [{"seq": 1}, {"seq": 1}, {"seq": 3}, {"seq": None, "input_line": 9}], tail=b'{"seq"')
    _lines(paths.materialized_inputs, [{"i": i} for i in range(5)], tail=b'{"i": 5')
    seen = []
    state = load_state(paths, seen.append)
    assert [r["_gr"]["seq"] for r in seen] == [0, 3]
    assert 0 in state.done and 3 in state.done and 1 not in state.done and state.done.count == 2
    assert state.attempts == {1: 2}  # seq 3 failed once, then succeeded: no longer counted
    assert state.recorded_bad_lines == {9} and state.materialized == 5 and len(state.repairs) == 3
    for path in paths.line_files():
        assert path.read_bytes().endswith(b"\n")


def test_load_state_refuses_a_corrupt_middle_line(tmp_path: Path) -> None:
    paths = OutputPaths(tmp_path / "out.jsonl")
    paths.rows.write_bytes(b'{"_gr": {"seq": 0}}\nGARBAGE\n{"_gr": {"seq": 1}}\n')
    with pytest.raises(ConfigError, match=r"out\.jsonl:2"):
        load_state(paths, lambda row: None)
