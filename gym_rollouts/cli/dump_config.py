"""``dump_config``: print the fully composed, resolved config as YAML, secrets masked.

Where ``collect`` would fill in a null path itself, the dump says what it would use: a null
``input_jsonl_fpath`` is printed as the bundled example dataset of the resource (the file
``collect`` reads, engine/session.py ``input_path``), and a null ``output_jsonl_fpath`` stays null
with a comment: ``collect`` derives it from its own Hydra run directory when it starts
(sweep/paths.py), which is only known here when ``hydra.run.dir`` is given on the command line
(then the path is printed). Each such value gets a ``#`` comment line above its key, so the
output stays YAML.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import yaml

from gym_rollouts.cli.app import QUIET_HYDRA, hydra_app
from gym_rollouts.config.redact import redact
from gym_rollouts.config.schema import CollectConfig, build_collect_config
from gym_rollouts.engine.session import bundled_dataset
from gym_rollouts.errors import ConfigError
from gym_rollouts.sweep.paths import job_output_path

RUN_DIR_KEY = "hydra.run.dir"


def render(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(redact(cfg), sort_keys=False, default_flow_style=False, allow_unicode=True)


def with_comments(text: str, comments: dict[str, str]) -> str:
    """``text`` (a YAML mapping) with ``# comment`` lines above the top-level keys named."""
    out = []
    for line in text.splitlines(keepends=True):
        key = line.split(":", 1)[0]
        if key in comments and not line.startswith((" ", "-", "#")):
            out.append(f"# {comments[key]}\n")
        out.append(line)
    return "".join(out)


def resolve_input(cfg: dict[str, Any], typed: CollectConfig) -> str | None:
    """Fill in the bundled example ``collect`` would read for a null ``input_jsonl_fpath``;
    returns the comment for that key (None when the path was given)."""
    if cfg.get("input_jsonl_fpath"):
        return None
    name = typed.resource.example_dataset
    if not name:
        return (f"input_jsonl_fpath: null, and resource '{typed.resource.name}' has no example dataset: "
                f"collect stops and asks for input_jsonl_fpath")
    try:
        cfg["input_jsonl_fpath"] = str(bundled_dataset(name))
    except ConfigError as exc:
        return f"input_jsonl_fpath: null, and collect would stop: {exc}"
    return (f"input_jsonl_fpath: the bundled example dataset of resource '{typed.resource.name}' "
            f"(the configured value is null)")


def resolve_output(cfg: dict[str, Any], hydra_cfg: Any, run_dir_given: bool) -> str | None:
    """The rows path ``collect`` would write for a null ``output_jsonl_fpath``: printed when the
    command line fixes ``hydra.run.dir``, else explained; returns the comment for that key."""
    if cfg.get("output_jsonl_fpath"):
        return None
    if not run_dir_given:
        return ("output_jsonl_fpath: null: collect writes <its hydra run dir>/rollouts.jsonl, a new "
                "directory it creates when it starts; pass hydra.run.dir=DIR (here and to collect), "
                "or set output_jsonl_fpath, to fix the path")
    cfg["output_jsonl_fpath"] = job_output_path(None, output_dir=str(hydra_cfg.runtime.output_dir), job_num=None)
    return "output_jsonl_fpath: derived from hydra.run.dir (the configured value is null)"


def _task(cfg: dict[str, Any], hydra_cfg: Any, *, run_dir_given: bool = False) -> int:
    typed = build_collect_config(cfg)  # validate: unknown keys and bad types are reported, not printed
    comments = {}
    for key, comment in (("input_jsonl_fpath", resolve_input(cfg, typed)),
                         ("output_jsonl_fpath", resolve_output(cfg, hydra_cfg, run_dir_given))):
        if comment:
            comments[key] = comment
    print(with_comments(render(cfg), comments), end="")
    return 0


def gives_run_dir(argv: list[str]) -> bool:
    """Whether the command line sets ``hydra.run.dir`` (any of ``k=``, ``+k=``, ``++k=``)."""
    return any(a.lstrip("+").split("=", 1)[0] == RUN_DIR_KEY for a in argv if "=" in a)


def main() -> None:
    task = functools.partial(_task, run_dir_given=gives_run_dir(sys.argv[1:]))
    hydra_app(task, extra_overrides=(*QUIET_HYDRA, "hydra/help=dump_config"))  # conf/hydra/help/dump_config.yaml


if __name__ == "__main__":
    main()
