"""Load scenarios from YAML files or by bundled name, with errors that name the field path.

``yaml.safe_load`` only (never ``yaml.load``): a scenario file is data, not code.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from evgrid.scenario.schema import Scenario

_UNION_BRANCHES = {"float", "int", "list[float]", "function-after[_check(), float]"}


class ScenarioError(ValueError):
    """A scenario that cannot be used; the message names the field path, value and rule."""


def bundled_names() -> list[str]:
    """Names of the scenarios shipped with evgrid (``small``, ``city``, ``lot2102``, ...)."""
    folder = resources.files("evgrid.scenario") / "bundled"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in _UNION_BRANCHES:
            out += f".{part}" if out else str(part)
    return out


def _message(err: dict[str, Any]) -> str:
    """One pydantic error as ``path: value is not <rule>`` (``path: message`` otherwise)."""
    ctx = err.get("ctx") or {}
    value = err.get("input")
    for key, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if key in ctx:
            bound = ctx[key]
            return f"{value!r} is not {op} {bound:g}" if isinstance(bound, int | float) else (
                f"{value!r} is not {op} {bound}")
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown field (check the spelling; see `evgrid scenarios --schema`)"
    if err["type"] == "missing":
        return "required field is missing"
    return msg


def format_validation_error(exc: ValidationError) -> str:
    lines, seen = [], set()
    for err in exc.errors():
        path = _path(err["loc"])
        if path in seen:  # a union reports once per branch; the first says enough
            continue
        seen.add(path)
        msg = _message(err)
        lines.append(f"{path}: {msg}" if path else msg)
    return "\n".join(lines)


def parse_scenario(data: Any, *, source: str = "<dict>", base_dir: Path | None = None) -> Scenario:
    """Validate a mapping as a :class:`Scenario`; relative CSV paths resolve against ``base_dir``."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario is a mapping, got {type(data).__name__}")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{source}: invalid scenario\n{format_validation_error(exc)}") from None
    if base_dir is not None:
        scenario = _resolve_paths(scenario, base_dir)
    return scenario


def _resolve_paths(scenario: Scenario, base_dir: Path) -> Scenario:
    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else base_dir / p

    facilities = [
        f.model_copy(update={"sessions_csv": fix(f.sessions_csv)}) for f in scenario.facilities
    ]
    prices = scenario.prices.model_copy(update={"price_csv": fix(scenario.prices.price_csv)})
    return scenario.model_copy(update={"facilities": facilities, "prices": prices})


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a bundled scenario by name, or a YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise ScenarioError(f"{path}: no such scenario file")
        text, source, base = path.read_text(), str(path), path.parent
    else:
        names = bundled_names()
        if str(name_or_path) not in names:
            raise ScenarioError(
                f"unknown scenario {str(name_or_path)!r}: give a YAML file or one of {names}"
            )
        res = resources.files("evgrid.scenario") / "bundled" / f"{name_or_path}.yaml"
        text, source, base = res.read_text(), f"{name_or_path} (bundled)", None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not valid YAML: {exc}") from None
    return parse_scenario(data, source=source, base_dir=base)
