"""The run manifest (``<stem>_run.json``) stores no secret: a key inside ``extra_body`` or the
resource's params is ``****`` there, a rotated key does not refuse a resume, and a manifest
written before (holding the key) still matches."""

from __future__ import annotations

from gym_rollouts.config.compose import compose_plain
from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.engine.manifest import differences, run_settings


def _settings(key: str) -> dict:
    cfg = build_collect_config(compose_plain([f"policy_api_key={key}", f"+model.extra_body.hf_token={key}-hf",
                                              "+model.extra_body.max_tokens=9"]))
    return {"input": {"sha256": "x", "path": "in.jsonl", "rows": 1}, "settings": run_settings(cfg, "agent")}


def test_manifest_settings_hold_no_key_and_a_rotated_key_is_the_same_run() -> None:
    first, rotated = _settings("sk-manifest-one"), _settings("sk-manifest-two")
    assert "sk-manifest" not in repr(first)
    assert first["settings"]["model"]["extra_body"] == {"hf_token": "****", "max_tokens": 9}
    assert differences(first, rotated) == []


def test_an_older_manifest_with_the_key_in_it_still_matches() -> None:
    new = _settings("sk-manifest-old")
    old = {**new, "settings": {**new["settings"], "model": {
        **new["settings"]["model"], "extra_body": {"hf_token": "sk-manifest-old-hf", "max_tokens": 9}}}}
    assert differences(old, new) == []
    changed = {**old, "settings": {**old["settings"], "model": {**old["settings"]["model"], "extra_body": {
        "hf_token": "sk-manifest-old-hf", "max_tokens": 10}}}}
    assert differences(changed, new) == ["model.extra_body.max_tokens: 10 -> 9"]
