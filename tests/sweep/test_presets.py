"""Every launcher preset and every experiment under conf/ composes (Hydra's compose API, in process)."""

import importlib.util

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import OmegaConf

from sweep_helpers import run_cli
from gym_rollouts.config.compose import compose_plain, conf_dir
from gym_rollouts.config.schema import build_collect_config

PRESETS = sorted(p.stem for p in (conf_dir() / "hydra" / "launcher").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))
PLUGIN_CHOICES = ["joblib", "submitit_local", "submitit_slurm"]
_NEEDS = {"ray_cluster": "hydra_plugins.hydra_ray_launcher"}


def _hydra_cfg(overrides):
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(config_name="collect", overrides=overrides, return_hydra_config=True).hydra


def test_presets_and_experiments_exist():
    assert {"local_parallel", "slurm", "ray_cluster"} <= set(PRESETS)
    assert len(EXPERIMENTS) >= 2


@pytest.mark.parametrize("name", PRESETS + PLUGIN_CHOICES)
def test_launcher_preset_composes_to_an_importable_launcher(name):
    needed = _NEEDS.get(name)
    if needed and importlib.util.find_spec(needed) is None:
        pytest.skip(f"{needed} is not installed (extra 'ray', not part of 'test')")
    launcher = _hydra_cfg([f"hydra/launcher={name}"]).launcher
    cls = get_class(launcher._target_)
    assert cls.__name__.endswith("Launcher")
    assert OmegaConf.to_container(launcher, resolve=False)


def test_slurm_preset_sets_the_documented_fields():
    launcher = _hydra_cfg(["hydra/launcher=slurm", "hydra.launcher.partition=cpu"]).launcher
    assert launcher.partition == "cpu"
    assert launcher.timeout_min == 720 and launcher.cpus_per_task == 2 and launcher.array_parallelism == 8
    assert launcher._target_.endswith("SlurmLauncher")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_validates(name):
    cfg = build_collect_config(compose_plain([f"+experiment={name}"]))
    assert cfg.num_repeats >= 1
    params = _hydra_cfg([f"+experiment={name}"]).sweeper.params
    assert params, f"experiment {name} should record its sweep in hydra.sweeper.params"


def test_experiment_launcher_can_be_swapped_for_slurm():
    hydra_cfg = _hydra_cfg(["+experiment=shards_local", "hydra/launcher=slurm"])
    assert hydra_cfg.launcher._target_.endswith("SlurmLauncher")


def test_dump_config_accepts_a_launcher_preset(tmp_path):
    proc = run_cli("dump_config", "hydra/launcher=slurm", "--cfg", "hydra", cwd=tmp_path)
    assert "SlurmLauncher" in proc.stdout and "array_parallelism: 8" in proc.stdout
