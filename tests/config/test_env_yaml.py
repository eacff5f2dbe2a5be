"""``env.yaml`` in the working directory, read as NeMo Gym reads it: precedence
(config_paths files < env.yaml < command line, as ``ng_dump_config`` shows), ``config_paths`` from
env.yaml, nested ``config_paths``, the notices, NeMo Gym's top-level keys, malformed files."""

from __future__ import annotations

from pathlib import Path

import pytest

from gym_rollouts.config.compose import compose_plain
from gym_rollouts.config.nemo_keys import settle_top_level
from gym_rollouts.config.notices import Notices
from gym_rollouts.config.schema import build_collect_config
from gym_rollouts.errors import ConfigError

ENV = "policy_base_url: http://env-host:8000/v1\npolicy_api_key: sk-env\npolicy_model_name: env-model\nnum_repeats: 5\n"
FILE = "policy_base_url: http://file-host:8000/v1\nnum_repeats: 2\nlimit: 9\n"


def _dir(tmp_path: Path, env: str | None = ENV, **files: str) -> Path:
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    if env is not None:
        (tmp_path / "env.yaml").write_text(env)
    return tmp_path


def _compose(cwd: Path, *overrides: str) -> tuple[dict, Notices]:
    notices = Notices()
    return compose_plain(list(overrides), cwd=cwd, notices=notices), notices


@pytest.mark.parametrize(("env", "files", "overrides", "expected"), [
    # env.yaml alone fills our knobs (the fleet the user meant is the one contacted)
    (ENV, {}, [], {"policy_base_url": "http://env-host:8000/v1", "num_repeats": 5, "limit": None}),
    # env.yaml wins over config_paths files (NeMo Gym merges it after them) ...
    (ENV, {"a": FILE}, ["+config_paths=[a.yaml]"],
     {"policy_base_url": "http://env-host:8000/v1", "num_repeats": 5, "limit": 9}),
    # ... and the command line wins over both, whatever its spelling and position
    (ENV, {"a": FILE}, ["num_repeats=7", "config_paths=[a.yaml]", "++policy_base_url=http://cli:1/v1"],
     {"policy_base_url": "http://cli:1/v1", "num_repeats": 7, "limit": 9}),
    (ENV, {}, ["+limit=1"], {"num_repeats": 5, "limit": 1}),
    # no env.yaml: files over conf/, command line over files (unchanged behaviour)
    (None, {"a": FILE}, ["config_paths=[a.yaml]"], {"policy_base_url": "http://file-host:8000/v1", "num_repeats": 2}),
    # config_paths from env.yaml when the command line gives none
    (ENV + "config_paths: [a.yaml]\n", {"a": FILE}, [],
     {"config_paths": ["a.yaml"], "num_repeats": 5, "limit": 9}),
    # the command line's config_paths replaces env.yaml's
    (ENV + "config_paths: [a.yaml]\n", {"a": FILE, "b": "limit: 4\n"}, ["+config_paths=[b.yaml]"],
     {"config_paths": ["b.yaml"], "limit": 4}),
    # a file's own config_paths are loaded after the list, later wins, the list shows them all
    (None, {"b": "num_samples_in_parallel: 11\nconfig_paths: [c.yaml]\n", "c": "num_samples_in_parallel: 22\n"},
     ["+config_paths=[b.yaml]"], {"config_paths": ["b.yaml", "c.yaml"], "num_samples_in_parallel": 22}),
    # each file once, even when files name each other
    (None, {"b": "config_paths: [c.yaml]\nlimit: 1\n", "c": "config_paths: [b.yaml]\nlimit: 2\n"},
     ["+config_paths=[b.yaml]"], {"config_paths": ["b.yaml", "c.yaml"], "limit": 2}),
])
def test_precedence(tmp_path: Path, env, files, overrides, expected):
    raw, _ = _compose(_dir(tmp_path, env, **files), *overrides)
    for key, value in expected.items():
        assert raw[key] == value, (key, raw[key])


