"""Fixtures of the sweep tests (helpers live in sweep_helpers.py)."""

import subprocess

import pytest

from sweep_helpers import run_cli


@pytest.fixture
def collect(tmp_path):
    def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run_cli("collect", *args, "progress=off", cwd=tmp_path, check=check)
    return _run
