"""Hydra finds launcher classes only inside the ``hydra_plugins`` namespace package: these are thin
names for gym_rollouts' launchers (gym_rollouts/sweep/slurm_launcher.py, ray_launcher.py), used by
conf/hydra/launcher/slurm.yaml and ray_cluster.yaml. No ``__init__.py`` in ``hydra_plugins/``: it
stays a namespace package shared with the launcher plugins it builds on."""
