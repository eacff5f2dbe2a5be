"""A one-node Ray cluster on 127.0.0.1 for the test suite (the tier's session fixture in
conftest.py starts it once, stops it afterwards).

Ray runs from its own venv (``.venv-ray``, scripts/setup_ray.sh: our ``[ray]`` extra pins
libraries the main venv must not get). ``ray start --head --block`` is our child in its own
process group: stopping it stops the raylet, GCS and workers it started (never ``ray stop``,
which would stop any Ray on the machine). The head announces 4 CPUs whatever the machine has (Ray
pre-starts one worker process per CPU: more would only load a 2-core runner), and the tests ask
one CPU per job, so the four jobs of a sweep run at once. Clients find it through
``RAY_ADDRESS`` (``hydra.launcher.ray.init.address=auto`` reads it). Ray 2.5x+ turns on token
authentication for a new cluster; this loopback test cluster runs with ``RAY_AUTH_MODE=disabled``
(head and clients). Ray picks the machine's own address as node IP whatever
``--node-ip-address`` says; clients reach the head on 127.0.0.1 all the same.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from slurm_peer import free_port

HEAD_CPUS = 4


@dataclass
class RayCluster:
    venv: Path
    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "RAY_ADDRESS": self.address, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
                "PATH": f"{self.venv / 'bin'}:{os.environ.get('PATH', '')}"}

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def start(self, timeout: float = 120) -> "RayCluster":
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "ray_head.out", "w")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [self.bin("ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={self.port}",
             f"--num-cpus={HEAD_CPUS}", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
             f"--temp-dir={self.root / 'tmp'}"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            # printed once GCS and raylet are up (a `ray status` probe would cost ~4 s more)
            if "Ray runtime started" in (self.root / "ray_head.out").read_text(errors="replace"):
                return self
            time.sleep(0.3)
        tail = (self.root / "ray_head.out").read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"Ray tier: the head on {self.address} did not come up in {timeout:.0f} s\n{tail}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # --block: it stops what it started
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything of its group still there
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.proc = None
