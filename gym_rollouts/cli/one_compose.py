"""One composition of the config per command, not two: Hydra's mode probe skipped where it can
only answer "not set".

Before it runs a command, Hydra composes the whole config once only to read ``hydra.mode``
(``Hydra.get_mode``; the mode a config file may set), then composes it again for the run. The
first composition costs as much as the second (YAML parsing, defaults list, merges: 75-100 ms,
most of what a 1-row ``collect`` spends in Hydra). ``hydra.mode`` is unset in every file of our
``conf/`` (tests/cli/test_one_compose.py checks each file), and so it is in Hydra's own configs;
so where every config comes from those, the probe's answer is known: not set (``None``), and Hydra
then takes the mode from ``-m`` as it always does (it adds ``hydra.mode=RUN`` or ``MULTIRUN``
itself, exactly as after a probe that found nothing).

``probe_skipped`` answers ``None`` without composing only when all of these hold, and otherwise
lets Hydra probe as usual:
- the search path is Hydra's own package, our ``conf/`` and the structured configs, nothing else
  (no ``--config-dir``, no search-path plugin installed in the environment);
- no override names ``hydra`` as a whole, ``hydra.mode`` or ``hydra.searchpath`` (the command
  line setting the mode, or adding configs that might).
Everything else, error messages included, is Hydra's: a broken config fails in the composition
for the run, with the same message the probe would have swallowed before it.

``Hydra.get_mode`` is Hydra's private API (hydra-core is pinned to 1.3, where it has been since
1.2): a Hydra without it composes twice as before, and the test that counts compositions fails.
What a wrong answer would cost: a config that sets ``hydra.mode: MULTIRUN`` run as one job, which
is why the answer is given only where every config source is one whose files are checked.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

# (provider, path) of the config sources of a command of ours (Hydra's ``ConfigSource``)
_OWN_PROVIDERS = {"hydra": "hydra.conf", "schema": ""}
_MODE_KEYS = ("hydra.mode", "hydra.searchpath")


def override_may_set_mode(override: str) -> bool:
    """Whether a Hydra override could set ``hydra.mode`` (directly or by adding configs)."""
    key = override.split("=", 1)[0].lstrip("+~").split("@", 1)[0].strip()
    return key == "hydra" or any(key == k or key.startswith((k + ".", k + "[")) for k in _MODE_KEYS)


def sources_are_ours(sources: Iterable[tuple[str, str]], conf_dir: Path) -> bool:
    """Whether the search path holds only Hydra's own configs and ``conf_dir``."""
    main = str(conf_dir.resolve())
    for provider, path in sources:
        if provider == "main":
            if str(Path(path).resolve()) != main:
                return False
        elif _OWN_PROVIDERS.get(provider) != path:
            return False
    return True


def mode_is_unset(sources: Iterable[tuple[str, str]], overrides: Iterable[str], conf_dir: Path) -> bool:
    """The probe's answer is known to be "not set" (module doc)."""
    return sources_are_ours(sources, conf_dir) and not any(override_may_set_mode(o) for o in overrides)


@contextlib.contextmanager
def probe_skipped(conf_dir: Path) -> Iterator[None]:
    """While the block runs, Hydra's mode probe answers ``None`` without composing where
    ``mode_is_unset`` (module doc); Hydra's own probe otherwise. Put back when the block ends."""
    from hydra._internal.hydra import Hydra  # private: hydra-core is pinned to 1.3 (pyproject.toml)

    original = getattr(Hydra, "get_mode", None)
    if original is None:  # another Hydra: it composes as it does (tests/cli/test_one_compose.py counts)
        yield
        return

    def get_mode(self: Any, config_name: str | None, overrides: list[str]) -> Any:
        sources = [(s.provider, s.path) for s in self.config_loader.get_sources()]
        if mode_is_unset(sources, overrides, conf_dir):
            return None
        return original(self, config_name, overrides)

    Hydra.get_mode = get_mode  # type: ignore[method-assign]
    try:
        yield
    finally:
        Hydra.get_mode = original  # type: ignore[method-assign]
