"""``hydra/launcher=ray_cluster`` (conf/hydra/launcher/ray_cluster.yaml): hydra-ray-launcher's
launcher with one change, how results come back. Each sweep job is one Ray task as with the
plugin (its ``ray.init`` / ``ray.remote`` options, its job runner), but every task is waited for
and one that did not finish (its worker process killed, its node lost) is recorded as lost
instead of raising at the first one (sweep/lost_jobs.py): the sweep summary is written and
``collect`` exits non-zero with the resume command. Installed with the ``ray`` extra only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import ray
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides, setup_globals
from hydra_plugins.hydra_ray_launcher._launcher_util import launch_job_on_ray, start_ray  # type: ignore
from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher as PluginRayLauncher
from omegaconf import open_dict

from gym_rollouts.sweep.lost_jobs import gather

log = logging.getLogger(__name__)


class RayLauncher(PluginRayLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        setup_globals()
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        start_ray(self.ray_cfg.init)
        log.info("Ray: %d jobs, sweep dir %s", len(job_overrides), sweep_dir)
        refs = []
        for offset, overrides in enumerate(job_overrides):
            num = initial_job_idx + offset
            log.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
            job_cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(job_cfg):
                job_cfg.hydra.job.id = f"job_id_for_{num}"
                job_cfg.hydra.job.num = num
            refs.append(launch_job_on_ray(self.hydra_context, self.ray_cfg.remote, job_cfg,
                                          self.task_function, Singleton.get_state()))
        return gather([(lambda r=r: ray.get(r)) for r in refs], job_overrides, initial_job_idx, sweep_dir)
