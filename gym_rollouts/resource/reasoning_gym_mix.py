"""The reasoning-gym task mix: which datasets, with which weights and configs, and the task rows.

``resource.params.datasets`` is one dataset name, a list of names (equal weights) or of
``{name, weight, config}`` mappings, or a mapping ``name -> weight`` / ``name -> {weight, config}``.
Every name is checked against reasoning-gym's registry and every config key against the dataset's
config class (did-you-mean hints) when the resource is made, before any request.

Generation is deterministic: the ``size`` rows are split over the datasets in proportion to their
weights (largest remainder, so a 1:1 mix of 10 is exactly 5 + 5); dataset ``d`` is created with
``create_dataset(name, size=its share, seed=dataset_seed(seed, d), **config)`` and entry ``i`` is
``dataset[i]``; the rows are then interleaved by ``random.Random(seed).shuffle``. Each row names its
dataset, config, seed, size and index (so the entry can be made again, with the library's own
types, when it is scored) and carries the entry itself (question, answer, JSON-ready metadata).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import random
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterator

import orjson

from gym_rollouts.errors import ConfigError

BLOCK = "reasoning_gym"  # the row field that names the task
_SET_BY_US = frozenset({"seed", "size"})


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    weight: float = 1.0
    config: Mapping[str, Any] = field(default_factory=dict)


def jsonable(value: Any) -> Any:
    """``value`` as JSON-ready data, the same on every run (tuples -> lists, sets -> sorted lists)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((jsonable(v) for v in value), key=lambda v: orjson.dumps(v, option=orjson.OPT_SORT_KEYS))
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return jsonable(value.item())
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays
        return jsonable(value.tolist())
    return str(value)


class Registry:
    """reasoning-gym's dataset registry, with the checks that name what to use instead."""

    def __init__(self, library: Any) -> None:
        self.library = library
        self.datasets: Mapping[str, tuple[type, type]] = library.factory.DATASETS

    def check_name(self, name: Any, where: str) -> str | None:
        """Why ``name`` is not a reasoning-gym dataset (None when it is one)."""
        if name == "composite":
            return (f"{where}: reasoning-gym's 'composite' dataset is what a weighted mix in "
                    f"resource.params.datasets does: list the datasets there, e.g. "
                    f"'resource.params.datasets={{basic_arithmetic: 2, chain_sum: 1}}'")
        if not isinstance(name, str) or name not in self.datasets:
            close = difflib.get_close_matches(str(name), list(self.datasets), n=3)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            return (f"{where}: {name!r} is not a reasoning-gym dataset.{hint} ({len(self.datasets)} datasets; "
                    f"list them with: python -c \"import reasoning_gym; print(sorted(reasoning_gym.factory.DATASETS))\")")
        return None

    def config_fields(self, name: str) -> list[str]:
        config_cls = self.datasets[name][1]
        return [f.name for f in dataclasses.fields(config_cls)] if dataclasses.is_dataclass(config_cls) else []

    def check_config(self, name: str, config: Any, where: str) -> str | None:
        """Why ``config`` is not a config of dataset ``name`` (None when its keys are known)."""
        if not isinstance(config, Mapping):
            return f"{where}: the config of {name} must be a mapping of its config fields, got {config!r}"
        known = [f for f in self.config_fields(name) if f not in _SET_BY_US]
        for key in config:
            if key in _SET_BY_US:
                return (f"{where}: {key!r} of {name} is set by resource.params.{key} (the whole mix), not in its "
                        f"config")
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                return f"{where}: {name} has no config field {key!r}.{hint} Its fields: {', '.join(known)}"
        return None

    def create(self, name: str, config: Mapping[str, Any], seed: int, size: int) -> Any:
        """``create_dataset(name, seed=, size=, **config)``; a config the library refuses -> ConfigError."""
        try:
            return self.library.create_dataset(name, seed=seed, size=size, **dict(config))
        except (AssertionError, ValueError, TypeError) as exc:
            raise ConfigError(f"reasoning-gym refuses dataset {name} with config {dict(config)}: "
                              f"{type(exc).__name__}: {exc}") from None


