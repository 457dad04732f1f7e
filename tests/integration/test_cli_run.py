"""`evgrid run` end to end: files written, table printed, bad input leaves nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evgrid.cli import app
from evgrid.evaluation.report import PLOTS, write_atomically

runner = CliRunner()


def test_run_small_writes_every_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", "small", "-p", "llf", "-p", "uncontrolled", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "gap to optimum" in res.output
    for name in ["results.json", "timeseries.csv", "report.html", *PLOTS]:
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    assert results["scenario"] == "small" and results["seed"] == 0
    assert set(results["policies"]) == {"llf", "uncontrolled"}
    for kpi in ["energy_delivered_kwh", "demand_met_pct", "cost", "carbon_kg", "peak_kw",
                "limit_violations", "wait_mean_min", "wait_p95_min", "unfinished_sessions"]:
        assert kpi in results["policies"]["llf"] and kpi in results["offline_optimal"]
    assert results["offline_optimal"]["limit_violations"] == 0
    assert results["gap_to_optimal_pct"]["llf"] >= -1e-6
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(PLOTS)
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "temporary folders left behind"


def test_run_replaces_an_existing_folder_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    res = runner.invoke(app, ["run", "small", "-p", "fcfs", "--no-offline", "-q", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert not (out / "stale.txt").exists()
    assert "offline_optimal" not in json.loads((out / "results.json").read_text())["policies"]


def test_bad_scenario_exits_nonzero_and_leaves_no_folder(tmp_path: Path, small_copy, write_yaml) -> None:  # type: ignore[no-untyped-def]
    small_copy["facilities"][1]["zones"]["A"]["chargers"]["max_kw"] = -7
    bad = write_yaml(small_copy)
    out = tmp_path / "never"
    res = runner.invoke(app, ["run", str(bad), "--out", str(out)])
    assert res.exit_code == 2
    assert "facilities[1].zones.A.chargers.max_kw: -7 is not > 0" in res.output
    assert not out.exists()


def test_unknown_policy_and_scenario_list_the_valid_names(tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", "small", "-p", "magic", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "choose from ['uncontrolled', 'fcfs'" in res.output
    res = runner.invoke(app, ["run", "atlantis", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "'city'" in res.output and "'small'" in res.output
    assert not (tmp_path / "x").exists()


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    def boom(folder: Path) -> None:
        (folder / "half.json").write_text("{")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(tmp_path / "out", boom)
    assert list(tmp_path.iterdir()) == []


def test_console_script_help_explains_every_option() -> None:
    res = subprocess.run([sys.executable, "-m", "evgrid.cli", "run", "--help"],
                         capture_output=True, text=True, check=True)
    for option in ["--policy", "--seed", "--out", "--days", "--dt-min", "--offline", "--quiet"]:
        assert option in res.stdout
