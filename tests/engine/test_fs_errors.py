"""File-system failures of ``collect`` are messages with a documented exit code, never tracebacks
with exit 1 (issue 12 item 9); real ``collect`` subprocesses on 127.0.0.1.

Found before any request (exit 2): those runs point ``policy_base_url`` at a port where nothing
listens, so a check made only after contacting a server would end as a connection error instead.
Met part-way (exit 5 with the resume command): a full disk and the file size limit; the resume
after the fix repairs the torn tail and completes the run with every rollout exactly once.

Mechanisms (no root tricks that CI may lack): permission bits bind only a process without
CAP_DAC_OVERRIDE, so when the tests run as root the subprocess drops it (and CAP_DAC_READ_SEARCH)
from its bounding set before exec; read-only file systems and full disks are a read-only bind mount
and a small tmpfs in a user + mount namespace (``unshare -rm``); the file size limit is
RLIMIT_FSIZE (Python ignores SIGXFSZ, so the write fails with EFBIG); ``/dev/full`` feeds the
writer thread's own tests. A test is skipped only when its mechanism is unavailable, saying why.
"""

from __future__ import annotations

import ctypes
import os
import resource
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import orjson
import pytest

from engine_helpers import collect_env, read_rows, write_tasks
from gym_rollouts.embedded import EmbeddedProcess
from gym_rollouts.engine.outputs import OutputPaths
from gym_rollouts.io.sink import Sink, SinkWriteError

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # closed again: nothing listens there


def _collect_argv(*args: str, hydra_dir: Path | None) -> list[str]:
    run_dir = [f"hydra.run.dir={hydra_dir}"] if hydra_dir is not None else []
    return [sys.executable, "-m", "gym_rollouts.cli.collect", "resource=exact_match", "progress=off", *run_dir, *args]


def _run(argv: list[str], *, cwd: Path, preexec: Callable[[], None] | None = None,
         timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=collect_env(), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, preexec_fn=preexec)


