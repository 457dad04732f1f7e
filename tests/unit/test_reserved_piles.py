"""Reserved piles for high-priority vehicles (§2.2 of 004_8f5fa6c845a0843d.txt): the station CTMC
against Erlang C, and the trend of the paper's last table."""

from __future__ import annotations

import itertools

import pytest

from evgrid.optim.availability import erlang_b
from evgrid.optim.reserved_piles import (
    PAPER_RESERVED_TABLE,
    evaluate_plan,
    priority_parameter,
    reserved_pile_count,
    reserved_table,
)


@pytest.mark.parametrize("discipline", ["random", "priority"])
def test_nothing_reserved_is_erlang_c(discipline: str) -> None:
    # With r = 0 the station is M/M/n; the class-averaged wait is Erlang C's under any
    # work-conserving order (and each class's under random order).
    n, mu, lh, ll = 12, 0.4, 2.4, 1.3
    plan = evaluate_plan(n, 0, mu, lh, ll, discipline=discipline)
    # Erlang C from Erlang B (independent of the CTMC): C = n·B / (n − a·(1 − B)),
    # W_q = C / (n·μ − λ)
    a = (lh + ll) / mu
    b = float(erlang_b(n, a))
    ref = 60 * (n * b / (n - a * (1 - b))) / (n * mu - (lh + ll))
    assert plan.wait_avg_min == pytest.approx(ref, rel=1e-3)
    if discipline == "random":
        assert plan.wait_reserved_min == pytest.approx(plan.wait_walkin_min, rel=1e-6)
    else:
        assert plan.wait_reserved_min < plan.wait_walkin_min


def test_reserving_helps_reserved_and_hurts_walkins() -> None:
    plans = [evaluate_plan(12, k, 0.4, 2.4, 1.3) for k in range(4)]
    assert all(a.wait_reserved_min > b.wait_reserved_min for a, b in itertools.pairwise(plans))
    assert all(a.wait_walkin_min < b.wait_walkin_min for a, b in itertools.pairwise(plans))
    assert all(a.wait_avg_min <= b.wait_avg_min + 1e-9 for a, b in itertools.pairwise(plans))


def test_priority_parameter_rises_and_clips() -> None:
    pcs = [priority_parameter(r) for r in range(14, 27, 2)]
    assert pcs[0] == 0.0 and all(b > a for a, b in itertools.pairwise(pcs))
    assert priority_parameter(1e6, beta=14, alpha=0.04, lo=0.0, hi=0.1) == 0.1
    assert priority_parameter(1.0, beta=14, alpha=0.04, lo=0.0, hi=0.1) == 0.0


def test_chosen_count_within_bounds() -> None:
    plan = reserved_pile_count(12, 0.4, 2.4, 1.3, max_reserved=4)
    assert 0 <= plan.reserved <= 4
    if plan.feasible:
        assert plan.wait_reserved_min <= 15 and plan.wait_walkin_min <= 45
    others = [evaluate_plan(12, k, 0.4, 2.4, 1.3) for k in range(5)]
    feas = [p for p in others if p.feasible] or others
    assert plan.objective_min <= min(p.objective_min for p in feas) + 1e-9


def test_table_reproduces_the_papers_trend() -> None:
    rows = reserved_table(rates=(14, 20, 26), max_reserved=2)
    by = {(r["rate_reserved"], r["reserved"]): r for r in rows}
    # P_c of the plan with one reserved pile rises with r_h (as in the paper)
    pcs = [by[(rh, 1)]["priority"] for rh in (14.0, 20.0, 26.0)]
    assert pcs == sorted(pcs) and pcs[-1] > pcs[0]
    # waits grow with demand
    assert by[(26.0, 0)]["wait_avg_min"] > by[(20.0, 0)]["wait_avg_min"] > by[(14.0, 0)][
        "wait_avg_min"]
    # at the highest r_h, reserving 2 piles makes the regional average worse than reserving 0
    assert by[(26.0, 2)]["wait_avg_min"] > by[(26.0, 0)]["wait_avg_min"]
    assert all(0 <= r["chosen"] <= 2 for r in rows)
    # the top of the paper's range lands near the paper's figure (36.8 min, nothing reserved)
    paper = {(r["rate_reserved"], r["reserved"]): r for r in PAPER_RESERVED_TABLE}
    assert abs(by[(26.0, 0)]["wait_avg_min"] - paper[(26.0, 0)]["wait_avg_min"]) < 10
