"""NeMo Gym's ``prompt_config``: a YAML template that builds each row's ``responses_create_params.input``.

The file holds ``user`` (required) and ``system`` (optional), each a ``str.format_map`` template
whose ``{field}`` placeholders are filled from the row's top-level fields (``{{`` / ``}}`` for
literal braces). The result is the row's input: ``[system?, user]`` messages; the row's other
``responses_create_params`` fields (tools, temperature, ...) are kept. A row that already has an
``input`` is refused (the two are mutually exclusive, as in NeMo Gym), as is a row without a field
a placeholder names. Applied before validation, so the templated rows are checked like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gym_rollouts.errors import ConfigError

PARAMS = "responses_create_params"


@dataclass(frozen=True)
class PromptTemplate:
    path: str
    user: str
    system: str | None = None

    def apply(self, row: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        """(templated row, None), or (None, why this row cannot be templated)."""
        params = row.get(PARAMS)
        if params is not None and not isinstance(params, dict):
            return None, f"'{PARAMS}' must be an object, got {type(params).__name__}"
        if params and params.get("input"):
            return None, (f"the row has {PARAMS}.input but prompt_config={self.path} is set: they are mutually "
                          f"exclusive (drop one)")
        try:
            messages = []
            if self.system is not None:
                messages.append({"role": "system", "content": self.system.format_map(row)})
            messages.append({"role": "user", "content": self.user.format_map(row)})
        except KeyError as exc:
            return None, (f"prompt_config {self.path} references field {exc} but the row only has: "
                          f"{', '.join(map(str, row))}")
        except (IndexError, ValueError, AttributeError) as exc:
            return None, f"prompt_config {self.path} cannot be filled from this row: {exc}"
        return {**row, PARAMS: {**(params or {}), "input": messages}}, None


def load_prompt_template(path: str) -> PromptTemplate:
    """The template in ``path`` (relative to the working directory); bad files are ConfigErrors."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"prompt_config: file not found: {path}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"prompt_config: {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("user"), str):
        raise ConfigError(f"prompt_config: {path} must hold a mapping with a string 'user' (and optionally 'system')")
    unknown = sorted(set(data) - {"user", "system"})
    if unknown:
        raise ConfigError(f"prompt_config: {path} has unknown key(s) {', '.join(unknown)} (known: user, system)")
    system = data.get("system")
    if system is not None and not isinstance(system, str):
        raise ConfigError(f"prompt_config: {path}: 'system' must be a string")
    return PromptTemplate(path=path, user=data["user"], system=system)
