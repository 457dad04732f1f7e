"""Every CLI user error is one line on stderr and exit code 2, never a traceback (through the
console script's ``main``, as a user meets it)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from evgrid.cli import main
from evgrid.scenario import load_scenario


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
            ) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["evgrid", *args])
    monkeypatch.delenv("EVGRID_DEBUG", raising=False)
    with pytest.raises(SystemExit) as info:
        main()
    return int(info.value.code or 0), capsys.readouterr().err


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: [bold]city\nfacilities: [\n")
    nan = tmp_path / "nan.yaml"
    city = load_scenario("small").model_dump(mode="json")
    city["facilities"][0]["x_km"] = float("nan")
    nan.write_text(yaml.safe_dump(city))
    (tmp_path / "empty").mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    sessions = tmp_path / "sessions.csv"
    sessions.write_text("arrival,departure,requested_energy_kwh\n"
                        "2024-01-01T08:00:00Z,2024-01-01T12:00:00Z,10\n")
    bad_tariff = tmp_path / "tariff.json"
    bad_tariff.write_text('{"name": "t", "schedule": [{"times": [1, 8], "tariffs": [0.1, 0.2]}]}')
    winter = tmp_path / "winter.json"
    winter.write_text('{"schedule": [{"effective_start": "12-01", "effective_end": "12-31", '
                      '"times": [0], "tariffs": [0.1]}]}')
    return {"binary": binary, "bad_yaml": bad_yaml, "nan": nan, "file": a_file,
            "sessions": sessions, "empty": tmp_path / "empty", "tariff": bad_tariff,
            "winter": winter}


CASES = [
    (["run", "small", "--seed", "-1"], "--seed"),
    (["run", "{binary}"], "not a UTF-8 text file"),
    (["validate", "{bad_yaml}"], "not valid YAML"),
    (["validate", "{nan}"], "facilities[0].x_km: nan is not a finite number"),
    (["run", "small", "--address", "127.0.0.1:1"], "nothing answers at 127.0.0.1:1"),
    (["run", "small", "--stations-per-actor", "0"], "--stations-per-actor"),
    (["run", "small", "--out", "/proc/evgrid-no/x"], "--out /proc/evgrid-no/x"),
    (["run", "small", "--out", "{file}"], "is a file"),
    (["run", "small", "--out", "/"], "--out /"),
    (["run", "small", "--out", "."], "--out ."),
    (["run", "--resume", "{empty}"], "nothing to resume"),
    (["run", "small", "-p", "nope"], "unknown policy 'nope'"),
    (["run", "nosuchscenario"], "unknown scenario 'nosuchscenario'"),
    (["run", "small", "--tariff", "{tariff}"], "times must start at 0"),
    (["run", "small", "--tariff", "nosuchtariff"], "no such tariff file"),
    (["run", "small", "--tariff", "{winter}"], "no schedule entry covers 2019-07-01"),
    (["replay", "{sessions}", "--chargers", "2", "--charger-kw", "11", "--site-limit-kw", "50",
      "--tariff", "{binary}"], "--tariff"),
    (["replay", "{sessions}", "--chargers", "0", "--charger-kw", "11",
      "--site-limit-kw", "50"], "--chargers"),
    (["coordinator", "--host", "0.0.0.0", "--token", "t"], "loopback only"),
    (["coordinator"], "--token"),
    (["station", "--station-id", "depot"], "--token"),
    (["station", "--station-id", "depot", "--token", "t", "--policy", "{empty}"],
     "no bundle.json"),
    (["coordinator", "--token", "t", "--station-policy", "{empty}"], "no bundle.json"),
    (["run", "small", "-p", "coordinated+learned:{empty}"], "no bundle.json"),
    (["run", "small", "--transport", "inprocess", "--station-resource", "gpu"],
     "--station-resource 'gpu'"),
    (["run", "small", "--station-resource", "a b"], "a Ray resource name"),
    (["chargepoint-sim", "--csms", "http://x:1", "--id", "cp", "--max-kw", "22"], "--csms"),
    (["chargepoint-sim", "--csms", "ws://x:1", "--id", "cp", "--max-kw", "22,x"], "--max-kw"),
    (["chargepoint-sim", "--csms", "ws://x:1", "--id", "cp", "--max-kw", "22",
      "--rate-unit", "kW"], "--rate-unit"),
    (["station", "--site", "{bad_yaml}", "--token", "t"], "--site"),
    (["station", "--site", "{nan}", "--token", "t"], "--site"),
    (["coordinator", "--token", "t", "--field", "--resume", "{empty}"], "--field"),
    (["bogus"], "No such command"),
]


@pytest.mark.parametrize(("args", "says"), CASES, ids=[" ".join(a)[:40] for a, _ in CASES])
def test_a_user_error_is_one_line_and_exit_2(
    args, says, files, capsys, monkeypatch, tmp_path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EVGRID_TOKEN", raising=False)
    argv = [a.format(**files) for a in args]
    code, stderr = run_cli(argv, capsys, monkeypatch)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert says in lines[0] and "Traceback" not in stderr
    assert files["file"].read_text() == "mine", "a user's file was touched"


def test_a_yaml_error_keeps_its_brackets(files, capsys, monkeypatch) -> None:
    """rich would eat ``[bold]`` as markup; the message must show it as written."""
    bad = files["empty"].parent / "tag.yaml"
    bad.write_text("a: !x[bold]y 1\n")
    code, stderr = run_cli(["validate", str(bad)], capsys, monkeypatch)
    assert code == 2 and "[bold]" in stderr
