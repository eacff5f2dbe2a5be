"""With no policy_base_url, collect says (once, on stderr, at the start) and in its summary that
the embedded demo backend answered, not vLLM; with a policy_base_url it says neither."""

from __future__ import annotations

from pathlib import Path

from gym_rollouts.cli.collect import EMBEDDED_NOTICE


def test_no_policy_base_url_is_announced(run_cli, tmp_path: Path) -> None:
    result = run_cli("collect", "limit=2", "progress=lines", f"output_jsonl_fpath={tmp_path}/out.jsonl",
                     f"hydra.run.dir={tmp_path}/h")
    assert result.returncode == 0, result.stdout + result.stderr
    err = result.stderr.splitlines()
    assert err.count(EMBEDDED_NOTICE) == 1
    first_progress = next(i for i, ln in enumerate(err) if ln.startswith("[collect] "))
    assert err.index(EMBEDDED_NOTICE) < first_progress  # at the start, before any progress
    assert "policy_base_url=http://<host>:<port>/v1" in EMBEDDED_NOTICE and "not your vLLM fleet" in EMBEDDED_NOTICE
    assert EMBEDDED_NOTICE not in result.stdout
    assert "  backend: the embedded demo backend (a scripted toy model), not vLLM" in result.stdout


def test_a_configured_fleet_gets_no_notice(run_cli, embedded_server, tmp_path: Path) -> None:
    result = run_cli("collect", "limit=2", "progress=off", f"policy_base_url={embedded_server.base_url}",
                     f"output_jsonl_fpath={tmp_path}/out.jsonl", f"hydra.run.dir={tmp_path}/h")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "embedded demo backend" not in result.stderr + result.stdout
