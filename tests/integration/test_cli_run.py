"""`evgrid run` end to end: files written, table printed, bad input leaves nothing behind,
`--out` deletes nothing evgrid did not write."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evgrid.cli import app
from evgrid.evaluation.output import MARKER, prepare_output, read_marker
from evgrid.evaluation.report import EXPERIMENT_FILES, PLOTS

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
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, *EXPERIMENT_FILES])


def test_run_rewrites_its_own_folder_and_keeps_the_users_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", "small", "-p", "llf", "-q", "--out", str(out)])
    assert res.exit_code == 0, res.output
    (out / "notes.txt").write_text("mine")
    res = runner.invoke(app, ["run", "small", "-p", "fcfs", "--no-offline", "-q", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "notes.txt").read_text() == "mine", "--out deletes nothing evgrid did not write"
    results = json.loads((out / "results.json").read_text())
    assert set(results["policies"]) == {"fcfs"} and not results.get("offline_optimal")
    marker = read_marker(out)
    assert marker is not None and marker.complete
    assert set(marker.files) == set(EXPERIMENT_FILES)
    assert [p.name for p in tmp_path.iterdir()] == ["out"], "temporary folders left behind"


def test_run_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    res = runner.invoke(app, ["run", "small", "-p", "fcfs", "--no-offline", "-q", "--out", str(out)])
    assert res.exit_code != 0
    # One line, whether the CLI prints it (exit 2) or the OutputError reaches the runner.
    assert "was not written by evgrid" in res.output + str(res.exception)
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
    assert (out / "thesis.tex").read_text() == "years of work"


@pytest.mark.parametrize("where", [".", "file"])
def test_run_refuses_the_current_folder_and_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("data")
    res = runner.invoke(app, ["run", "small", "-p", "fcfs", "--no-offline", "-q", "--out", where])
    assert res.exit_code != 0
    assert ("is the current folder" if where == "." else "is a file, not a folder") in (
        res.output + str(res.exception)
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    assert (tmp_path / "file").read_text() == "data"


def test_bad_scenario_exits_nonzero_and_leaves_no_folder(tmp_path: Path, small_copy, write_yaml) -> None:
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
        prepare_output(tmp_path / "out").write(boom)
    assert list(tmp_path.iterdir()) == []


def test_console_script_help_explains_every_option() -> None:
    res = subprocess.run([sys.executable, "-m", "evgrid.cli", "run", "--help"],
                         capture_output=True, text=True, check=True)
    for option in ["--policy", "--seed", "--out", "--days", "--dt-min", "--offline", "--quiet"]:
        assert option in res.stdout


def test_a_killed_run_resumes_with_the_uninterrupted_results(tmp_path: Path) -> None:
    """SIGKILL in the middle of the coordinated policy; `evgrid run --resume` finishes the day
    from the checkpoint, skipping the finished baseline, with exactly the KPIs of a run that
    was never interrupted (ADMM wall times aside)."""
    import json
    import subprocess
    import sys
    import time

    import numpy as np

    cli = [sys.executable, "-c", "from evgrid.cli import main; main()"]
    args = ["run", "small", "-p", "llf", "-p", "coordinated", "--transport", "inprocess",
            "--no-offline", "-q"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cli, *args, "--out", str(killed)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    progress = killed / "checkpoint" / "progress.npz"
    deadline = time.monotonic() + 120
    step = -1
    while step < 20:
        assert proc.poll() is None and time.monotonic() < deadline, "killed too late"
        try:
            with np.load(progress, allow_pickle=False) as d:
                step = int(json.loads(str(d["meta"]))["step"])
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    done = subprocess.run([*cli, "run", "--resume", str(killed)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "resuming small: finished llf" in done.stderr
    whole = tmp_path / "whole"
    subprocess.run([*cli, *args, "--out", str(whole)], check=True, capture_output=True)
    a = json.loads((killed / "results.json").read_text())["policies"]
    b = json.loads((whole / "results.json").read_text())["policies"]
    for policy in ("llf", "coordinated"):
        diff = {k for k in a[policy] if a[policy][k] != b[policy][k] and "wall" not in k}
        assert not diff, (policy, {k: (a[policy][k], b[policy][k]) for k in diff})
    assert not (killed / "checkpoint").exists()