def parse_mix(datasets: Any, registry: Registry, where: str = "resource.params.datasets") -> list[DatasetSpec]:
    """The mix named by ``resource.params.datasets`` (see module doc); errors name the fix."""
    if isinstance(datasets, str):
        items: list[tuple[Any, Any]] = [(datasets, 1.0)]
    elif isinstance(datasets, Mapping):
        items = list(datasets.items())
    elif isinstance(datasets, (list, tuple)):
        items = []
        for entry in datasets:
            if isinstance(entry, Mapping):
                unknown = set(entry) - {"name", "weight", "config"}
                if "name" not in entry or unknown:
                    raise ConfigError(f"{where}: a list entry is a dataset name or {{name, weight, config}}, got "
                                      f"{dict(entry)}")
                items.append((entry["name"], {k: v for k, v in entry.items() if k != "name"}))
            else:
                items.append((entry, 1.0))
    else:
        items = []
    if not items:
        raise ConfigError(f"{where}: name at least one reasoning-gym dataset, e.g. {where}=[basic_arithmetic,"
                          f"chain_sum] or '{where}={{basic_arithmetic: 2, chain_sum: 1}}'")
    specs = [_spec(name, value, registry, where) for name, value in items]
    seen = [(s.name, orjson.dumps(jsonable(s.config), option=orjson.OPT_SORT_KEYS)) for s in specs]
    twice = sorted({name for (name, cfg) in seen if seen.count((name, cfg)) > 1})
    if twice:
        raise ConfigError(f"{where}: {', '.join(twice)} listed twice with the same config (it would get the same "
                          f"tasks twice): give it one entry with the sum of the weights")
    return specs


def _spec(name: Any, value: Any, registry: Registry, where: str) -> DatasetSpec:
    problem = registry.check_name(name, where)
    if problem:
        raise ConfigError(problem)
    weight, config = value, {}
    if isinstance(value, Mapping):
        unknown = set(value) - {"weight", "config"}
        if unknown:
            raise ConfigError(f"{where}.{name}: expected a weight or {{weight, config}}, got keys {sorted(value)}")
        weight, config = value.get("weight", 1.0), value.get("config") or {}
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
        raise ConfigError(f"{where}.{name}: the weight must be a number > 0, got {weight!r}")
    problem = registry.check_config(name, config, f"{where}.{name}")
    if problem:
        raise ConfigError(problem)
    return DatasetSpec(name, float(weight), dict(config))


def shares(weights: list[float], size: int) -> list[int]:
    """``size`` split in proportion to ``weights`` (largest remainder; ties to the earlier one)."""
    total = sum(weights)
    exact = [size * w / total for w in weights]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: size - sum(counts)]:
        counts[i] += 1
    return counts


def dataset_seed(seed: int, spec: DatasetSpec) -> int:
    """The seed of one dataset of the mix: depends on the run's seed, the name and the config, not on
    the order of the mix (stable across processes: no ``hash()``)."""
    key = orjson.dumps([spec.name, jsonable(spec.config)], option=orjson.OPT_SORT_KEYS)
    return (seed + zlib.crc32(key)) % 2**32


def entry_json(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An entry as a row carries it: question, answer and JSON-ready metadata."""
    return {"question": entry.get("question"), "answer": jsonable(entry.get("answer")),
            "metadata": jsonable(entry.get("metadata") or {})}


def task_block(spec: DatasetSpec, seed: int, size: int, index: int, entry: Mapping[str, Any]) -> dict[str, Any]:
    """The row field naming one task and carrying its entry."""
    return {"dataset": spec.name, "config": jsonable(spec.config), "seed": seed, "size": size, "index": index,
            "entry": entry_json(entry)}


def generate_blocks(specs: list[DatasetSpec], registry: Registry, size: int, seed: int) -> Iterator[dict[str, Any]]:
    """The task blocks of the whole mix, in their deterministic order (see module doc)."""
    counts = shares([s.weight for s in specs], size)
    made = [(spec, dataset_seed(seed, spec), count) for spec, count in zip(specs, counts) if count > 0]
    datasets = [registry.create(spec.name, spec.config, d_seed, count) for spec, d_seed, count in made]
    order = [(d, i) for d, (_, _, count) in enumerate(made) for i in range(count)]
    random.Random(seed).shuffle(order)
    for d, i in order:
        spec, d_seed, count = made[d]
        yield task_block(spec, d_seed, count, i, datasets[d][i])