def _refused_before_any_request(proc: subprocess.CompletedProcess, *expected: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "cannot connect" not in proc.stderr.lower(), proc.stderr
    for text in expected:
        assert text in proc.stderr, proc.stderr


# --- mechanisms --------------------------------------------------------------------------------

def _drop_dac_capabilities() -> None:
    """preexec_fn: as root, lose the capabilities that bypass permission bits (after exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.fixture(scope="module")
def unprivileged() -> Callable[[], None] | None:
    """A preexec_fn under which permission bits apply (None: they apply already), or skip."""
    if os.geteuid() != 0:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe"
        probe.write_text("x")
        probe.chmod(0)
        try:
            proc = subprocess.run(["cat", str(probe)], capture_output=True, preexec_fn=_drop_dac_capabilities)
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"running as root and cannot drop CAP_DAC_OVERRIDE, so permission bits do not apply: {exc}")
    if proc.returncode == 0:
        pytest.skip("running as root and permission bits still do not apply after dropping CAP_DAC_OVERRIDE")
    return _drop_dac_capabilities


@pytest.fixture(scope="module")
def namespace() -> Callable[[str], subprocess.CompletedProcess]:
    """Runs a shell script as root of a new user + mount namespace (its mounts vanish with it)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("util-linux unshare is not installed: cannot make a read-only or full file system without root")
    with tempfile.TemporaryDirectory() as tmp:
        probe = subprocess.run([unshare, "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {tmp} && "
                                f"mount -o remount,ro,bind {tmp} {tmp}"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"user namespaces are not available here (unshare -rm + mount: {probe.stderr.strip()})")

    def run(script: str) -> subprocess.CompletedProcess:
        return subprocess.run([unshare, "-rm", "sh", "-uc", script], capture_output=True, text=True, timeout=240,
                              env=collect_env(), stdin=subprocess.DEVNULL)
    return run


def _in_ns(argv: list[str], log: Path) -> str:
    """A script line: run ``argv``, its output to ``log``, its exit code to ``log``.rc."""
    return f"{shlex.join(argv)} >{shlex.quote(str(log))} 2>&1; echo $? >{shlex.quote(str(log))}.rc"


def _ns_result(log: Path) -> tuple[int, str]:
    return int(Path(f"{log}.rc").read_text()), log.read_text()


# --- before any request: the input ---------------------------------------------------------------

def test_an_input_that_is_a_directory_is_named_as_one(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    write_tasks(tmp_path / "tasks" / "train.jsonl", 2)
    proc = _run(_collect_argv(f"policy_base_url={_dead_url()}", f"input_jsonl_fpath={tmp_path / 'tasks'}",
                              f"output_jsonl_fpath={tmp_path / 'out.jsonl'}", hydra_dir=tmp_path / "h"), cwd=tmp_path)
    _refused_before_any_request(proc, f"input_jsonl_fpath={tmp_path / 'tasks'} is a directory, not a file",
                                "train.jsonl")
    assert "file not found" not in proc.stderr


def test_an_unreadable_input_says_permission_denied(tmp_path: Path, unprivileged) -> None:
    source = write_tasks(tmp_path / "in.jsonl", 2)
    source.chmod(0)
    proc = _run(_collect_argv(f"policy_base_url={_dead_url()}", f"input_jsonl_fpath={source}",
                              f"output_jsonl_fpath={tmp_path / 'out.jsonl'}", hydra_dir=tmp_path / "h"),
                cwd=tmp_path, preexec=unprivileged)
    _refused_before_any_request(proc, f"cannot read {source}: Permission denied (EACCES)")
    assert not (tmp_path / "out_run.json").exists()


def test_an_input_under_a_file_is_not_found_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    proc = _run(_collect_argv(f"policy_base_url={_dead_url()}", f"input_jsonl_fpath={tmp_path / 'notes.txt/in.jsonl'}",
                              f"output_jsonl_fpath={tmp_path / 'out.jsonl'}", hydra_dir=tmp_path / "h"), cwd=tmp_path)
    _refused_before_any_request(proc, "file not found", f"{tmp_path / 'notes.txt'} is a file, not a directory")


# --- before any request: the output ---------------------------------------------------------------

@pytest.mark.parametrize("flags", [[], ["overwrite=true"], ["resume_from_cache=true"]])
def test_an_output_path_that_is_a_directory_is_refused_and_left_alone(tmp_path: Path, flags: list[str]) -> None:
    source = write_tasks(tmp_path / "in.jsonl", 2)
    target = tmp_path / "runs"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    proc = _run(_collect_argv(f"policy_base_url={_dead_url()}", f"input_jsonl_fpath={source}",
                              f"output_jsonl_fpath={target}", *flags, hydra_dir=tmp_path / "h"), cwd=tmp_path)
    _refused_before_any_request(proc, f"output_jsonl_fpath={target} is a directory",
                                f"output_jsonl_fpath={target / 'rollouts.jsonl'}")
    assert (target / "keep.txt").read_text() == "mine"


def test_an_output_folder_under_a_file_is_refused(tmp_path: Path) -> None:
    source = write_tasks(tmp_path / "in.jsonl", 2)
    (tmp_path / "results").write_text("a file")
    proc = _run(_collect_argv(f"policy_base_url={_dead_url()}", f"input_jsonl_fpath={source}",
                              f"output_jsonl_fpath={tmp_path / 'results/run1/out.jsonl'}", hydra_dir=tmp_path / "h"),
                cwd=tmp_path)
    _refused_before_any_request(proc, f"{tmp_path / 'results'} is a file, not a directory")


def test_an_output_folder_that_is_not_writable_or_cannot_be_created(tmp_path: Path, unprivileged) -> None:
    source = write_tasks(tmp_path / "in.jsonl", 2)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        in_it = _run(_collect_argv(f"policy_base_url={_dead_url()}", f"input_jsonl_fpath={source}",
                                   f"output_jsonl_fpath={locked / 'out.jsonl'}", hydra_dir=tmp_path / "h"),
                     cwd=tmp_path, preexec=unprivileged)
        _refused_before_any_request(in_it, f"cannot create files in the output folder {locked}",
                                    "Permission denied (EACCES)")
        under_it = _run(_collect_argv(f"policy_base_url={_dead_url()}", f"input_jsonl_fpath={source}",
                                      f"output_jsonl_fpath={locked / 'new/deeper/out.jsonl'}", hydra_dir=tmp_path / "h"),
                        cwd=tmp_path, preexec=unprivileged)
        _refused_before_any_request(under_it, f"cannot create the output folder {locked / 'new/deeper'}",
                                    "Permission denied (EACCES)")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_a_missing_output_folder_is_created(tmp_path: Path, embedded_server: EmbeddedProcess) -> None:
    source = write_tasks(tmp_path / "in.jsonl", 3)
    out = tmp_path / "new" / "deeper" / "out.jsonl"
    proc = _run(_collect_argv(f"policy_base_url={embedded_server.base_url}", f"input_jsonl_fpath={source}",
                              f"output_jsonl_fpath={out}", hydra_dir=tmp_path / "h"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(read_rows(out)) == 3


def test_a_current_directory_that_is_not_writable_names_hydra_run_dir(
        tmp_path: Path, unprivileged, embedded_server: EmbeddedProcess) -> None:
    source = write_tasks(tmp_path / "in.jsonl", 2)
    here = tmp_path / "readonly_checkout"
    here.mkdir()
    here.chmod(0o555)
    try:
        argv = _collect_argv(f"policy_base_url={embedded_server.base_url}", f"input_jsonl_fpath={source}",
                             f"output_jsonl_fpath={tmp_path / 'out.jsonl'}", hydra_dir=None)
        proc = _run(argv, cwd=here, preexec=unprivileged)
        _refused_before_any_request(proc, f"cannot create Hydra's output directory outputs/<date>/<time> under {here}",
                                    "is not writable", "hydra.run.dir=")
        moved = _run([*argv, f"hydra.run.dir={tmp_path / 'hydra'}"], cwd=here, preexec=unprivileged)
        assert moved.returncode == 0, moved.stdout + moved.stderr  # the fix the message gives works
        assert list(here.iterdir()) == []
    finally:
        here.chmod(0o755)


def test_a_read_only_file_system_is_refused_before_any_request(tmp_path: Path, namespace) -> None:
    source = write_tasks(tmp_path / "in.jsonl", 2)
    mount = tmp_path / "ro"
    (mount / "earlier").mkdir(parents=True)
    (mount / "earlier" / "out.jsonl").write_text("")
    (mount / "earlier" / "out_run.json").write_text("{}")
    fresh, resume = tmp_path / "fresh.log", tmp_path / "resume.log"
    base = [f"policy_base_url={_dead_url()}", f"input_jsonl_fpath={source}"]
    script = "; ".join([
        f"mount --bind {mount} {mount} && mount -o remount,ro,bind {mount} {mount} || exit 99",
        _in_ns(_collect_argv(*base, f"output_jsonl_fpath={mount / 'out.jsonl'}", hydra_dir=tmp_path / "h"), fresh),
        _in_ns(_collect_argv(*base, f"output_jsonl_fpath={mount / 'earlier/out.jsonl'}", "resume_from_cache=true",
                             hydra_dir=tmp_path / "h"), resume)])
    ns = namespace(script)
    assert ns.returncode == 0, ns.stderr
    for log, folder in ((fresh, mount), (resume, mount / "earlier")):
        code, text = _ns_result(log)
        _refused_before_any_request(subprocess.CompletedProcess([], code, "", text),
                                    f"output folder {folder}", "Read-only file system (EROFS)")


def test_a_full_disk_at_start_is_refused_before_any_request(tmp_path: Path, namespace) -> None:
    source = write_tasks(tmp_path / "in.jsonl", 2)
    mount = tmp_path / "disk"
    mount.mkdir()
    log = tmp_path / "full.log"
    script = "; ".join([
        f"mount -t tmpfs -o size=64k tmpfs {mount} || exit 99",
        f"dd if=/dev/zero of={mount / 'filler'} bs=4k count=64 2>/dev/null",  # fails at the end: the disk is full
        _in_ns(_collect_argv(f"policy_base_url={_dead_url()}", f"input_jsonl_fpath={source}",
                             f"output_jsonl_fpath={mount / 'out.jsonl'}", hydra_dir=tmp_path / "h"), log)])
    ns = namespace(script)
    assert ns.returncode == 0, ns.stderr
    code, text = _ns_result(log)
    _refused_before_any_request(subprocess.CompletedProcess([], code, "", text), f"output folder {mount}",
                                "No space left on device (ENOSPC)")


# --- part-way: exit 5, the resume command, then a complete run -----------------------------------------

def _assert_stopped_with_resume(code: int, text: str, out: Path, errno_name: str) -> None:
    assert code == 5, text
    assert "Traceback" not in text
    assert f"({errno_name})" in text and "failed part-way" in text
    assert f"output_jsonl_fpath={out} resume_from_cache=true" in text  # the resume command


def _assert_complete(out: Path, total: int) -> None:
    rows = read_rows(out)  # no torn tail left
    assert sorted(r["_gr"]["seq"] for r in rows) == list(range(total))  # each rollout once


def test_a_disk_that_fills_up_mid_run_stops_with_exit_5_and_the_resume_completes(
        tmp_path: Path, namespace, embedded_server: EmbeddedProcess) -> None:
    source = write_tasks(tmp_path / "in.jsonl", 400)  # ~430 KB of rows
    mount, copy = tmp_path / "disk", tmp_path / "copy"
    mount.mkdir()
    copy.mkdir()
    out = mount / "out.jsonl"
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    argv = _collect_argv(f"policy_base_url={embedded_server.base_url}", f"input_jsonl_fpath={source}",
                         f"output_jsonl_fpath={out}", "num_samples_in_parallel=8", hydra_dir=tmp_path / "h")
    script = "; ".join([
        f"mount -t tmpfs -o size=2m tmpfs {mount} || exit 99",
        f"dd if=/dev/zero of={mount / 'filler'} bs=4k count=448 2>/dev/null",  # 1.75 MB: ~256 KB stay free
        _in_ns(argv, first),
        f"cp {mount}/out.jsonl {copy}/torn.jsonl",
        f"rm {mount / 'filler'}",  # the fix: free space
        _in_ns([*argv, "resume_from_cache=true"], second),
        f"cp {mount}/out* {copy}/"])
    ns = namespace(script)
    assert ns.returncode == 0, ns.stderr
    code, text = _ns_result(first)
    _assert_stopped_with_resume(code, text, out, "ENOSPC")
    assert "free space on that disk" in text
    done_before = (copy / "torn.jsonl").read_bytes().count(b"\n")
    assert 0 < done_before < 400
    code, text = _ns_result(second)
    assert code == 0, text
    _assert_complete(copy / "out.jsonl", 400)
    assert (copy / "out_aggregate_metrics.json").is_file()


def test_the_file_size_limit_mid_run_stops_with_exit_5_and_the_resume_completes(
        tmp_path: Path, embedded_server: EmbeddedProcess) -> None:
    source = write_tasks(tmp_path / "in.jsonl", 200)  # ~215 KB of rows
    out = tmp_path / "out.jsonl"
    argv = _collect_argv(f"policy_base_url={embedded_server.base_url}", f"input_jsonl_fpath={source}",
                         f"output_jsonl_fpath={out}", "num_samples_in_parallel=8", hydra_dir=tmp_path / "h")

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))

    stopped = _run(argv, cwd=tmp_path, preexec=limit_file_size)
    _assert_stopped_with_resume(stopped.returncode, stopped.stderr, out, "EFBIG")
    assert "ulimit -f" in stopped.stderr
    assert 0 < out.stat().st_size <= 100_000 and not OutputPaths(out).aggregate_metrics.exists()
    resumed = _run([*argv, "resume_from_cache=true"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _assert_complete(out, 200)


# --- the writer thread (in-process, on /dev/full) ----------------------------------------------------

@pytest.fixture
def dev_full() -> Path:
    path = Path("/dev/full")
    if not path.exists():
        pytest.skip("/dev/full is not available")
    return path


def test_the_writer_reports_a_full_disk_once_and_drains_without_writing(tmp_path: Path, dev_full: Path) -> None:
    errors: list[SinkWriteError] = []
    side = tmp_path / "side.jsonl"
    with Sink({"rows": dev_full, "side": side}, on_error=errors.append) as sink:
        sink.put("rows", {"i": 0})
        deadline = time.monotonic() + 10
        while not errors and time.monotonic() < deadline:
            time.sleep(0.01)
        for i in range(500):  # after the failure: dropped, never raised, never left queued
            sink.put_many("side", [{"i": i}])
        assert sink.backlog == 0
    assert len(errors) == 1 and errors[0] is sink.failure
    assert errors[0].path == dev_full and errors[0].is_file_system
    assert "No space left on device (ENOSPC)" in str(errors[0])
    assert side.read_bytes() == b""  # nothing more is written once a write failed


def test_without_a_handler_the_writer_failure_is_raised_by_close(dev_full: Path) -> None:
    sink = Sink({"rows": dev_full})
    with pytest.raises(SinkWriteError, match=r"cannot write /dev/full: No space left on device"):
        with sink:
            sink.put("rows", {"i": 1})


def test_a_row_the_writer_cannot_serialise_is_reported_not_swallowed(tmp_path: Path) -> None:
    errors: list[SinkWriteError] = []
    with Sink({"rows": tmp_path / "out.jsonl"}, on_error=errors.append) as sink:
        sink.put("rows", {"ok": 1})
        sink.put("rows", {"bad": object()})
        sink.put("rows", {"after": 2})
    assert len(errors) == 1 and not errors[0].is_file_system and "TypeError" in str(errors[0])
    written = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert written in ([], [{"ok": 1}])  # a prefix of what was handed over, in whole lines
