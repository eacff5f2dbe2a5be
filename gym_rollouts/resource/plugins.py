"""Resources from other packages: the ``gym_rollouts.resources`` entry-point group.

A package registers ``<name> = "package.module:Target"`` in that group (pyproject.toml:
``[project.entry-points."gym_rollouts.resources"]``); ``Target`` is a ``Resource`` subclass or a
factory ``(**params) -> Resource``. It may carry ``default_params`` (a mapping: the option's
``resource.params``) and ``example_dataset`` (an absolute path: the rows a run reads when it names no
input file). After ``pip install`` of that package, ``resource=<name>`` works with no file in our
``conf/`` (and ``environments.<agent>=<name>`` too): ``register_plugin_resources`` stores each one as
an option of Hydra's ``resource`` config group (ConfigStore) before Hydra runs, and returns the
names so ``check_group_choices`` knows them (did-you-mean included). One of our own options
(``conf/resource/<name>.yaml``) wins over a plugin of the same name, with a warning. A plugin whose
target cannot be imported still gets its option (without its defaults): choosing it then stops
with the import error; choosing another resource is not disturbed. docs/resources.md has the
template of a plugin package.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "gym_rollouts.resources"
RESOURCE_GROUP = "resource"
_OPTION_NAME = re.compile(r"[\w.-]+")


@dataclass(frozen=True)
class PluginResource:
    name: str
    target: str  # "package.module:Target"
    distribution: str | None  # the installed package that registered it


def discover() -> dict[str, PluginResource]:
    """Every installed plugin resource by name (nothing is imported; the first of a duplicate wins)."""
    found: dict[str, PluginResource] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else None
        if ep.name in found:
            if found[ep.name].target != ep.value:
                log.warning("resource plugin %r is registered twice (%s by %s, %s by %s): the first is used",
                            ep.name, found[ep.name].target, found[ep.name].distribution, ep.value, dist)
            continue
        found[ep.name] = PluginResource(ep.name, ep.value, dist)
    return found


def option_node(plugin: PluginResource) -> dict[str, Any]:
    """The plugin's ``resource`` option: what a ``conf/resource/<name>.yaml`` of it would hold."""
    params: Mapping[str, Any] = {}
    example: str | None = None
    module_name, _, attr = plugin.target.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attr)
        params = dict(getattr(target, "default_params", None) or {})
        example = getattr(target, "example_dataset", None)
    except Exception as exc:  # a broken plugin must not break the commands that do not use it
        log.warning("resource plugin %r (%s, from %s) cannot be loaded: %s: %s", plugin.name, plugin.target,
                    plugin.distribution or "?", type(exc).__name__, exc)
    return {"name": plugin.name, "cls": plugin.target, "example_dataset": str(example) if example else None,
            "params": params}


def register_plugin_resources(conf_dir: Path) -> dict[str, list[str]]:
    """Store every plugin resource as a Hydra option of group ``resource`` (see module doc);
    returns ``{"resource": [their names]}`` for ``check_group_choices``."""
    plugins = discover()
    if not plugins:
        return {RESOURCE_GROUP: []}
    from hydra.core.config_store import ConfigStore

    ours = {p.stem for p in (Path(conf_dir) / RESOURCE_GROUP).glob("*.yaml")}
    names = []
    for name, plugin in sorted(plugins.items()):
        if name in ours:
            log.warning("resource plugin %r (from %s) has the name of one of our resources: resource=%s is ours",
                        name, plugin.distribution or "?", name)
            continue
        if not _OPTION_NAME.fullmatch(name):
            log.warning("resource plugin %r (from %s): a name of letters, digits, '_', '.', '-' only is usable as "
                        "resource=<name>; skipped", name, plugin.distribution or "?")
            continue
        ConfigStore.instance().store(group=RESOURCE_GROUP, name=name, node=option_node(plugin))
        names.append(name)
    return {RESOURCE_GROUP: names}
