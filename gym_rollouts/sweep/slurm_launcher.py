"""``hydra/launcher=slurm`` (conf/hydra/launcher/slurm.yaml): hydra-submitit-launcher's SLURM
launcher with one change, how results come back. The sweep becomes one job array as with the
plugin (same parameters, same ``.submitit/`` folder, the job runs the plugin's own ``__call__``),
but every array task is waited for and a task that did not finish (``scancel``, node failure,
time limit) is recorded as lost instead of raising at the first one (sweep/lost_jobs.py): the
sweep summary is written and ``collect`` exits non-zero with the resume command.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as PluginSlurmLauncher
from omegaconf import OmegaConf

from gym_rollouts.sweep.lost_jobs import gather

log = logging.getLogger(__name__)
_INIT_KEYS = ("submitit_folder", "max_num_timeout")  # executor constructor, not update_parameters
STATE_POLL_S = 10.0


def executor_parameters(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(constructor kwargs, update_parameters kwargs) of submitit's AutoExecutor from the launcher
    config: the generic queue keys as they are, the SLURM-only ones with a ``slurm_`` prefix."""
    generic = set(OmegaConf.structured(BaseQueueConf).keys())
    init = {"folder": params["submitit_folder"], "slurm_max_num_timeout": params["max_num_timeout"]}
    update = {(k if k in generic else f"slurm_{k}"): v for k, v in params.items() if k not in _INIT_KEYS}
    return init, update


class SlurmLauncher(PluginSlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        assert self.config is not None and len(job_overrides) > 0
        init, update = executor_parameters(dict(self.params))
        executor = submitit.AutoExecutor(cluster="slurm", **init)
        executor.update_parameters(**update)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            sweep_dir.chmod(int(str(self.config.hydra.sweep.mode), 8))
        log.info("SLURM job array of %d jobs, sweep dir %s", len(job_overrides), sweep_dir)
        nums = [initial_job_idx + i for i in range(len(job_overrides))]
        for num, overrides in zip(nums, job_overrides):
            log.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
        state = Singleton.get_state()
        jobs = executor.map_array(self, [list(o) for o in job_overrides], ["hydra.sweep.dir"] * len(nums),
                                  nums, [f"job_id_for_{n}" for n in nums], [state] * len(nums))
        return gather([(lambda j=j: result_of(j)) for j in jobs], job_overrides, initial_job_idx, sweep_dir)


def result_of(job: Any, poll_s: float = STATE_POLL_S) -> JobReturn:
    """The job's JobReturn once it is over (raises for a cancelled / failed task). A finished task
    is seen by its result file; one that ended without it (scancel, node failure) only through
    sacct, which submitit asks ever less often (2, 4, ... up to 600 s after submission): one forced
    sacct call (for the whole array) every ``poll_s`` bounds how late a lost task is noticed."""
    last = time.monotonic()
    while not job.done():
        if time.monotonic() - last >= poll_s:
            last = time.monotonic()
            if job.done(force_check=True):
                break
        time.sleep(0.5)
    return job.results()[0]
