"""cli/one_compose.py: Hydra composes the config once per command where its mode probe can only
answer "not set", and probes as before where a config or the command line could set the mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gym_rollouts.cli.one_compose import mode_is_unset, override_may_set_mode, sources_are_ours
from gym_rollouts.config.compose import conf_dir

OURS = [("hydra", "hydra.conf"), ("main", str(conf_dir())), ("schema", "")]


@pytest.mark.parametrize("override", ["hydra.mode=MULTIRUN", "+hydra.mode=RUN", "++hydra.mode=RUN", "~hydra.mode",
                                      "hydra={mode:MULTIRUN}", "hydra.searchpath=[file:///x]",
                                      "+hydra.searchpath=[pkg://x]", "hydra.searchpath[0]=file:///x",
                                      "hydra.mode@hydra.mode=RUN"])
def test_overrides_that_may_set_the_mode(override: str) -> None:
    assert override_may_set_mode(override)


@pytest.mark.parametrize("override", ["hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=disabled",
                                      "hydra/launcher=slurm", "hydra.job.chdir=true", "hydra.modes=x",
                                      "model=vllm", "++limit=3", "+experiment=temperature_grid",
                                      "responses_create_params.metadata.mode=x"])
def test_overrides_that_cannot(override: str) -> None:
    assert not override_may_set_mode(override)


def test_sources_only_ours() -> None:
    assert sources_are_ours(OURS, conf_dir())
    assert sources_are_ours([("main", str(conf_dir()) + "/")], conf_dir())
    assert not sources_are_ours([*OURS, ("command-line", "/tmp/x")], conf_dir())  # --config-dir
    assert not sources_are_ours([*OURS, ("plugin", "pkg://someone.conf")], conf_dir())  # a search-path plugin
    assert not sources_are_ours([("main", "/elsewhere/conf")], conf_dir())
    assert not sources_are_ours([("hydra", "other.conf")], conf_dir())


def test_mode_is_unset_needs_both() -> None:
    assert mode_is_unset(OURS, ["hydra.run.dir=.", "++limit=2"], conf_dir())
    assert not mode_is_unset(OURS, ["hydra.mode=RUN"], conf_dir())
    assert not mode_is_unset([*OURS, ("command-line", "/tmp/x")], [], conf_dir())


def _package(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("# @package"):
            return line.split("@package", 1)[1].strip()
    return None


def test_no_file_of_conf_sets_the_mode() -> None:
    """What the skipped probe relies on: no file of conf/ sets hydra.mode or hydra.searchpath."""
    files = sorted(conf_dir().rglob("*.yaml"))
    assert len(files) > 10
    for path in files:
        text = path.read_text()
        package = _package(text)
        assert package != "hydra", path  # would put its keys at hydra.*
        data = yaml.safe_load(text) or {}
        in_global = package == "_global_" or path.parent == conf_dir()
        hydra = data.get("hydra") if in_global and isinstance(data, dict) else None
        if isinstance(hydra, dict):
            assert not {"mode", "searchpath"} & set(hydra), path


COUNTING = """
import sys
import hydra._internal.hydra as internal
calls = []
original = internal.Hydra.compose_config
def counted(self, *args, **kwargs):
    calls.append(kwargs.get("run_mode"))
    return original(self, *args, **kwargs)
internal.Hydra.compose_config = counted
sys.argv = ["dump_config", *sys.argv[1:]]
from gym_rollouts.cli.entry import dump_config
try:
    dump_config()
finally:
    print("COMPOSES", len(calls), file=sys.stderr)
"""


def _dump(tmp_path: Path, *args: str) -> tuple[str, int]:
    res = subprocess.run([sys.executable, "-c", COUNTING, *args], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    counts = [int(line.split()[1]) for line in res.stderr.splitlines() if line.startswith("COMPOSES")]
    assert len(counts) == 1, res.stderr
    return res.stdout, counts[0]


def test_one_compose_and_the_same_config(tmp_path: Path) -> None:
    """A plain command composes once; where the command line names hydra.mode, or another config
    directory is searched, Hydra probes first as before (two); the config printed is the same."""
    knobs = ["limit=3", "model.temperature=0.5", "resource=weather"]
    once, n_once = _dump(tmp_path, *knobs)
    probed, n_probed = _dump(tmp_path, *knobs, "hydra.mode=RUN")
    extra = tmp_path / "more_conf"
    extra.mkdir()
    searched, n_searched = _dump(tmp_path, *knobs, "--config-dir", str(extra))
    assert (n_once, n_probed, n_searched) == (1, 2, 2)
    assert once == probed == searched
    assert yaml.safe_load(once)["limit"] == 3


def test_the_probe_is_put_back() -> None:
    from hydra._internal.hydra import Hydra

    from gym_rollouts.cli.one_compose import probe_skipped

    original = Hydra.get_mode
    with probe_skipped(conf_dir()):
        assert Hydra.get_mode is not original
    assert Hydra.get_mode is original
    with pytest.raises(RuntimeError), probe_skipped(conf_dir()):
        raise RuntimeError("boom")
    assert Hydra.get_mode is original
