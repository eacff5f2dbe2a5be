"""Task and rollout indices as NeMo Gym assigns them, per-agent repeats, num_repeats_add_seed and
prompt_config templating: the scan and the job stream agree, and no (task, rollout) key repeats."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gym_rollouts.errors import ConfigError
from gym_rollouts.io.prompt import load_prompt_template
from gym_rollouts.io.source import RowRules, iter_jobs, scan_file
from gym_rollouts.io.task_index import SeenIndices, duplicate_hashes


def _row(text: str = "q", **extra) -> dict:
    return {"responses_create_params": {"input": text}, **extra}


def _write(path: Path, rows: list) -> Path:
    path.write_bytes(b"".join((r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in rows))
    return path


def _keys(path: Path, rules: RowRules | None = None, **kw) -> list[tuple[int, int, int]]:
    rules = rules or RowRules(**kw)
    plan = scan_file(path, rules=rules).plan
    return [(j.task_index, j.rollout_index, j.task_size) for j in iter_jobs(path, limit=None, rules=rules, plan=plan)]


def test_rows_sharing_a_task_index_apart_get_distinct_rollout_indices(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", [_row("a", _ng_task_index=5), _row("b", _ng_task_index=5),
                                          _row("c", _ng_task_index=6), _row("d", _ng_task_index=5)])
    keys = _keys(path, repeats=2)
    assert keys == [(5, 0, 6), (5, 1, 6), (5, 2, 6), (5, 3, 6), (6, 0, 2), (6, 1, 2), (5, 4, 6), (5, 5, 6)]
    assert len({k[:2] for k in keys}) == len(keys)


def test_identical_lines_share_a_task_and_later_rows_take_the_next_index(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", [_row("a"), _row("b"), _row("a"), _row("c")])
    assert _keys(path) == [(0, 0, 2), (1, 0, 1), (0, 1, 2), (2, 0, 1)]


def test_implicit_and_explicit_indices_never_collide(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", [_row("x", _ng_task_index=0), _row("a"), _row("b")])
    keys = _keys(path)
    assert keys == [(0, 0, 2), (0, 1, 2), (1, 0, 1)]


def test_per_agent_repeats(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", [_row("a", agent_ref={"name": "big"}), _row("b", agent_ref={"name": "small"})])
    repeats = {"big": 3, "_default": 1}
    rules = RowRules(repeats=lambda row: repeats.get(row["agent_ref"]["name"], repeats["_default"]))
    assert _keys(path, rules) == [(0, 0, 3), (0, 1, 3), (0, 2, 3), (1, 0, 1)]
    assert scan_file(path, rules=rules).owned_rollouts == 4


def test_num_repeats_add_seed_gives_each_rollout_its_index_as_seed(tmp_path: Path) -> None:
    path = _write(tmp_path / "in.jsonl", [_row("a", responses_create_params={
        "input": "a", "metadata": {"extra_body": '{"top_k": 5}'}})])
    rules = RowRules(repeats=3, add_seed=True)
    jobs = list(iter_jobs(path, limit=None, rules=rules))
    extras = [orjson.loads(j.row["responses_create_params"]["metadata"]["extra_body"]) for j in jobs]
    assert extras == [{"top_k": 5, "seed": 0}, {"top_k": 5, "seed": 1}, {"top_k": 5, "seed": 2}]


def test_prompt_config_builds_the_input_from_row_fields(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("system: 'Answer in {lang}.'\nuser: 'Q: {question} {{literal}}'\n")
    prompt = load_prompt_template(str(tmp_path / "p.yaml"))
    row, problem = prompt.apply({"question": "2+2?", "lang": "French", "responses_create_params": {"temperature": 0.5}})
    assert problem is None
    assert row["responses_create_params"] == {"temperature": 0.5, "input": [
        {"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Q: 2+2? {literal}"}]}
    assert "mutually exclusive" in prompt.apply(_row("already"))[1]
    assert "references field 'lang'" in prompt.apply({"question": "x"})[1]
    path = _write(tmp_path / "in.jsonl", [{"question": "a", "lang": "en"}, {"question": "b"}])
    scan = scan_file(path, rules=RowRules(prepare=prompt.apply))
    assert scan.good_rows == 1 and ":2: prompt_config" in scan.problems[0]


@pytest.mark.parametrize("text, message", [("user: [1]\n", "string 'user'"), ("user: x\nother: y\n", "unknown key")])
def test_bad_prompt_files_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_prompt_template(str(tmp_path / "p.yaml"))


def test_duplicate_candidates_and_seen_indices() -> None:
    assert duplicate_hashes([b"a\n", b"b\n", b"a"]) == {hash(b"a")}
    seen = SeenIndices()
    assert [seen.add(n) for n in (3, 3, 1 << 30, 1 << 30, -1, 0)] == [True, False, True, False, True, True]
