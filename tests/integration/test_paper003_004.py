"""Seeds 003 and 004 through the CLI: ``evgrid evaluate paper-003 --quick`` and ``paper-004
--quick`` run end to end, and bad input is one line with exit code 2 that writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_cli_errors import run_cli


def test_evaluate_paper_003_quick_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "p3"
    code, err = run_cli(["evaluate", "paper-003", "--quick", "-q", "--out", str(out)],
                        capsys, monkeypatch)
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    alg = res["algorithms"]["summary"]
    assert set(alg) == {"milp", "hasp", "tabu", "bees", "de"}
    assert alg["milp"]["success_pct_mean"] == 100.0 and alg["hasp"]["infeasible"] == 0
    # the M/M/c/c forecast knows more than the day's average and than "as it is now"
    av = res["availability"]["summary"]
    for tau in ("15", "30", "60"):
        assert av[tau]["brier_forecast"][0] < av[tau]["brier_climatology"][0]
        assert av[tau]["brier_forecast"][0] < av[tau]["brier_persistence"][0]
    routing = res["routing"]["summary"]
    assert set(routing) == {"nearest", "cohorts", "assignment", "assignment-radius"}
    # the assignment minimises what drivers pay: it pays less than the nearest free charger
    assert (routing["assignment"]["driver_cost_per_ev"][0]
            < routing["nearest"]["driver_cost_per_ev"][0])
    assert "Seed 003" in (out / "report.html").read_text()


def test_evaluate_paper_004_quick_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "p4"
    code, err = run_cli(["evaluate", "paper-004", "--quick", "-q", "--out", str(out)],
                        capsys, monkeypatch)
    assert code == 0, err
    res = json.loads((out / "results.json").read_text())
    f = res["forecast"]["summary"]
    assert f["attention_lstm"]["mae"][0] < f["seasonal_naive"]["mae"][0]
    assert len(res["forecast"]["priority_by_hour"]) == 24
    rows = res["reserved_piles"]
    assert {r["rate_reserved"] for r in rows} == set(range(14, 27, 2))
    top = {r["reserved"]: r for r in rows if r["rate_reserved"] == 26}
    assert top[2]["wait_avg_min"] > top[0]["wait_avg_min"]  # the paper's trend at r_h = 26
    s = res["strategies"]
    assert set(s) == {"fifs", "rfwda", "acp"}
    assert s["acp"]["avg_wait_min"]["mean"] < s["fifs"]["avg_wait_min"]["mean"]
    assert set(res["city"]["summary"]) == {"nearest", "reservations"}


@pytest.mark.parametrize("args, says", [
    (["evaluate", "paper-004", "--matcher", "{tmp}/none"], "not a matcher manifest"),
    (["evaluate", "paper-004", "--scenario", "depot", "--seeds", "1"], "no cohort reserves"),
    (["train-matcher", "--out", "{tmp}/busy"], "not empty"),
    (["evaluate", "paper-003", "--seeds", "0"], "--seeds"),
])
def test_bad_input_is_one_line(args: list[str], says: str, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if args[0] == "evaluate":
        args += ["--out", str(tmp_path / "o")]
    code, err = run_cli(args, capsys, monkeypatch)
    assert code == 2 and says in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) <= 3
    assert (tmp_path / "busy" / "mine.txt").read_text() == "keep"
    assert not (tmp_path / "o" / "results.json").exists()
