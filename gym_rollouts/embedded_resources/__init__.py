"""An embedded NeMo-Gym-style resources server: the fast wire double and fault double.

It speaks the HTTP protocol of NeMo Gym's resources servers (seed_session, tools, verify,
aggregate_metrics, the signed session cookie, FastAPI-shaped 422s, /openapi.json), adds test
controls under /_control/ (faults per route, a request log, stats), and has a head-server mode
(/server_instances, /global_config_dict_yaml) for routing tests. In process:
`async with EmbeddedResourcesServer(ResourcesConfig()) as srv: srv.url`; as a child process:
`resources_subprocess(...)` / `launch_resources(...)`; from a shell:
`python -m gym_rollouts.embedded_resources --port 9000`.
"""

from gym_rollouts.embedded.launch import EmbeddedStartError

from .config import HeadConfig, ResourcesConfig, config_from_argv, config_to_argv
from .control import ControlError, ResourcesControl
from .faults import MODES as FAULT_MODES
from .head import HeadServer
from .launch import launch_resources, resources_process, resources_subprocess
from .server import EmbeddedResourcesServer
from .sessions import cookie_name

__all__ = [
    "FAULT_MODES",
    "ControlError",
    "EmbeddedResourcesServer",
    "EmbeddedStartError",
    "HeadConfig",
    "HeadServer",
    "ResourcesConfig",
    "ResourcesControl",
    "config_from_argv",
    "config_to_argv",
    "cookie_name",
    "launch_resources",
    "resources_process",
    "resources_subprocess",
]