def test_model_yaml_interpolations_follow_env_yaml(tmp_path: Path):
    model = ("policy_model:\n  responses_api_models:\n    vllm_model:\n      entrypoint: app.py\n"
             "      base_url: ${policy_base_url}\n      api_key: ${policy_api_key}\n"
             "      model: ${policy_model_name}\n      return_token_id_information: true\n"
             "      uses_reasoning_parser: true\n")
    cwd = _dir(tmp_path, ENV + "config_paths: [m.yaml]\n", m=model)
    cfg = build_collect_config(_compose(cwd)[0])
    assert cfg.model.base_url == ("http://env-host:8000/v1",)
    assert (cfg.model.api_key, cfg.model.model, cfg.model.return_token_id_information) == ("sk-env", "env-model", True)
    assert not cfg.uses_embedded_backend


def test_loading_is_one_notice_naming_the_file(tmp_path: Path):
    _, notices = _compose(_dir(tmp_path))
    assert len(notices) == 1
    assert notices.lines[0].startswith(f"loaded {(tmp_path / 'env.yaml').resolve()} ")
    bare = tmp_path / "bare"
    bare.mkdir()
    assert len(_compose(bare)[1]) == 0


def test_env_yaml_is_read_from_the_given_directory_only(tmp_path: Path):
    (tmp_path / "env.yaml").write_text(ENV)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    raw, notices = _compose(elsewhere)
    assert raw["policy_base_url"] is None and len(notices) == 0


def test_not_applicable_keys_are_removed_and_reported_once(tmp_path: Path):
    env = ENV + ("hf_token: hf_secret\nwandb_project: p\nwandb_name: n\nwandb_api_key: wk\nverbose: true\n"
                 "uv_venv_dir: /x\nskip_venv_if_present: true\ndefault_host: 0.0.0.0\ndry_run: false\n")
    raw, notices = _compose(_dir(tmp_path, env), "+port_range_low=10001", "+json=true")
    for key in ("hf_token", "wandb_project", "wandb_name", "wandb_api_key", "verbose", "uv_venv_dir",
                "skip_venv_if_present", "default_host", "dry_run", "port_range_low", "json"):
        assert key not in raw
    lines = [ln for ln in notices if "not applicable" in ln]
    assert len(lines) == 1, notices
    for key in ("hf_token", "wandb_project", "wandb_api_key", "dry_run", "port_range_low", "json"):
        assert key in lines[0]
    build_collect_config(raw)  # nothing left that the schema refuses


def test_head_server_is_kept(tmp_path: Path):
    raw, notices = _compose(_dir(tmp_path, ENV + "head_server:\n  host: 10.0.0.3\n  port: 11000\n"))
    assert build_collect_config(raw).head_server == {"host": "10.0.0.3", "port": 11000}
    assert not any("head_server" in ln for ln in notices if "not applicable" in ln)
    assert build_collect_config(compose_plain([])).head_server is None


def test_not_applicable_keys_still_resolve_interpolations(tmp_path: Path):
    env = ENV + "hf_token: hf_x\nresource:\n  params:\n    token_from_env: ${hf_token}\n"
    raw, _ = _compose(_dir(tmp_path, env), "resource=exact_match")
    assert raw["resource"]["params"]["token_from_env"] == "hf_x" and "hf_token" not in raw


@pytest.mark.parametrize(("env", "needle"), [
    ("skip_verification: true\n", "skip_verification=True is not supported"),
    ("token_id_capture:\n  enabled: true\n  dir: /tmp/x\n", "token_id_capture="),
    ("rollout_collection_driver: my.mod:run\n", "rollout_collection_driver="),
])
def test_top_level_keys_we_cannot_honour_are_refused(tmp_path: Path, env: str, needle: str):
    with pytest.raises(ConfigError) as info:
        _compose(_dir(tmp_path, ENV + env))
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("env", ["skip_verification: false\n", "token_id_capture: {enabled: false}\n",
                                 "rollout_collection_driver: null\n", "skip_verification_reward: 1.0\n"])
