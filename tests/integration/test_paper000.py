"""Seed 000's three layers through the CLI: ``evgrid layout`` writes a scenario ``evgrid run``
accepts, ``evgrid evaluate paper-000 --quick`` runs Tables 3 and 4 end to end, and bad input is
one line with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from evgrid.scenario import load_scenario
from tests.integration.test_cli_errors import run_cli


def test_layout_writes_a_scenario_that_evgrid_run_accepts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "lay"
    code, err = run_cli(["layout", "lot2102", "--out", str(out)], capsys, monkeypatch)
    assert code == 0, err
    summary = json.loads((out / "layout.json").read_text())
    zones = summary["zones"]
    assert set(zones) == {"A", "B", "C", "general"}
    assert sum(z["area_m2"] for z in zones.values()) == pytest.approx(summary["usable_m2"])
    assert sum(z["chargers"] for z in zones.values()) == 500  # lot2102's chargers, kept
    assert summary["islands"]["efficiency_ratio"] > 1 and summary["ilp"]["mip_gap"] <= 1e-3
    assert (out / "layout.png").stat().st_size > 0
    computed = load_scenario(out / "scenario.yaml")
    assert {k: z.spaces for k, z in computed.facilities[0].zones.items()} == {
        k: z["spaces"] for k, z in zones.items()}
    code, err = run_cli(["run", str(out / "scenario.yaml"), "-p", "llf", "--days", "0.25",
                         "--transport", "inprocess", "--no-offline", "-q",
                         "--out", str(tmp_path / "run")], capsys, monkeypatch)
    assert code == 0, err


@pytest.mark.parametrize("args, says", [
    (["layout", "lot2102", "--length-m", "20", "--width-m", "20"],
     "the floor holds 40 spaces, the demand needs 2102"),
    (["layout", "city"], "the scenario has"),  # several facilities: name one
    (["layout", "lot2102", "--length-m", "100000", "--width-m", "100000"],
     "more than the ILP's 20,000"),
])
def test_layout_errors_are_one_line(args: list[str], says: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    code, err = run_cli([*args, "--out", str(tmp_path / "o")], capsys, monkeypatch)
    assert code == 2 and says in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2  # one message (rich may fold it)
    assert not (tmp_path / "o").exists()


def test_layout_refuses_bad_zone_ranges(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    lot = load_scenario("lot2102").model_dump(mode="json")
    lot["facilities"][0]["zones"]["B"]["soc_range"] = [0.45, 0.75]  # overlaps C [0.30, 0.50]
    path = tmp_path / "lot.yaml"
    path.write_text(yaml.safe_dump(lot))
    code, err = run_cli(["layout", str(path), "--out", str(tmp_path / "o")], capsys, monkeypatch)
    assert code == 2 and "overlaps" in err and "Traceback" not in err


def test_evaluate_paper_000_quick_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "p"
    code, err = run_cli(["evaluate", "paper-000", "--quick", "-q", "--out", str(out)],
                        capsys, monkeypatch)
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    t3 = res["table3"]
    assert set(t3) == {"movements_per_retrieval", "charging_vehicles_per_h", "occupancy_pct",
                       "wait_mean_min", "energy_cost_reduction_pct", "recovery_min"}
    for row in t3.values():
        assert set(row) == {"traditional", "single_layer", "uncoordinated", "three_layer"}
        assert all(v["mean"] == v["mean"] for v in row.values())  # no NaN
    assert t3["wait_mean_min"]["traditional"]["paper"] == 18.3
    assert set(res["table4"]) == {"normal", "failures"}
    assert 0 <= res["table4"]["normal"]["adaptability"]["mean"] <= 1
    assert res["table4"]["normal"]["gap_pct"]["mean"] >= -1e-6  # nothing beats the bound
    html = (out / "report.html").read_text()
    assert "Table 3" in html and "18.3" in html and "Why the figures differ" in html
    header = (out / "timeseries.csv").read_text().splitlines()[0]
    assert "queued_three_layer" in header and "relayout" in header


def test_run_routes_with_the_allocation_layer(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r"
    code, err = run_cli(["run", "small", "-p", "llf", "--routing", "layered", "--transport",
                         "inprocess", "--days", "0.5", "-q", "--out", str(out)],
                        capsys, monkeypatch)
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    assert res["routing"] == "layered" and res["policies"]["llf"]["limit_violations"] == 0
