"""A vLLM-wire-compatible HTTP server around a scripted model.

The default backend of `collect` when no vLLM server is named, and the test double for
everything on the wire. In process: `async with EmbeddedServer(cfg) as srv: srv.base_url`;
as a child process: `launch_embedded(cfg)` / `embedded_subprocess(cfg)`; from a shell:
`python -m gym_rollouts.embedded --port 8000`.
"""

from .config import EmbeddedConfig, config_from_argv, config_to_argv
from .launch import (
    AsyncEmbeddedProcess,
    EmbeddedProcess,
    EmbeddedStartError,
    embedded_subprocess,
    launch_embedded,
)
from .server import EmbeddedServer

__all__ = [
    "AsyncEmbeddedProcess",
    "EmbeddedConfig",
    "EmbeddedProcess",
    "EmbeddedServer",
    "EmbeddedStartError",
    "config_from_argv",
    "config_to_argv",
    "embedded_subprocess",
    "launch_embedded",
]
