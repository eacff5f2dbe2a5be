"""resource=reasoning_gym with the real library: our reward equals reasoning-gym's own score of the
extracted answer, the mix is exact and reproducible, rows are checked up front, config errors
name the fix, the library version reaches the run manifest, and a missing extra names the extra."""

from __future__ import annotations

import sys

import orjson
import pytest
import reasoning_gym
from reasoning_gym.utils import extract_answer

from gym_rollouts.adapter.reply import message_item
from gym_rollouts.config.compose import compose_plain
from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.errors import ConfigError
from gym_rollouts.resource import optional_libs
from gym_rollouts.resource.reasoning_gym import ReasoningGymResource
from gym_rollouts.resource.reasoning_gym_mix import shares
from gym_rollouts.resource.routing import EnvironmentTable

MIX = {"basic_arithmetic": 2, "spell_backward": 1, "propositional_logic": 1}


def response(text: str) -> dict:
    return {"output": [message_item(text)]}


def library_entry(block: dict) -> tuple[dict, object]:
    """The entry and dataset as the library itself makes them from a row's block."""
    dataset = reasoning_gym.create_dataset(block["dataset"], seed=block["seed"], size=block["size"],
                                           **block["config"])
    return dataset[block["index"]], dataset


async def test_reward_is_the_librarys_own_score_of_the_tagged_answer() -> None:
    resource = ReasoningGymResource(datasets=MIX, size=8, seed=3, answer_format="answer_tag")
    rows = list(resource.generated_rows())
    checked = set()
    for row in rows:
        entry, dataset = library_entry(row["reasoning_gym"])
        gold = str(entry["answer"])
        for text in (f"<answer>{gold}</answer>", f"<answer>{gold} and more</answer>", "<answer>nonsense</answer>",
                     f"reasoning first\n<answer> {gold[::-1]} </answer>", "no tags at all", ""):
            verdict = await resource.verify(row, response(text), await resource.seed(row))
            expected = dataset.score_answer(extract_answer(text), entry)  # the library's extraction + score
            assert verdict.reward == expected, (row["reasoning_gym"]["dataset"], text)
            assert verdict.extras["extracted_answer"] == extract_answer(text)
            checked.add(expected)
    assert {0.0, 1.0} <= checked and any(0.0 < s < 1.0 for s in checked)  # partial credit seen too


async def test_default_extraction_reads_the_answer_a_plain_reply_states() -> None:
    resource = ReasoningGymResource(datasets="basic_arithmetic", size=3, seed=5)
    for row in resource.generated_rows():
        entry, dataset = library_entry(row["reasoning_gym"])
        verdict = await resource.verify(row, response(f"The answer is {entry['answer']}."), await resource.seed(row))
        assert verdict.reward == dataset.score_answer(str(entry["answer"]), entry) == 1.0
        assert verdict.extras == {"extracted_answer": entry["answer"]}


def test_the_mix_is_split_exactly_by_weight_and_reproducible() -> None:
    assert shares([2, 1, 1], 8) == [4, 2, 2]
    assert shares([1, 1, 1], 10) == [4, 3, 3]
    assert shares([1, 1000], 3) == [0, 3]
    rows = list(ReasoningGymResource(datasets=MIX, size=8, seed=3).generated_rows())
    counts = {name: sum(r["reasoning_gym"]["dataset"] == name for r in rows) for name in MIX}
    assert counts == {"basic_arithmetic": 4, "spell_backward": 2, "propositional_logic": 2}
    again = list(ReasoningGymResource(datasets=dict(reversed(MIX.items())), size=8, seed=3).generated_rows())
    assert sorted(orjson.dumps(r) for r in again) == sorted(orjson.dumps(r) for r in rows)  # order of the mix
    other = list(ReasoningGymResource(datasets=MIX, size=8, seed=4).generated_rows())
    assert [r["reasoning_gym"]["entry"] for r in other] != [r["reasoning_gym"]["entry"] for r in rows]
    for row in rows:  # every row carries the library's entry and the prompt asks its question
        block = row["reasoning_gym"]
        assert library_entry(block)[0]["question"] == block["entry"]["question"]
        assert row["responses_create_params"]["input"][-1] == {"role": "user", "content": block["entry"]["question"]}
        assert "<answer>" in row["responses_create_params"]["input"][0]["content"]  # the library's default prompt


