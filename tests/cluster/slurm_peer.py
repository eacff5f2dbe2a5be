"""A one-node SLURM cluster on 127.0.0.1 for the test suite (the tier's session fixture in
conftest.py starts it once, stops it afterwards).

Installed by scripts/setup_slurm.sh (Debian's slurm-wlm, slurmdbd, munge, mariadb). Started here,
every daemon in the foreground as our child, under a private directory: a throw-away MariaDB
(accounting, so ``sacct`` works as on a real cluster: submitit polls it for job states), slurmdbd,
slurmctld and slurmd. Settings that need neither cgroups nor systemd: linuxproc process tracking,
no task plugin, jobacct_gather/linux (MaxRSS / TotalCPU in sacct). The node announces 16 CPUs and
~70 GB whatever the machine has (``config_overrides``), so four array tasks of the slurm preset's
own size (4 CPUs, 16 GB each) run at once on a 2-core runner. munged is the machine's: reused when it answers, started (and stopped) otherwise.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("munged", "munge", "mariadbd", "mariadb-install-db", "mariadb", "slurmdbd", "slurmctld", "slurmd",
            "sbatch", "squeue", "sacct", "sacctmgr", "scancel", "sinfo")
CLUSTER = "gymtest"
NODE_CPUS = 16
NODE_MEM_MB = 72000


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def _which(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, ok, timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.2)
    tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-2000:]}" for p in logs if p.exists())
    raise RuntimeError(f"SLURM tier: {what} not up after {timeout:.0f} s\n{tails}")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class SlurmCluster:
    root: Path
    host: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    procs: list[subprocess.Popen] = field(default_factory=list)
    munged: subprocess.Popen | None = None

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """The environment for client commands (sbatch, squeue, sacct, collect -m ...)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
        return proc

    def _spawn(self, name: str, *cmd: str) -> subprocess.Popen:
        log = open(self.root / "log" / f"{name}.out", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(list(cmd), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        self.procs.append(proc)
        return proc

    def start(self, timeout: float = 60) -> "SlurmCluster":
        for sub in ("log", "state", "spool", "db"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._start_munge(timeout)
        ports = {k: free_port() for k in ("db", "dbd", "ctld", "slurmd")}
        self._start_db(ports["db"], timeout)
        self._write_confs(ports)
        self._spawn("slurmdbd", _which("slurmdbd"), "-D")
        _wait("slurmdbd", lambda: _listening(ports["dbd"]), timeout, self._logs())
        self.run("sacctmgr", "-i", "add", "cluster", CLUSTER)
        self._spawn("slurmctld", _which("slurmctld"), "-D", "-i")
        _wait("slurmctld", lambda: self.run("sinfo", "-h", check=False, timeout=10).returncode == 0,
              timeout, self._logs())
        self._spawn("slurmd", _which("slurmd"), "-D", "-N", self.host)
        _wait("slurmd (node idle)", lambda: "idle" in self.run("sinfo", "-h", "-o", "%T", check=False,
                                                              timeout=10).stdout, timeout, self._logs())
        return self

    def _logs(self) -> list[Path]:
        return sorted((self.root / "log").glob("*"))

    def _start_munge(self, timeout: float) -> None:
        if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode == 0:
            return  # the machine's munged answers
        run_dir = Path("/run/munge")
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_dir, "munge", "munge")
        log = open(self.root / "log" / "munged.out", "w")  # noqa: SIM115
        self.munged = subprocess.Popen(["runuser", "-u", "munge", "--", _which("munged"), "--foreground"],
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        _wait("munged", lambda: subprocess.run("munge -n | unmunge", shell=True,
                                               capture_output=True).returncode == 0, timeout, self._logs())

    def _start_db(self, port: int, timeout: float) -> None:
        db = self.root / "db"
        subprocess.run([_which("mariadb-install-db"), "--no-defaults", f"--datadir={db / 'data'}", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, timeout=timeout)
        self._spawn("mariadbd", _which("mariadbd"), "--no-defaults", f"--datadir={db / 'data'}", "--user=root",
                    "--bind-address=127.0.0.1", f"--port={port}", f"--socket={db / 'sock'}",
                    f"--log-error={self.root / 'log' / 'mariadb.log'}", "--skip-name-resolve",
                    "--innodb-buffer-pool-size=32M", "--innodb-lock-wait-timeout=900")
        _wait("mariadb", lambda: (db / "sock").exists() and _listening(port), timeout, self._logs())
        subprocess.run([_which("mariadb"), "--no-defaults", "-S", str(db / "sock"), "-uroot", "-e",
                        "CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; "
                        "GRANT ALL ON *.* TO 'slurm'@'127.0.0.1';"], check=True, capture_output=True)

    def _write_confs(self, ports: dict[str, int]) -> None:
        r, log = self.root, self.root / "log"
        self.conf.write_text("\n".join([
            f"ClusterName={CLUSTER}", f"SlurmctldHost={self.host}(127.0.0.1)",
            "SlurmUser=root", "SlurmdUser=root", f"SlurmctldPort={ports['ctld']}", f"SlurmdPort={ports['slurmd']}",
            "AuthType=auth/munge", "CredType=cred/munge",
            f"StateSaveLocation={r / 'state'}", f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}", f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={log / 'slurmctld.log'}", f"SlurmdLogFile={log / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/linux", "JobAcctGatherFrequency=task=1",
            "JobAcctGatherParams=OverMemoryKill",
            "AccountingStorageType=accounting_storage/slurmdbd", "AccountingStorageHost=localhost",
            f"AccountingStoragePort={ports['dbd']}",
            "SchedulerType=sched/backfill", "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory",
            "SlurmdParameters=config_overrides", "ReturnToService=2", "MpiDefault=none",
            "KillWait=5", "MinJobAge=300", "InactiveLimit=0",
            f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory={NODE_MEM_MB} State=UNKNOWN",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""]))
        dbd = r / "slurmdbd.conf"  # slurmdbd reads it next to SLURM_CONF; it must be private
        dbd.write_text("\n".join([
            "AuthType=auth/munge", "DbdHost=localhost", "DbdAddr=127.0.0.1", f"DbdPort={ports['dbd']}",
            "SlurmUser=root", f"LogFile={log / 'slurmdbd.log'}", f"PidFile={r / 'slurmdbd.pid'}",
            "StorageType=accounting_storage/mysql", "StorageHost=127.0.0.1", f"StoragePort={ports['db']}",
            "StorageUser=slurm", "StoragePass=slurm", "StorageLoc=slurm_acct_db", ""]))
        dbd.chmod(0o600)

    def stop(self) -> None:
        try:
            self.run("scancel", "-u", "root", "-f", check=False, timeout=20)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and self.run("squeue", "-h", check=False, timeout=10).stdout.strip():
                time.sleep(0.3)
        except Exception:  # noqa: BLE001 - stopping anyway
            pass
        for proc in reversed([*([self.munged] if self.munged else []), *self.procs]):  # munged last
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self.procs.clear()
