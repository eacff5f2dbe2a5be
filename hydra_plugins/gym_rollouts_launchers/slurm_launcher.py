"""``hydra/launcher=slurm``: see gym_rollouts/sweep/slurm_launcher.py. Defined only where
hydra-submitit-launcher is installed (the ``sweeps`` extra); Hydra imports every module here."""

try:
    from gym_rollouts.sweep.slurm_launcher import SlurmLauncher as _Impl
except ImportError:  # no submitit plugin: the preset's defaults (submitit_slurm) say so first
    _Impl = None

if _Impl is not None:
    class SlurmLauncher(_Impl):  # type: ignore[misc,valid-type]
        """The plugin's SLURM launcher; lost array tasks are recorded, not raised."""
