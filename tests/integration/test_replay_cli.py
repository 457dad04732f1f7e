"""`evgrid replay` end to end: recorded sessions at one site, bad input reported or refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evgrid.cli import app

runner = CliRunner()


def said(text: str, output: str) -> bool:
    """``text`` appears in ``output`` whatever line breaks rich's wrapping put into either."""
    return "".join(text.split()) in "".join(output.split())


SITE = ["--chargers", "6", "--charger-kw", "11", "--site-limit-kw", "30"]


def session_rows(n: int = 30, seed: int = 3) -> list[str]:
    """``n`` sessions arriving on 2024-05-06, 1-8 h stays, 3-30 kWh.

    Arrivals are written in CEST (+02:00) and departures in UTC (Z), as mixed exports are.
    """
    rng = np.random.default_rng(seed)
    day = datetime(2024, 5, 6, tzinfo=UTC)
    rows = []
    for i in range(n):
        arr = day + timedelta(hours=float(rng.uniform(0.5, 15.0)))
        dep = arr + timedelta(hours=float(rng.uniform(1.0, 8.0)))
        a = (arr + timedelta(hours=2)).replace(tzinfo=None).isoformat(timespec="minutes")
        a += "+02:00"
        d = dep.isoformat(timespec="minutes").replace("+00:00", "Z")
        rows.append(f"{a},{d},{rng.uniform(3.0, 30.0):.2f},CS-{i % 4}")
    return rows


def write_sessions(path: Path, rows: list[str]) -> Path:
    path.write_text("arrival,departure,requested_energy_kwh,station_id\n" + "\n".join(rows) + "\n")
    return path


def test_replay_writes_results_and_llf_respects_the_bound(tmp_path: Path) -> None:
    rows = session_rows()
    rows.insert(4, "2024-05-06T10:00:00Z,2024-05-06T09:00:00Z,5,CS-9")  # line 6: skipped
    csv = write_sessions(tmp_path / "sessions.csv", rows)
    out = tmp_path / "out"
    res = runner.invoke(
        app, ["replay", str(csv), *SITE, "-p", "llf", "-p", "uncontrolled", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert said("skipped 1 row(s) (1 departure not after arrival); first at line(s) 6", res.stderr)
    results = json.loads((out / "results.json").read_text())
    assert {"scenario", "seed", "policies", "offline_optimal"} <= set(results)
    assert results["scenario"] == "replay-sessions"
    assert results["steps"] == 288 and results["dt_min"] == 5
    assert set(results["policies"]) == {"llf", "uncontrolled"}
    llf, best = results["policies"]["llf"], results["offline_optimal"]
    assert llf["sessions"] == best["sessions"] == 30
    assert llf["objective"] >= best["objective"] - 1e-6 * abs(best["objective"])
    assert llf["limit_violations"] == 0
    for kpis in [*results["policies"].values(), best]:
        assert kpis["wait_mean_min"] >= 0 and kpis["energy_delivered_kwh"] > 0
    assert llf["peak_kw"] <= 30 + 1e-9
    # 6 x 11 kW behind a 30 kW connection: uncontrolled asks for more than the site can carry
    assert results["policies"]["uncontrolled"]["limit_cut_kwh"] > 0


def test_replay_uses_the_price_file_on_the_session_clock(tmp_path: Path) -> None:
    csv = write_sessions(tmp_path / "s.csv", session_rows(8))
    start = datetime(2024, 5, 6, tzinfo=UTC)
    prices = tmp_path / "prices.csv"
    prices.write_text(
        "timestamp,price_per_kwh\n"
        + "".join(f"{(start + timedelta(hours=h)).isoformat()},0.1\n" for h in range(48))
    )
    out = tmp_path / "out"
    args = ["replay", str(csv), *SITE, "--price-csv", str(prices), "-p", "edf", "--no-offline"]
    res = runner.invoke(app, [*args, "-q", "--out", str(out)])
    assert res.exit_code == 0, res.output
    edf = json.loads((out / "results.json").read_text())["policies"]["edf"]
    assert edf["cost"] == pytest.approx(0.1 * edf["grid_energy_kwh"])
    # a horizon the price file does not cover is refused before anything runs
    res = runner.invoke(app, [*args, "--days", "3", "--out", str(tmp_path / "never")])
    assert res.exit_code == 2
    assert said("prices cover 2024-05-06T00:00:00+00:00 to 2024-05-08T00:00:00+00:00", res.output)
    assert not (tmp_path / "never").exists()


def test_all_rows_bad_exits_nonzero_and_writes_nothing(tmp_path: Path) -> None:
    csv = write_sessions(
        tmp_path / "bad.csv",
        [
            "2024-05-06T10:00:00,2024-05-06T12:00:00,5,a",  # naive
            "2024-05-06T10:00:00Z,2024-05-06T12:00:00Z,-5,b",  # negative energy
        ],
    )
    out = tmp_path / "out"
    res = runner.invoke(app, ["replay", str(csv), *SITE, "-p", "llf", "--out", str(out)])
    assert res.exit_code == 2
    assert said("no usable sessions", res.output)
    assert said("skipped 2 row(s)", res.output) and said("line(s) 2, 3", res.output)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_missing_column_and_empty_horizon_exit_2(tmp_path: Path) -> None:
    csv = write_sessions(tmp_path / "s.csv", session_rows(5))
    out = tmp_path / "out"
    res = runner.invoke(app, ["replay", str(csv), *SITE, "--energy-col", "kWh", "--out", str(out)])
    assert res.exit_code == 2
    assert said("no column 'kWh'", res.output) and said("'requested_energy_kwh'", res.output)
    res = runner.invoke(
        app, ["replay", str(csv), *SITE, "--start", "2025-01-01", "--out", str(out)]
    )
    assert res.exit_code == 2
    assert said("falls in the horizon", res.output)
    assert not out.exists()
