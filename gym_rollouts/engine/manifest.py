"""The run manifest ``<stem>_run.json``: what a run's output was produced from.

It holds the SHA-256 of the input lines used (after ``limit``) and every setting that changes
*what* is collected (``limit``, ``num_repeats``, ``responses_create_params``, agent, resource,
model and sampling settings, the shard). Settings that only change *how* (concurrency, transport, router,
servers, ``max_attempts``, progress) are left out, so a resumed run may change them. Resume
compares the manifest with the current run and refuses, naming each difference, when they differ.
Written atomically (temporary file + rename) before any output row.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Mapping

import orjson

from gym_rollouts.config.redact import redact
from gym_rollouts.config.schema import CollectConfig
from gym_rollouts.errors import ConfigError
from gym_rollouts.io.source import InputScan
from gym_rollouts.sweep.shard import shard_of

FORMAT = 1
_MODEL_NOT_FINGERPRINTED = ("base_url", "api_key")
_LOCATION_PARAMS = ("url", "head_url")


def run_settings(cfg: CollectConfig, agent_name: str | None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The settings that decide what a run collects (JSON-ready, see module doc); ``extra`` adds
    what the engine derived (environments without their URLs, the prompt template, ...). Secret
    values (a key in ``extra_body`` or ``resource.params``) are ``****``: the file is not a
    place for them, and a rotated key does not make a different run."""
    model = {k: v for k, v in dataclasses.asdict(cfg.model).items() if k not in _MODEL_NOT_FINGERPRINTED}
    shard = shard_of(cfg)
    settings = {
        "limit": cfg.limit,
        "num_repeats": cfg.num_repeats,
        "responses_create_params": dict(cfg.responses_create_params),
        "agent_name": agent_name,
        "agent": dataclasses.asdict(cfg.agent),
        "resource": _resource_settings(cfg),
        "model": model,
        "shard": {"index": shard.index, "count": shard.count},
        **(extra or {}),
    }
    return redact(orjson.loads(orjson.dumps(settings, option=orjson.OPT_NON_STR_KEYS)))


def _resource_settings(cfg: CollectConfig) -> dict[str, Any]:
    """The resource config without where its servers are (an environment restarted on other ports
    is the same environment; its served tools are checked again on every run)."""
    resource = dataclasses.asdict(cfg.resource)
    resource["params"] = {k: v for k, v in resource["params"].items() if k not in _LOCATION_PARAMS}
    return resource


def build_manifest(cfg: CollectConfig, scan: InputScan, agent_name: str | None,
                   extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "input": {"path": str(scan.path), "sha256": scan.sha256, "rows": scan.rows},
        "settings": run_settings(cfg, agent_name, extra),
        "created_at": time.time(),
    }


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("wb") as fh:
        fh.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the run manifest {path}: {exc}. Pass overwrite=true to start "
                          f"clean, or choose another output_jsonl_fpath.") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a run manifest this version understands (format "
                          f"{data.get('format') if isinstance(data, dict) else '?'})")
    return data


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences between a stored manifest and the current run's."""
    found = []
    if old["input"]["sha256"] != new["input"]["sha256"]:
        found.append(f"the input rows changed ({old['input']['path']}: {old['input']['rows']} rows, "
                     f"sha256 {old['input']['sha256'][:12]}... -> {new['input']['path']}: "
                     f"{new['input']['rows']} rows, sha256 {new['input']['sha256'][:12]}...)")
    before, after = _flatten(redact(old["settings"])), _flatten(new["settings"])  # older files held keys
    for key in sorted(set(before) | set(after)):
        if before.get(key, "<unset>") != after.get(key, "<unset>"):
            found.append(f"{key}: {before.get(key, '<unset>')!r} -> {after.get(key, '<unset>')!r}")
    return found


def check_same_run(path: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    found = differences(old, new)
    if found:
        raise ConfigError(
            f"resume refused: {path} records a run with different inputs or settings:\n  "
            + "\n  ".join(found)
            + "\nRerun with the original inputs and settings to finish that run, pass overwrite=true "
              "to discard it and start clean, or choose another output_jsonl_fpath."
        )


def check_served_model(path: Path, old: dict[str, Any], served: str) -> None:
    before = old.get("served_model")
    if before is not None and before != served:
        raise ConfigError(
            f"resume refused: {path} records a run against model {before!r}, but the servers now serve "
            f"{served!r}. Point policy_base_url at the original model to finish that run, pass "
            f"overwrite=true to start clean, or choose another output_jsonl_fpath.")
