"""``reasoning_gym``: reasoning-gym's procedural tasks, scored by the library's own ``score_answer``.

With no ``input_jsonl_fpath`` the resource generates its tasks from ``resource.params``
(``datasets``: one name or a weighted mix, ``size``, ``seed``; see resource/reasoning_gym_mix.py):
engine/generated_inputs.py writes them beside the output and the run reads that file. An input file
of yours works too: each row names its task in a ``reasoning_gym`` field, either with the entry
itself (``{dataset, entry: {question, answer, metadata}}``, e.g. rows you generated with the library)
or by its place (``{dataset, seed, index}``, optionally ``size`` and ``config``: the entry is made
again). Both forms are checked for every row before any request (unknown datasets with did-you-mean).

Scoring: the answer is cut out of the model's final text by ``answer_format`` (resource/answers.py;
``auto`` by default) and scored by ``dataset.score_answer(answer, entry)`` of the dataset the entry
came from. When the row names the entry's place, the entry is made again by the library (its own
types, not the JSON copy); should it differ from the entry the row carries (another library version,
or one of the few generators that depend on Python's hash seed, e.g. word_ladder, knight_swap in
0.1.25), the row's own entry (what the model was asked) is scored and a warning is logged once. The row records ``extracted_answer`` (null: nothing found; the library scores "no
answer"). A ``score_answer`` that raises gives reward 0 and records ``score_error``.

``system_prompt``: a key of reasoning-gym's ``SYSTEM_PROMPTS`` (``default`` asks for
``<answer>...</answer>``), any text with a space in it, or null (no system message).
The installed reasoning-gym version goes into the run manifest (resume refuses another version).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from typing import Any, Iterator

import orjson

from gym_rollouts.errors import ConfigError
from gym_rollouts.resource.answers import AnswerExtractor
from gym_rollouts.resource.base import Resource, Verification, final_text
from gym_rollouts.resource.optional_libs import installed_version, require
from gym_rollouts.resource.reasoning_gym_mix import BLOCK, Registry, entry_json, generate_blocks, jsonable, parse_mix

log = logging.getLogger(__name__)
DISTRIBUTION = "reasoning-gym"
MAX_CACHED_DATASETS = 1024
_ROW_FORMS = ("{dataset, entry: {question, answer, metadata}} or {dataset, seed, index} (optionally size, "
              "config)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class ReasoningGymResource(Resource):
    name = "reasoning_gym"

    def __init__(self, datasets: Any = "basic_arithmetic", size: int = 100, seed: int = 42,
                 answer_format: str = "auto", answer_pattern: str | None = None,
                 system_prompt: str | None = "default") -> None:
        library = require("reasoning_gym", DISTRIBUTION, self.name)
        self.registry = Registry(library)
        self.specs = parse_mix(datasets, self.registry)
        if not _is_int(size) or size < 1:
            raise ConfigError(f"resource.params.size must be an integer >= 1 (tasks to generate), got {size!r}")
        if not _is_int(seed) or seed < 0:
            raise ConfigError(f"resource.params.seed must be an integer >= 0, got {seed!r}")
        self.size, self.mix_seed = size, seed  # not self.seed: that is the Resource method
        self.extractor = AnswerExtractor(answer_format, answer_pattern)
        self.system_prompt = _system_prompt(system_prompt, library.utils.SYSTEM_PROMPTS)
        for spec in self.specs:  # the library's own config checks, before any request
            self.registry.create(spec.name, spec.config, seed, 1)
        self._datasets: dict[tuple[str, bytes, int, int], Any] = {}
        self._warned_mismatch = False

    # -- tasks ---------------------------------------------------------------------------------------
    def generated_rows(self) -> Iterator[dict[str, Any]]:
        for block in generate_blocks(self.specs, self.registry, self.size, self.mix_seed):
            yield {"responses_create_params": {"input": self.messages(block["entry"]["question"])}, BLOCK: block}

    def messages(self, question: str) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [*system, {"role": "user", "content": question}]

    def library_versions(self) -> dict[str, str]:
        return {DISTRIBUTION: installed_version(DISTRIBUTION)}

    # -- rows ----------------------------------------------------------------------------------------
    def row_problem(self, row: Mapping[str, Any]) -> str | None:
        block = row.get(BLOCK)
        if not isinstance(block, Mapping):
            return (f"no {BLOCK!r} field naming the task (resource reasoning_gym scores rows by it: {_ROW_FORMS}); "
                    f"is this row meant for another environment?")
        problem = self.registry.check_name(block.get("dataset"), f"{BLOCK}.dataset")
        if problem:
            return problem
        problem = self.registry.check_config(block["dataset"], block.get("config") or {}, f"{BLOCK}.config")
        if problem:
            return problem
        entry, index = block.get("entry"), block.get("index")
        if entry is not None and not (isinstance(entry, Mapping) and isinstance(entry.get("question"), str)
                                      and "answer" in entry):
            return f"{BLOCK}.entry must be a mapping with 'question' (text), 'answer' and 'metadata'"
        if index is None:
            return None if entry is not None else f"{BLOCK} names no entry: give {_ROW_FORMS}"
        if not (_is_int(index) and index >= 0 and _is_int(block.get("seed")) and block["seed"] >= 0):
            return f"{BLOCK}: index and seed must be integers >= 0, got index={index!r}, seed={block.get('seed')!r}"
        size = block.get("size")
        if size is not None and not (_is_int(size) and size > index):
            return f"{BLOCK}.size must be an integer > index ({index}), got {size!r}"
        return None

    async def seed(self, row: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
        """(the entry to score against, the dataset whose ``score_answer`` scores it)."""
        block = row[BLOCK]
        name, config, given = block["dataset"], block.get("config") or {}, block.get("entry")
        if block.get("index") is None:
            return dict(given), self._dataset(name, config, 0, 1)
        index = block["index"]
        dataset = self._dataset(name, config, block["seed"], block.get("size") or index + 1)
        made = dataset[index]
        if not isinstance(given, Mapping) or entry_json(made) == entry_json(given):
            return made, dataset
        if not self._warned_mismatch:
            self._warned_mismatch = True
            log.warning("reasoning-gym made another entry for %s seed %s index %s than the row carries (another "
                        "library version, or a generator that depends on PYTHONHASHSEED): the row's own entry is "
                        "scored", name, block["seed"], index)
        return dict(given), dataset

    def _dataset(self, name: str, config: Mapping[str, Any], seed: int, size: int) -> Any:
        key = (name, orjson.dumps(jsonable(config), option=orjson.OPT_SORT_KEYS), seed, size)
        dataset = self._datasets.get(key)
        if dataset is None:
            if len(self._datasets) >= MAX_CACHED_DATASETS:
                self._datasets.clear()
            dataset = self._datasets[key] = self.registry.create(name, config, seed, size)
        return dataset

    async def verify(self, row: Mapping[str, Any], response: Mapping[str, Any],
                     state: tuple[dict[str, Any], Any]) -> Verification:
        entry, dataset = state
        extracted = self.extractor.extract(final_text(response))
        extras: dict[str, Any] = {"extracted_answer": extracted}
        try:
            reward = float(dataset.score_answer(extracted, entry))
        except Exception as exc:  # the library's scorer failed on this answer: reward 0, said in the row
            reward = 0.0
            extras["score_error"] = f"{type(exc).__name__}: {exc}"
        return Verification(reward, extras)


def _system_prompt(value: str | None, known: Mapping[str, str]) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"resource.params.system_prompt must be text, a key of reasoning-gym's SYSTEM_PROMPTS "
                          f"({', '.join(known)}) or null, got {value!r}")
    if value in known:
        return known[value]
    if not any(c.isspace() for c in value.strip()):  # one word: meant as a key
        close = difflib.get_close_matches(value, list(known), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"resource.params.system_prompt: {value!r} is not one of reasoning-gym's SYSTEM_PROMPTS "
                          f"({', '.join(known)}).{hint} A prompt text of your own must contain a space.")
    return value