@pytest.mark.parametrize(("params", "message"), [
    ({"datasets": "basic_arithmetc"}, "Did you mean 'basic_arithmetic'"),
    ({"datasets": ["chain_sum", "leg_countin"]}, "Did you mean 'leg_counting'"),
    ({"datasets": {"chain_sum": {"config": {"min_term": 2}}}}, "no config field 'min_term'. Did you mean 'min_terms'"),
    ({"datasets": {"chain_sum": {"config": {"seed": 2}}}}, "set by resource.params.seed"),
    ({"datasets": {"chain_sum": {"config": {"min_terms": 5, "max_terms": 2}}}}, "reasoning-gym refuses"),
    ({"datasets": {"chain_sum": 0}}, "weight must be a number > 0"),
    ({"datasets": []}, "name at least one reasoning-gym dataset"),
    ({"datasets": ["chain_sum", "chain_sum"]}, "listed twice"),
    ({"datasets": "composite"}, "weighted mix in resource.params.datasets"),
    ({"size": 0}, "size must be an integer >= 1"),
    ({"system_prompt": "defualt"}, "Did you mean 'default'"),
    ({"answer_format": "boxd"}, "Did you mean 'boxed'"),
])
def test_config_errors_name_the_fix(params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        ReasoningGymResource(**params)


@pytest.mark.parametrize(("block", "message"), [
    (None, "no 'reasoning_gym' field"),
    ({"dataset": "chain_sums", "index": 0, "seed": 1}, "Did you mean 'chain_sum'"),
    ({"dataset": "chain_sum"}, "names no entry"),
    ({"dataset": "chain_sum", "index": -1, "seed": 1}, "integers >= 0"),
    ({"dataset": "chain_sum", "index": 3, "seed": 1, "size": 3}, "size must be an integer > index"),
    ({"dataset": "chain_sum", "entry": {"answer": "1"}}, "'question' (text)"),
    ({"dataset": "chain_sum", "config": {"min_term": 1}, "index": 0, "seed": 1}, "Did you mean 'min_terms'"),
])
def test_rows_that_cannot_be_scored_are_refused(block: dict | None, message: str) -> None:
    row = {"responses_create_params": {"input": "q"}} | ({"reasoning_gym": block} if block is not None else {})
    problem = ReasoningGymResource().row_problem(row)
    assert problem is not None and message in problem


async def test_rows_of_yours_by_entry_or_by_place() -> None:
    resource = ReasoningGymResource()
    made = reasoning_gym.create_dataset("chain_sum", seed=11, size=5)
    entry = made[2]
    by_place = {"reasoning_gym": {"dataset": "chain_sum", "seed": 11, "size": 5, "index": 2}}
    by_entry = {"reasoning_gym": {"dataset": "chain_sum", "entry": orjson.loads(orjson.dumps(entry))}}
    for row in (by_place, by_entry):
        assert resource.row_problem(row) is None
        verdict = await resource.verify(row, response(f"The answer is {entry['answer']}."), await resource.seed(row))
        assert verdict.reward == made.score_answer(entry["answer"], entry) == 1.0


async def test_an_entry_the_library_makes_differently_is_scored_as_the_row_carries_it() -> None:
    resource = ReasoningGymResource(datasets="chain_sum", size=1, seed=1)
    row = next(iter(resource.generated_rows()))
    row["reasoning_gym"]["entry"] = {"question": "What is 1 + 1?", "answer": "2", "metadata": {}}  # as if changed
    entry, _ = await resource.seed(row)
    assert entry == {"question": "What is 1 + 1?", "answer": "2", "metadata": {}}
    assert (await resource.verify(row, response("The answer is 2."), (entry, _))).reward == 1.0


def test_the_library_version_goes_into_the_run_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = build_collect_config(compose_plain(["resource=reasoning_gym", "resource.params.size=2"]))
    before = EnvironmentTable(cfg).fingerprint()
    assert before["library_versions"] == {"reasoning-gym": "0.1.25"}
    monkeypatch.setattr(optional_libs.importlib.metadata, "version", lambda dist: "9.9.9")
    assert EnvironmentTable(cfg).fingerprint()["library_versions"] == {"reasoning-gym": "9.9.9"}
    plain = build_collect_config(compose_plain(["resource=exact_match"]))
    assert "library_versions" not in EnvironmentTable(plain).fingerprint()  # earlier manifests still match


def test_a_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'gym_rollouts\[tasks\]'"):
        ReasoningGymResource()
