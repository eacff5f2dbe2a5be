"""Task rows a resource generates from its config, when the run names no input file.

A resource whose ``generated_rows()`` is not None (reasoning_gym; a plugin may do the same) and a
run without ``input_jsonl_fpath``: the rows are written to ``<output stem>_generated_inputs.jsonl``
beside the output (temporary file + fsync + rename: never a torn file) and that file is the run's
input, scanned, fingerprinted and streamed like any other. The same config gives the same bytes,
so the input fingerprint of a resumed run matches; the resource's config and library versions are
in the run manifest (resource/routing.py ``fingerprint``), so resume refuses a changed generator.

While an earlier run's files are there and ``overwrite`` is not set (a resume, or a run that
``plan_run`` will refuse), an existing generated file is kept as it is: it is exactly what the
earlier rows were collected from, and the manifest check decides whether the run may go on.
Otherwise the file is (re)written when its bytes differ.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import orjson

from gym_rollouts.config.schema import CollectConfig
from gym_rollouts.engine.outputs import OutputPaths
from gym_rollouts.errors import ConfigError
from gym_rollouts.resource.base import Resource
from gym_rollouts.resource.routing import EnvironmentTable

log = logging.getLogger(__name__)
GENERATED_SUFFIX = "generated_inputs.jsonl"


def generated_path(cfg: CollectConfig) -> Path:
    if not cfg.output_jsonl_fpath:
        raise ConfigError("output_jsonl_fpath is not set")
    return OutputPaths(Path(cfg.output_jsonl_fpath).expanduser()).side(GENERATED_SUFFIX)


def generates_inputs(cfg: CollectConfig) -> bool:
    """Whether this run will generate its input (known from the config alone, before the resource is
    made): no ``input_jsonl_fpath`` and a resource class that overrides ``generated_rows`` (a
    factory: one with a true ``generates_inputs`` attribute)."""
    if cfg.input_jsonl_fpath:
        return False
    module_name, _, attr = str(cfg.resource.cls).partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        return False  # making the resource reports it
    if isinstance(target, type) and issubclass(target, Resource):
        return target.generated_rows is not Resource.generated_rows
    return bool(getattr(target, "generates_inputs", False))


def encode_rows(rows: Iterable[Mapping[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(row, option=orjson.OPT_NON_STR_KEYS) + b"\n" for row in rows)


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write the generated tasks to {path}: {exc.strerror or exc}; choose another "
                          f"output_jsonl_fpath, or give input_jsonl_fpath") from None


def _keeps_earlier(cfg: CollectConfig, target: Path) -> bool:
    paths = OutputPaths(Path(str(cfg.output_jsonl_fpath)).expanduser())
    return target.is_file() and not cfg.overwrite and bool(paths.existing())


def write_generated(cfg: CollectConfig, resource: Resource, rows: Iterable[Mapping[str, Any]]) -> Path:
    """The generated input file of this run, written when needed (see module doc)."""
    target = generated_path(cfg)
    if _keeps_earlier(cfg, target):
        log.info("reusing %s: the tasks an earlier run on this output was collected from", target)
        return target
    data = encode_rows(rows)
    if not data:
        raise ConfigError(f"{resource.describe()} generated no tasks: check its resource.params, or give "
                          f"input_jsonl_fpath")
    if not (target.is_file() and target.read_bytes() == data):
        write_atomically(target, data)
    log.info("%s generated %d tasks into %s", resource.describe(), data.count(b"\n"), target)
    return target


async def input_or_generated(cfg: CollectConfig, table: EnvironmentTable,
                             fallback: Callable[[CollectConfig], Path]) -> Path:
    """The run's input: the generated file when the run names no input file and its default resource
    generates rows, else ``fallback(cfg)`` (session.input_path: the given or bundled file)."""
    resource = table.default_resource
    if cfg.input_jsonl_fpath or resource is None:
        return fallback(cfg)
    rows = resource.generated_rows()
    if rows is None:
        return fallback(cfg)
    return await asyncio.to_thread(write_generated, cfg, resource, rows)
