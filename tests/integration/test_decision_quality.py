"""Coordination pays where decisions matter (slow: `pytest -m slow`; the full 12-seed figures
come from benchmarks/decision_quality.py)."""

from __future__ import annotations

import pytest

from evgrid.evaluation.runner import OFFLINE, run_experiment
from evgrid.scenario import load_scenario


@pytest.mark.slow
@pytest.mark.parametrize("name", ["workplace", "residential", "depot"])
def test_coordinated_closes_most_of_the_gap_and_delivers_as_much(name: str) -> None:
    sc = load_scenario(name)
    for seed in range(3):
        exp = run_experiment(sc, ["uncontrolled", "llf", "coordinated"], seed=seed)
        k = exp.kpis
        llf, co, off = (k[p]["objective"] for p in ("llf", "coordinated", OFFLINE))
        assert (llf - co) / (llf - off) >= 0.8, (name, seed, llf, co, off)
        assert k["coordinated"]["energy_delivered_kwh"] >= 0.995 * k["llf"]["energy_delivered_kwh"]
        assert k["coordinated"]["cost"] <= 0.7 * k["uncontrolled"]["cost"]
        assert k["coordinated"]["limit_violations"] == 0
