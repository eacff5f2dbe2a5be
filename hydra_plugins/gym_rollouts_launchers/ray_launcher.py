"""``hydra/launcher=ray_cluster``: see gym_rollouts/sweep/ray_launcher.py. Defined only where
hydra-ray-launcher is installed (the ``ray`` extra); Hydra imports every module here."""

try:
    from gym_rollouts.sweep.ray_launcher import RayLauncher as _Impl
except ImportError:  # no Ray plugin: the preset's defaults (ray) say so first
    _Impl = None

if _Impl is not None:
    class RayLauncher(_Impl):  # type: ignore[misc,valid-type]
        """The plugin's Ray launcher; jobs whose worker died are recorded, not raised."""