def test_their_no_op_values_are_accepted(tmp_path: Path, env: str):
    raw, notices = _compose(_dir(tmp_path, ENV + env))
    key = env.split(":", 1)[0]
    assert key not in raw and any(key in ln for ln in notices)


@pytest.mark.parametrize(("text", "needles"), [
    ("policy_base_url: [http://a/v1\nlimit: 2\n", ("env.yaml: YAML syntax error in", "env.yaml line ")),
    ("- a\n- b\n", ("env.yaml", "must hold a mapping")),
    ("limit: ${nowhere}\n", ("(at limit)",)),
])
def test_malformed_env_yaml_is_one_line_naming_file_and_line(tmp_path: Path, text: str, needles):
    with pytest.raises(ConfigError) as info:
        _compose(_dir(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_unknown_key_in_env_yaml_gets_the_hint(tmp_path: Path):
    with pytest.raises(ConfigError, match="Did you mean 'num_repeats'"):
        build_collect_config(_compose(_dir(tmp_path, ENV + "num_repets: 3\n"))[0])


def test_missing_relative_config_path_says_where_we_looked(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        _compose(_dir(tmp_path, ENV + "config_paths: [responses_api_models/vllm_model/configs/vllm_model.yaml]\n"))
    message = str(info.value)
    assert "file not found" in message and str(tmp_path) in message and "install directory" in message


def test_config_paths_must_be_paths(tmp_path: Path):
    with pytest.raises(ConfigError, match="config_paths must be a list of file paths"):
        _compose(_dir(tmp_path, ENV + "config_paths: [{a: 1}]\n"))


@pytest.mark.parametrize("text", [
    "model:\n  extra_body:\n    _inherit_from: policy_model\n",
    "limit: ${inherit_from:num_repeats}\n",
    "model:\n  chat_template_kwargs: ${copy:x.y}\n",
])
def test_nemo_gym_directives_are_refused(tmp_path: Path, text: str):
    with pytest.raises(ConfigError, match="directive .* is not supported"):
        _compose(_dir(tmp_path, None, d=text), "+config_paths=[d.yaml]")


def test_unset_value_names_the_key(tmp_path: Path):
    """(A ``???`` merged over a value that conf/ sets keeps that value: OmegaConf's merge, NeMo Gym's too.)"""
    with pytest.raises(ConfigError, match=r"responses_create_params.temperature is unset \('\?\?\?'\)"):
        _compose(_dir(tmp_path, "responses_create_params:\n  temperature: ???\n"))


def test_reserved_keys_in_a_config_paths_file_are_reported(tmp_path: Path):
    raw, notices = _compose(_dir(tmp_path, None, f="limit: 3\nhead_server_deps: [ray]\nuv_cache_dir: /c\n"),
                            "+config_paths=[f.yaml]")
    assert raw["limit"] == 3 and "head_server_deps" not in raw and "uv_cache_dir" not in raw
    assert any("head_server_deps" in ln and "uv_cache_dir" in ln for ln in notices)


@pytest.mark.parametrize(("plain", "known", "left", "reported"), [
    ({"hf_token": "x", "limit": 1}, {"limit"}, {"limit": 1}, ["hf_token"]),
    ({"dry_run": True, "zzz": 1}, set(), {"zzz": 1}, ["dry_run"]),  # unknown keys are the schema's business
    ({"disable_aggregation": True}, {"disable_aggregation"}, {"disable_aggregation": True}, []),  # ours wins
    ({"skip_verification": None, "json": True}, set(), {}, ["skip_verification", "json"]),
])
def test_settle_top_level(plain, known, left, reported):
    notices = Notices()
    settle_top_level(plain, frozenset(known), notices)
    assert plain == left
    assert len(notices) == (1 if reported else 0)
    for key in reported:
        assert f"{key} (" in notices.lines[0] or f"{key}, " in notices.lines[0]
