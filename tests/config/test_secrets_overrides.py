"""Secrets typed on the command line become ``${oc.env:...}`` references before Hydra sees them;
references, placeholders and other arguments pass unchanged; what cannot be hidden is refused
without repeating the value; the resume command repeats references and names the variable."""

from __future__ import annotations

import shlex
import uuid
from pathlib import Path

import pytest

from gym_rollouts.cli.collect import resume_command
from gym_rollouts.config.secret_overrides import (export_secrets, given_literally, hide_secret_overrides,
                                                  secret_variable)
from gym_rollouts.config.secrets import mask_secrets
from gym_rollouts.errors import ConfigError

POLICY_VAR = "GYM_ROLLOUTS_SECRET_POLICY_API_KEY"


@pytest.mark.parametrize("arg, hidden_as, value", [
    ("policy_api_key=sk-abc123", f"policy_api_key=${{oc.env:{POLICY_VAR}}}", "sk-abc123"),
    ("+policy_api_key=sk-abc123", f"+policy_api_key=${{oc.env:{POLICY_VAR}}}", "sk-abc123"),
    ("++policy_api_key='sk a,b'", f"++policy_api_key=${{oc.env:{POLICY_VAR}}}", "sk a,b"),
    ("policy_api_key=abc+/def==", f"policy_api_key=${{oc.env:{POLICY_VAR}}}", "abc+/def=="),  # Hydra cannot parse it
    ("policy_api_key=123456789", f"policy_api_key=${{oc.env:{POLICY_VAR}}}", "123456789"),
    ("model.api_key=k-2", "model.api_key=${oc.env:GYM_ROLLOUTS_SECRET_MODEL_API_KEY}", "k-2"),
    ('+model.extra_body.headers.Authorization="Bearer t"',
     "+model.extra_body.headers.Authorization=${oc.env:GYM_ROLLOUTS_SECRET_MODEL_EXTRA_BODY_HEADERS_AUTHORIZATION}",
     "Bearer t"),
    ("+hf_token=hf_x", "+hf_token=${oc.env:GYM_ROLLOUTS_SECRET_HF_TOKEN}", "hf_x"),
])
def test_literal_secrets_become_references(arg: str, hidden_as: str, value: str) -> None:
    result = hide_secret_overrides(["limit=2", arg])
    assert result.args == ["limit=2", hidden_as]
    assert [(s.variable, s.value) for s in result.hidden] == [(hidden_as.split(":", 1)[1].rstrip("}"), value)]
    assert value not in repr(result)  # a HiddenSecret never shows its value


@pytest.mark.parametrize("arg", [
    "policy_api_key=${oc.env:MY_KEY}", "policy_api_key='${oc.env:MY_KEY,fallback}'", "policy_api_key=null",
    "policy_api_key=EMPTY", "policy_api_key=", "model.api_key=${policy_api_key}", "limit=3",
    "max_output_tokens=5", "responses_create_params.max_output_tokens=7", "model=vllm_for_training",
    "hydra/launcher=local_parallel", "-m", "--cfg", "~policy_api_key", "eos_token=</s>",
    "policy_api_key=${oc.env:A},${oc.env:B}",
    "model.extra_body={headers: {X-Team: rl}, max_tokens: 9}",
])
def test_everything_else_passes_as_typed(arg: str) -> None:
    result = hide_secret_overrides([arg])
    assert result.args == [arg] and result.hidden == ()


def test_references_of_secret_keys_are_reported_for_masking() -> None:
    result = hide_secret_overrides(["policy_api_key=${oc.env:MY_KEY}", "-m", "hf_token=${oc.env:A},${oc.env:B}",
                                    "limit=${oc.env:NOT_A_SECRET}"])
    assert result.referenced == ("MY_KEY", "A", "B")


def test_export_puts_each_literal_into_its_variable_and_registers_every_secret() -> None:
    earlier, literal, referenced = (f"sk-{uuid.uuid4().hex}" for _ in range(3))
    env = {"MY_KEY": referenced}
    export_secrets(hide_secret_overrides([f"policy_api_key={earlier}", f"policy_api_key={literal}",
                                          "model.api_key=${oc.env:MY_KEY}"]), env)
    assert env[POLICY_VAR] == literal  # the later override wins, as in Hydra
    assert mask_secrets(f"{literal} {referenced}") == "**** ****"


@pytest.mark.parametrize("args, names", [
    (["-m", "policy_api_key=sk-one,sk-two"], "policy_api_key is swept over literal values"),
    (["-m", "policy_api_key=${oc.env:A},sk-two"], "policy_api_key is swept over literal values"),
    (["+model.extra_body={headers: {Authorization: Bearer sk-inline}}"],
     "holds the secret model.extra_body.headers.Authorization written inline"),
    (["resource.params={judge_api_key: sk-inline, url: x}"], "holds the secret resource.params.judge_api_key"),
    (["policy_api_key=[sk-inline]"], "policy_api_key= holds the secret policy_api_key"),
])
def test_what_cannot_be_hidden_is_refused_without_the_value(args: list[str], names: str) -> None:
    with pytest.raises(ConfigError) as err:
        hide_secret_overrides(args)
    assert names in str(err.value)
    assert "sk-one" not in str(err.value) and "sk-two" not in str(err.value) and "sk-inline" not in str(err.value)
    assert "${oc.env:" in str(err.value)  # the fix


def test_variable_names_follow_the_key() -> None:
    assert secret_variable("policy_api_key") == POLICY_VAR
    assert secret_variable("environments.judge.X-Api-Key") == "GYM_ROLLOUTS_SECRET_ENVIRONMENTS_JUDGE_X_API_KEY"


def test_given_literally_finds_only_our_own_variables() -> None:
    args = [f"policy_api_key=${{oc.env:{POLICY_VAR}}}", "model.api_key=${oc.env:MY_KEY}",
            "hf_token=${oc.env:GYM_ROLLOUTS_SECRET_POLICY_API_KEY}"]  # not the variable of hf_token
    assert given_literally(args) == [("policy_api_key", POLICY_VAR)]


def test_resume_command_repeats_a_reference_and_names_the_variable_of_a_literal(tmp_path: Path) -> None:
    rows = tmp_path / "out.jsonl"
    literal = resume_command(rows, ["policy_api_key=sk-never-printed", "limit=4"])
    command, note = literal.split("\n    ")
    assert "sk-never-printed" not in literal
    assert shlex.split(command)[1:] == [f"policy_api_key=${{oc.env:{POLICY_VAR}}}", "limit=4",
                                        f"output_jsonl_fpath={rows.resolve()}", "resume_from_cache=true"]
    assert f"export {POLICY_VAR}=<the key>" in note and "policy_api_key" in note
    # a resume command built from the already hidden arguments says the same
    assert resume_command(rows, hide_secret_overrides(["policy_api_key=sk-never-printed", "limit=4"]).args) == literal
    typed = resume_command(rows, ["policy_api_key=${oc.env:MY_KEY}"], str(tmp_path / "sweep"))
    assert "\n" not in typed
    assert shlex.split(typed)[1:3] == ["-m", "policy_api_key=${oc.env:MY_KEY}"]
