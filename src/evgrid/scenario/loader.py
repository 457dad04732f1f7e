"""Load scenarios from YAML files or by bundled name, with errors that name the field path.

``yaml.safe_load`` only (never ``yaml.load``): a scenario file is data, not code.

Everything that would stop a run is checked here, so ``evgrid validate`` says it before
``evgrid run`` meets it: the file's bytes (UTF-8 YAML of a sane size), the schema (finite values
within documented bounds), the files the scenario names (``sessions_csv``, ``price_csv``: exist
and can be read) and whether a run fits in memory (:mod:`evgrid.scenario.resources`). Every
message is one line per problem, starting with the source, so a terminal or a log shows it
whole; they contain file paths and values verbatim, so a printer that interprets markup (rich)
must escape them.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from evgrid.scenario.bounds import MAX_SCENARIO_FILE_BYTES
from evgrid.scenario.errors import ScenarioError
from evgrid.scenario.schema import Scenario
from evgrid.scenario.tariff import TariffError, read_tariff

__all__ = ["ScenarioError", "bundled_names", "load_scenario", "parse_scenario"]

#: Location parts pydantic adds for a union's branch or a discriminated union's tag; not fields.
_UNION_BRANCHES = {
    "float", "int", "list[float]", "function-after[_check(), float]",
    "charger_outage", "grid_limit_drop",
}


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
            # a key from the file (an unknown field, a zone name) is shown quoted when it holds
            # a line break or other unprintable text, so the message stays one line per problem
            name = part if part.isprintable() else repr(part)
            out += f".{name}" if out else name
    return out


def _show(value: Any, limit: int = 40) -> str:
    """``repr(value)``, shortened in the middle past ``limit`` characters: a 400-digit seed
    or a pasted blob would otherwise bury the rule it broke."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 12]}...{text[-9:]}"


def _bound(bound: Any) -> str:
    """A schema bound as written by a person: 10000000 rather than 1e+07, 0.5 as 0.5."""
    if isinstance(bound, float) and bound.is_integer() and abs(bound) < 1e16:
        return str(int(bound))
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


def _message(err: Mapping[str, Any]) -> str:
    """One pydantic error as ``path: value is not <rule>`` (``path: message`` otherwise)."""
    ctx = err.get("ctx") or {}
    value = err.get("input")
    for key, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if key in ctx:
            return f"{_show(value)} is not {op} {_bound(ctx[key])}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "finite_number":
        return f"{_show(value)} is not a finite number"
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


def _invalid(source: str, problems: list[str]) -> ScenarioError:
    """One problem on one line with its file; several as a count and one line each."""
    if len(problems) == 1:
        return ScenarioError(f"{source}: {problems[0]}")
    return ScenarioError(f"{source}: invalid scenario ({len(problems)} problems)\n"
                         + "\n".join(problems))


def parse_scenario(data: Any, *, source: str = "<dict>", base_dir: Path | None = None) -> Scenario:
    """Validate a mapping as a :class:`Scenario`; relative CSV paths resolve against ``base_dir``."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario is a mapping, got {type(data).__name__}")
    if isinstance(data.get("tariff"), str):  # a bundled tariff's name or a JSON file's path
        try:
            data = {**data, "tariff": read_tariff(data["tariff"], base_dir).model_dump()}
        except TariffError as exc:
            raise ScenarioError(f"{source}: tariff: {exc}") from None
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise _invalid(source, format_validation_error(exc).splitlines()) from None
    if base_dir is not None:
        scenario = _resolve_paths(scenario, base_dir)
    problems = _file_problems(scenario)
    if problems:
        raise _invalid(source, problems)
    return scenario


def _unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be read as a data file, or None.

    Checked at load time so ``evgrid validate`` reports it; the shown path is absolute, since a
    relative one was resolved against the scenario file's folder, not the working directory.
    """
    shown = path.absolute()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"no such file: {shown}"
    except OSError as exc:
        return f"cannot read {shown}: {exc.strerror or exc}"
    if stat.S_ISDIR(mode):
        return f"{shown} is a directory, not a file"
    if not stat.S_ISREG(mode):  # a FIFO or a device: opening it could block or never end
        return f"{shown} is not a regular file"
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        return f"cannot read {shown}: {exc.strerror or exc}"
    return None


def _file_problems(scenario: Scenario) -> list[str]:
    named = [
        (f"facilities[{i}].sessions_csv", f.sessions_csv) for i, f in enumerate(scenario.facilities)
    ]
    named.append(("prices.price_csv", scenario.prices.price_csv))
    out = []
    for field, path in named:
        why = _unreadable(path) if path is not None else None
        if why is not None:
            out.append(f"{field}: {why}")
    return out


def _resolve_paths(scenario: Scenario, base_dir: Path) -> Scenario:
    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else base_dir / p

    facilities = [
        f.model_copy(update={"sessions_csv": fix(f.sessions_csv)}) for f in scenario.facilities
    ]
    prices = scenario.prices.model_copy(update={"price_csv": fix(scenario.prices.price_csv)})
    return scenario.model_copy(update={"facilities": facilities, "prices": prices})


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's error on one line: where (line, column) and what, without the source snippet
    PyYAML appends (it repeats the file's text, which is neither needed nor safe to print)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = "; ".join(str(x) for x in (exc.context, exc.problem) if x) or type(exc).__name__
        text = where + what
    elif isinstance(exc, yaml.reader.ReaderError):
        char = exc.character
        code = ord(char) if isinstance(char, str) else int(char)
        text = f"character #x{code:04x} at position {exc.position}: {exc.reason}"
    else:
        text = str(exc)
    return " ".join(text.split())


def _read_scenario_file(path: Path) -> str:
    """The file's text: a regular file, at most MAX_SCENARIO_FILE_BYTES, UTF-8 (BOM allowed)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read the scenario file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):  # a FIFO or a device could block or never end
        what = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise ScenarioError(f"{path}: no such scenario file ({what})")
    raw = b""
    if info.st_size <= MAX_SCENARIO_FILE_BYTES:
        try:
            with path.open("rb") as fh:
                raw = fh.read(MAX_SCENARIO_FILE_BYTES + 1)  # the file may grow meanwhile
        except OSError as exc:
            raise ScenarioError(
                f"{path}: cannot read the scenario file: {exc.strerror or exc}"
            ) from None
    if info.st_size > MAX_SCENARIO_FILE_BYTES or len(raw) > MAX_SCENARIO_FILE_BYTES:
        raise ScenarioError(
            f"{path}: larger than {MAX_SCENARIO_FILE_BYTES // 2**20} MiB; a scenario file is "
            "YAML text, not data (name recorded sessions with sessions_csv instead)"
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            f"{path}: not a UTF-8 text file (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "a scenario is YAML text"
        ) from None


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a bundled scenario by name, or a YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        text, source, base = _read_scenario_file(path), str(path), path.parent
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
        raise ScenarioError(f"{source}: not valid YAML: {yaml_problem(exc)}") from None
    except RecursionError:
        raise ScenarioError(f"{source}: not valid YAML: nested too deeply") from None
    return parse_scenario(data, source=source, base_dir=base)
