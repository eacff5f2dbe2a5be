"""Each console script's ``--help`` says what the command does, its knobs, exit codes and docs
(conf/hydra/help/<command>.yaml for the Hydra apps, argparse for merge_rollouts), and what it
states about defaults, options and exit codes matches the code and conf/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from gym_rollouts.cli import app, collect, merge
from gym_rollouts.config.compose import compose_plain, conf_dir

REPO = Path(__file__).resolve().parents[2]
CONF = conf_dir()


@pytest.fixture(scope="module")
def helps(tmp_path_factory) -> dict[str, str]:
    """The --help text of every command (one subprocess each), checked to exit 0 quietly."""
    import os
    import subprocess
    import sys

    cwd = tmp_path_factory.mktemp("help")
    out = {}
    for name in ("collect", "dump_config", "doctor", "merge_rollouts"):
        script = Path(sys.executable).with_name(name)
        cmd = [str(script)] if script.is_file() else [sys.executable, "-m", f"gym_rollouts.cli.{name}"]
        proc = subprocess.run([*cmd, "--help"], cwd=cwd, capture_output=True, text=True, timeout=120,
                              env={k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"})
        assert proc.returncode == 0 and proc.stderr == "", (name, proc.stderr)
        out[name] = proc.stdout
    assert list(cwd.iterdir()) == []  # --help writes nothing
    return out


def test_help_leads_with_what_the_command_does(helps) -> None:
    for name, first in (("collect", "collect: run every task row"),
                        ("dump_config", "dump_config: print the config"),
                        ("doctor", "doctor: check the run's vLLM servers"),
                        ("merge_rollouts", "usage: merge_rollouts")):
        assert helps[name].startswith(first), helps[name][:200]
        assert "powered by Hydra" not in helps[name]
    assert "merge_rollouts: combine the outputs" in helps["merge_rollouts"]


@pytest.mark.parametrize("name", ["collect", "dump_config", "doctor"])
def test_hydra_apps_keep_the_generated_group_listing(helps, name: str) -> None:
    options = ", ".join(sorted(p.stem for p in (CONF / "model").glob("*.yaml")))
    assert f"\nmodel: {options}\n" in helps[name]
    assert f"{name} --hydra-help" in helps[name]


def test_collect_help_names_the_main_knobs_and_spellings(helps) -> None:
    text = helps["collect"]
    for knob in ("input_jsonl_fpath=", "output_jsonl_fpath=", "limit=", "num_repeats=", "num_samples_in_parallel=",
                 "responses_create_params.", "policy_base_url=", "policy_api_key=", "policy_model_name=",
                 "config_paths=", "resume_from_cache=", "overwrite=", "max_attempts=", "on_bad_input="):
        assert f"\n  {knob}" in text, knob
    assert "`+key=value`" in text and "embedded demo backend" in text
    assert "-m " in text and "dump_config <same arguments>" in text and "doctor <same arguments>" in text


def _entries(text: str, section: str) -> dict[str, str]:
    """knob -> its description (continuation lines joined) in one section of the help."""
    body = text.split(f"\n{section}\n", 1)[1].split("\n\n", 1)[0]
    entries: dict[str, str] = {}
    current = None
    for ln in body.splitlines():
        m = re.match(r"^  (\S+?)=\S*\s+(.*)$", ln)
        if m and not ln.startswith("   "):
            current = m.group(1)
            entries[current] = m.group(2)
        elif current and ln.startswith("   "):
            entries[current] += " " + ln.strip()
    return entries


def _dotted(cfg: dict, key: str):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def _spelled(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


@pytest.mark.parametrize(("name", "section"), [("collect", "Main knobs:"), ("doctor", "Its own flags and settings:")])
def test_stated_defaults_are_the_composed_defaults(helps, name: str, section: str) -> None:
    defaults = compose_plain([])
    entries = _entries(helps[name], section)
    checked = 0
    for knob, text in entries.items():
        m = re.search(r"\(default: ([^\s);,]+)", text)
        if not m:
            continue
        assert m.group(1) == _spelled(_dotted(defaults, knob)), (knob, text)
        checked += 1
    assert checked >= (12 if name == "collect" else 2)


def test_collect_help_lists_every_option_of_each_group(helps) -> None:
    defaults = yaml.safe_load((CONF / "collect.yaml").read_text())["defaults"]
    chosen = {next(iter(d)): next(iter(d.values())) for d in defaults if isinstance(d, dict)}
    listed = dict(re.findall(r"^  \+?([\w/]+)=([\w|]+)$", helps["collect"], flags=re.M))
    assert {"model", "resource", "router", "servers", "experiment", "hydra/launcher"} <= set(listed)
    for group, options in listed.items():
        names = options.split("|")
        assert sorted(names) == sorted(p.stem for p in (CONF / group).glob("*.yaml")), group
        if group in chosen:
            assert names[0] == chosen[group], f"{group}: the first option listed must be the default"


def test_collect_help_exit_codes_match_the_code(helps) -> None:
    text = helps["collect"].split("\nExit codes:\n", 1)[1]
    codes = {int(c) for c in re.findall(r"^  (\d+) ", text, flags=re.M)}
    assert codes == {0, app.EXIT_CONFIG, collect.EXIT_PARTIAL, collect.EXIT_INTERRUPTED, app.EXIT_BROKEN_PIPE}


def test_doctor_help_mentions_json_and_its_exit_codes(helps) -> None:
    text = helps["doctor"]
    assert "--json" in text and "doctor.json=true" in text
    exit_codes = text.split("\nExit codes:\n", 1)[1]
    assert {int(c) for c in re.findall(r"^  (\d+) ", exit_codes, flags=re.M)} == {0, 1, 2, 141}
    assert "docs/doctor.md" in text and "embedded demo backend" in text


def test_dump_config_help(helps) -> None:
    text = helps["dump_config"]
    assert "secrets" in text and "+key=value" in text and "config_paths" in text
    assert "input_jsonl_fpath" in text and "hydra.run.dir=DIR" in text
    assert {int(c) for c in re.findall(r"^  (\d+) ", text.split("\nExit codes:\n", 1)[1], flags=re.M)} == {0, 2, 141}


def test_merge_help_exit_codes_match_the_code(helps) -> None:
    text = helps["merge_rollouts"]
    assert "--overwrite" in text and "-o OUTPUT" in text and "docs/sweeps.md" in text
    codes = {int(c) for c in re.findall(r"^  (\d+) ", text.split("\nexit codes:\n", 1)[1], flags=re.M)}
    assert codes == {merge.EXIT_OK, merge.EXIT_MISMATCH, merge.EXIT_USAGE, merge.EXIT_PARTIAL, app.EXIT_BROKEN_PIPE}


def test_docs_named_in_help_exist(helps) -> None:
    for text in helps.values():
        for doc in re.findall(r"docs/\w+\.md", text):
            assert (REPO / doc).is_file(), doc


def test_collect_default_run_dir_is_new_per_run() -> None:
    """collect --help says a null output_jsonl_fpath lands in a new outputs/<date>/<time>/ per run."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("collect", return_hydra_config=True)
    assert OmegaConf.to_container(cfg.hydra.run, resolve=False)["dir"].startswith("outputs/${now:")


def test_hydra_help_still_works(run_cli) -> None:
    result = run_cli("collect", "--hydra-help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Hydra (") and "== Flags ==" in result.stdout
