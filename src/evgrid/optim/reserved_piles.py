"""Reserving charging piles for high-priority vehicles (§2.1–2.2 of 004_8f5fa6c845a0843d.txt).

Seed 004 forecasts the arrival rate of high-priority (reservation) vehicles, turns it into a
charging-priority parameter ``P_c`` (§2.1: symbols α "normalised arrival-rate deviation factor",
β "initial average arrival rate", upper/lower bounds of ``P_c``) and then picks how many piles of
a station to hold back for them (§2.2) by trading the queue waits of reserved and random
(walk-in) vehicles with a balance factor φ, subject to expected-wait bounds ``E_min/E_max``.
The paper gives the symbols, the setup (μ = 0.4 /h per pile, r_h 14–26 /h, r_l 9–14 /h, waits
15–45 min, φ = 10) and a result table, but not the queueing formulas or the number of piles.

Our model (a reading; every choice is a parameter):

* **Region.** ``n_stations`` identical stations of ``n_piles`` piles share the regional arrival
  rates evenly (Poisson splitting keeps each station's streams Poisson). Default: 10 stations of
  12 piles, 48 veh/h of capacity against the paper's top demand of 26 + 14 = 40 veh/h, sized so
  that the top-demand, nothing-reserved wait lands at the paper's ≈ 35 min. (The paper's
  ``P_c`` column hints at 20-pile stations — its rows for one r_h differ by exactly
  ``0.05 = 1/20`` — but 6 such stations, the fewest that are stable at 40 veh/h, wait only
  ≈ 15 min at the top: pass ``n_piles=20, n_stations=6`` to see it.) No stable M/M/c region
  reproduces the paper's *gradual* rise (23 → 37 min while demand grows 1.7×): waits that are
  ≈ 35 min at 83 % load are ≈ 0.5 min at 48 % load. We match the top of the range and the trend.
* **Station** — an exact CTMC, solved with scipy: ``r`` reserved piles only high-priority
  vehicles may start on, ``n − r`` shared piles anyone may use, one waiting line per class.
  A high-priority arrival takes a free reserved pile, else a free shared pile, else queues; a
  walk-in takes a free shared pile, else queues. A freed reserved pile serves only the
  high-priority line and otherwise *idles* — that idling while walk-ins wait is the price of
  reserving, and it is what makes reserving two piles hurt the regional average at high load
  (the paper's trend). A freed shared pile goes to a waiting vehicle in random order
  (``discipline="random"``: a high-priority one with probability ``q_h/(q_h + q_l)``; the same
  queue total as FCFS, whose class order would blow up the state space), so the reserved piles
  are the high-priority vehicles' only privilege. ``discipline="priority"`` gives them
  non-preemptive head-of-line priority as well — then reserving barely helps them (≤ 0.5 min
  in the default region), which is why it is not the default. Waiting lines are truncated
  at ``queue_cap``; states ``(i, j, q_h, q_l)`` with ``q_h > 0 ⇒`` all piles busy and
  ``q_l > 0 ⇒`` all shared piles busy. Waits follow from Little's law per class.
* **Objective.** ``J = (φ·λ_h·W_h + λ_l·W_l) / (φ·λ_h + λ_l)`` — the φ-weighted regional wait
  (§2.2: φ weighs the reserved vehicles' average queue wait against the random vehicles').
  ``wait_avg_min`` in a plan is the *unweighted* arrival-weighted regional average ``T_avg``.
  With equal service rates a reserved pile can only add idleness, so the unweighted average
  never improves by reserving (the paper's small gains at low r_h, 22.1 vs 23.3 min, cannot come
  from an honest work-conserving model); the weighted objective can, and does, at low load.
* **Bounds.** ``E_min`` (15 min) caps the high-priority wait and ``E_max`` (45 min) the walk-in
  wait; a plan is ``feasible`` when both hold. ``reserved_pile_count`` minimises ``J`` over the
  feasible counts, or over all counts when none is feasible (then ``feasible`` is False).
  ``e_min`` / ``e_max`` of a plan are the lower and higher of the two class waits — our reading
  of the paper's "minimum / maximum desired queue waiting time" columns, which vary by row.
* **P_c.** ``priority_parameter`` is the clipped normalised deviation of the forecast from β;
  a plan with ``k ≥ 1`` reserved piles carries ``P_c + (k − 1)/n_piles`` (the share of the piles
  reserved beyond the first), and 0 when nothing is reserved — the structure of the paper's
  table, whose rows for one r_h differ by one pile's share.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve

__all__ = [
    "PAPER_RESERVED_TABLE",
    "PAPER_SETUP",
    "ReservedPlan",
    "evaluate_plan",
    "priority_parameter",
    "reserved_pile_count",
    "reserved_table",
]

# §5.3 of 004_8f5fa6c845a0843d.txt, last table, verbatim (waits in minutes). Printed beside our
# rows only; nothing in the model reads it.
_PAPER_ROWS: dict[int, list[tuple[float, int, float, float, float]]] = {
    14: [(0.05, 1, 14, 30, 22.1), (0.0, 0, 15, 31, 23.3)],
    16: [(0.057, 2, 14, 30, 23.4), (0.007, 1, 15, 31, 23.4), (0.0, 0, 16, 32, 24.2)],
    18: [(0.065, 2, 15, 31, 25.9), (0.015, 1, 16, 32, 25.6), (0.0, 0, 17, 33, 26.7)],
    20: [(0.071, 2, 16, 32, 28.7), (0.021, 1, 17, 33, 28.1), (0.0, 0, 18, 34, 28.4)],
    22: [(0.077, 2, 17, 33, 32.5), (0.027, 1, 18, 34, 30.3), (0.0, 0, 19, 35, 31.7)],
    24: [(0.082, 2, 18, 34, 38.6), (0.032, 1, 19, 35, 34.2), (0.0, 0, 20, 36, 33.1)],
    26: [(0.086, 2, 19, 35, 46.7), (0.036, 1, 20, 36, 39.4), (0.0, 0, 21, 37, 36.8)],
}
PAPER_RESERVED_TABLE: list[dict] = [
    {"rate_reserved": float(rh), "priority": pc, "reserved": k, "e_min": lo, "e_max": hi,
     "wait_avg_min": avg}
    for rh, rows in _PAPER_ROWS.items() for (pc, k, lo, hi, avg) in rows
]

# §5.1 of 004_8f5fa6c845a0843d.txt, simulation parameters.
PAPER_SETUP = dict(mu_per_h=0.4, reserved_rate_per_h=(14, 26), walkin_rate_per_h=(9, 14),
                   wait_min=(15, 45), phi=10)

# Our calibration of §2.1's P_c (the paper gives no α, β or bounds): β = the bottom of the
# paper's r_h range (no extra priority at the base rate), α sized so that P_c stays a few
# percent over that range, [lo, hi] = [0, 0.1].
DEFAULT_BETA = 14.0
DEFAULT_ALPHA = 0.042
DEFAULT_PC_BOUNDS = (0.0, 0.1)


def priority_parameter(rate_forecast: float, *, beta: float = DEFAULT_BETA,
                       alpha: float = DEFAULT_ALPHA, lo: float = DEFAULT_PC_BOUNDS[0],
                       hi: float = DEFAULT_PC_BOUNDS[1]) -> float:
    """``P_c = clip(α·(r̂_h − β)/β, lo, hi)`` from the forecast high-priority arrival rate.

    §2.1 of 004_8f5fa6c845a0843d.txt names α "normalised arrival-rate deviation factor", β
    "initial average arrival rate" and upper/lower bounds of ``P_c`` but prints no formula; the
    plainest reading of those names is a linear response to the relative deviation of the
    forecast from β, clipped. Monotone non-decreasing in the forecast for ``α ≥ 0`` — more
    booked demand, more priority.
    """
    if beta <= 0:
        raise ValueError("beta must be > 0")
    if lo > hi:
        raise ValueError("need lo <= hi")
    return float(min(max(alpha * (rate_forecast - beta) / beta, lo), hi))


@dataclass(frozen=True)
class ReservedPlan:
    """One station plan: ``reserved`` piles held for high-priority vehicles, and its waits [min].

    ``wait_avg_min`` is the arrival-weighted (unweighted) average ``T_avg``; ``objective_min``
    the φ-weighted one that :func:`reserved_pile_count` minimises; ``e_min``/``e_max`` the lower
    and higher class waits; ``feasible`` whether the wait bounds hold; ``blocked`` the share of
    arrivals lost at the truncated waiting line (≈ 0 unless the station is near overload).
    """

    reserved: int
    priority: float
    wait_reserved_min: float
    wait_walkin_min: float
    wait_avg_min: float
    e_min: float
    e_max: float
    feasible: bool
    objective_min: float = math.nan
    blocked: float = 0.0


@lru_cache(maxsize=512)  # tables and count searches revisit the same stations
def _station_waits(n: int, r: int, mu: float, lam_h: float, lam_l: float,
                   cap: int, discipline: str = "random") -> tuple[float, float, float]:
    """Exact stationary class waits [h] of the two-class station CTMC (see module docstring).

    Returns ``(W_h, W_l, blocked share)``. States: ``(i, j, 0, 0)`` with ``i ≤ r`` busy reserved
    and ``j ≤ s = n − r`` busy shared piles; ``(i, s, 0, q_l)`` with ``q_l ∈ 1..cap``;
    ``(r, s, q_h, q_l)`` with ``q_h ∈ 1..cap``, ``q_l ∈ 0..cap``.
    """
    s = n - r
    index: dict[tuple[int, int, int, int], int] = {}
    for i in range(r + 1):
        for j in range(s + 1):
            index[(i, j, 0, 0)] = len(index)
        for ql in range(1, cap + 1):
            index[(i, s, 0, ql)] = len(index)
    for qh in range(1, cap + 1):
        for ql in range(cap + 1):
            index[(r, s, qh, ql)] = len(index)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []

    def add(a: int, state: tuple[int, int, int, int], rate: float) -> None:
        if rate > 0:
            b = index[state]
            rows.extend((a, a))
            cols.extend((b, a))
            vals.extend((rate, -rate))

    for (i, j, qh, ql), a in index.items():
        # high-priority arrival: reserved pile, else shared pile, else its line
        if i < r:
            add(a, (i + 1, j, qh, ql), lam_h)
        elif j < s:
            add(a, (i, j + 1, qh, ql), lam_h)
        elif qh < cap:
            add(a, (i, j, qh + 1, ql), lam_h)
        # walk-in arrival: shared pile, else its line
        if j < s:
            add(a, (i, j + 1, qh, ql), lam_l)
        elif ql < cap:
            add(a, (i, j, qh, ql + 1), lam_l)
        # a reserved pile frees: the high-priority head takes it, else it idles
        add(a, (i, j, qh - 1, ql) if qh > 0 else (i - 1, j, qh, ql), i * mu)
        # a shared pile frees: a waiting vehicle takes it (see ``discipline``), else it idles
        if qh + ql == 0:
            add(a, (i, j - 1, qh, ql), j * mu)
        else:
            to_h = (1.0 if qh > 0 else 0.0) if discipline == "priority" else qh / (qh + ql)
            add(a, (i, j, qh - 1, ql), j * mu * to_h)
            add(a, (i, j, qh, ql - 1), j * mu * (1.0 - to_h))
    m = len(index)
    qt = coo_matrix((vals, (cols, rows)), shape=(m, m)).tocsr().tolil()  # Qᵀ
    qt[0, :] = np.ones(m)  # replace one balance equation by Σπ = 1
    rhs = np.zeros(m)
    rhs[0] = 1.0
    pi = np.maximum(spsolve(qt.tocsr(), rhs), 0.0)
    pi /= pi.sum()
    keys = np.array(list(index), dtype=int)
    eq_h = float(pi @ keys[:, 2])
    eq_l = float(pi @ keys[:, 3])
    full_h = float(pi[(keys[:, 2] == cap)].sum())  # high-priority line full
    full_l = float(pi[(keys[:, 3] == cap)].sum())
    acc_h = lam_h * (1 - full_h)
    acc_l = lam_l * (1 - full_l)
    w_h = eq_h / acc_h if acc_h > 0 else 0.0
    w_l = eq_l / acc_l if acc_l > 0 else 0.0
    tot = lam_h + lam_l
    blocked = (lam_h * full_h + lam_l * full_l) / tot if tot > 0 else 0.0
    return w_h, w_l, blocked


def evaluate_plan(n_piles: int, reserved: int, mu: float, rate_reserved: float,
                  rate_walkin: float, *, wait_bounds_min: tuple[float, float] = (15.0, 45.0),
                  phi: float = 10.0, priority: float | None = None, queue_cap: int = 60,
                  max_blocked: float = 1e-3, discipline: str = "random") -> ReservedPlan:
    """Waits of one station with ``reserved`` of its ``n_piles`` piles held for high priority.

    Rates are per station [1/h]. ``priority`` is the forecast ``P_c`` (from
    :func:`priority_parameter`; default: computed from ``rate_reserved`` with our calibration)
    and the plan carries ``P_c + (reserved − 1)/n_piles`` (0 when nothing is reserved). A plan
    whose truncated lines lose more than ``max_blocked`` of arrivals is overloaded: its waits are
    reported as computed (a lower bound) and it is infeasible.
    """
    if not 0 <= reserved <= n_piles or n_piles < 1:
        raise ValueError("need 0 <= reserved <= n_piles and n_piles >= 1")
    if mu <= 0 or rate_reserved < 0 or rate_walkin < 0:
        raise ValueError("need mu > 0 and rates >= 0")
    if discipline not in ("random", "priority"):
        raise ValueError("discipline is 'random' or 'priority'")
    w_h, w_l, blocked = _station_waits(n_piles, reserved, mu, rate_reserved, rate_walkin,
                                       queue_cap, discipline)
    w_h, w_l = 60.0 * w_h, 60.0 * w_l
    tot = rate_reserved + rate_walkin
    avg = (rate_reserved * w_h + rate_walkin * w_l) / tot if tot > 0 else 0.0
    wt = phi * rate_reserved + rate_walkin
    obj = (phi * rate_reserved * w_h + rate_walkin * w_l) / wt if wt > 0 else 0.0
    pc = priority_parameter(rate_reserved) if priority is None else priority
    plan_pc = 0.0 if reserved == 0 else pc + (reserved - 1) / n_piles
    feasible = (w_h <= wait_bounds_min[0] and w_l <= wait_bounds_min[1]
                and blocked <= max_blocked)
    return ReservedPlan(reserved=reserved, priority=plan_pc, wait_reserved_min=w_h,
                        wait_walkin_min=w_l, wait_avg_min=avg, e_min=min(w_h, w_l),
                        e_max=max(w_h, w_l), feasible=feasible, objective_min=obj,
                        blocked=blocked)


def _candidates(n_piles: int, mu: float, rate_reserved: float, rate_walkin: float,
                wait_bounds_min: tuple[float, float], phi: float, max_reserved: int | None,
                priority: float | None, queue_cap: int, discipline: str) -> list[ReservedPlan]:
    top = n_piles if max_reserved is None else min(max_reserved, n_piles)
    return [evaluate_plan(n_piles, k, mu, rate_reserved, rate_walkin,
                          wait_bounds_min=wait_bounds_min, phi=phi, priority=priority,
                          queue_cap=queue_cap, discipline=discipline) for k in range(top + 1)]


def reserved_pile_count(n_piles: int, mu: float, rate_reserved: float, rate_walkin: float, *,
                        wait_bounds_min: tuple[float, float] = (15.0, 45.0), phi: float = 10.0,
                        max_reserved: int | None = None, priority: float | None = None,
                        queue_cap: int = 60, discipline: str = "random") -> ReservedPlan:
    """§2.2 of 004_8f5fa6c845a0843d.txt: the reserved count minimising the φ-weighted wait.

    Enumerates ``0..max_reserved`` (default: half the piles — beyond that the walk-ins' line
    explodes in any loaded station, so it only slows the search) and keeps the feasible
    plan with the least objective; ties go to fewer reserved piles. If no count meets the wait
    bounds, the least-objective plan is returned with ``feasible = False``.
    """
    top = max(1, n_piles // 2) if max_reserved is None else max_reserved
    plans = _candidates(n_piles, mu, rate_reserved, rate_walkin, wait_bounds_min, phi, top,
                        priority, queue_cap, discipline)
    pool = [p for p in plans if p.feasible] or plans
    return min(pool, key=lambda p: (round(p.objective_min, 9), p.reserved))


def reserved_table(rates: Iterable[float] = range(14, 27, 2), *, n_piles: int = 12,
                   n_stations: int = 10, mu: float = 0.4,
                   walkin_rate: float | tuple[float, float] = (9.0, 14.0),
                   reserved_range: tuple[float, float] = (14.0, 26.0),
                   wait_bounds_min: tuple[float, float] = (15.0, 45.0), phi: float = 10.0,
                   show_reserved: tuple[int, ...] = (2, 1, 0), max_reserved: int | None = None,
                   queue_cap: int = 60, discipline: str = "random") -> list[dict]:
    """Our version of the last table of 004_8f5fa6c845a0843d.txt, same columns, by regional r_h.

    For each regional high-priority rate ``r_h`` the walk-in rate is ``walkin_rate`` if a number,
    else interpolated linearly over the paper's ranges (r_h 14→26 ↔ r_l 9→14: both grow with
    demand). Rates are split over ``n_stations``. Each row is one reserved count (the paper shows
    2, 1, 0) with the same columns as :data:`PAPER_RESERVED_TABLE`, plus ``chosen`` (the count
    :func:`reserved_pile_count` picks over ``0..max_reserved``, default half the piles), the
    class waits, the φ-weighted objective and feasibility. The paper's r_h = 14 row has no
    2-pile case; we show it.
    """
    out: list[dict] = []
    top = max(max(show_reserved), max(1, n_piles // 2) if max_reserved is None else max_reserved)
    for rh in rates:
        rh = float(rh)
        if isinstance(walkin_rate, tuple):
            lo_h, hi_h = reserved_range
            frac = 0.0 if hi_h == lo_h else min(max((rh - lo_h) / (hi_h - lo_h), 0.0), 1.0)
            rl = walkin_rate[0] + frac * (walkin_rate[1] - walkin_rate[0])
        else:
            rl = float(walkin_rate)
        lam_h, lam_l = rh / n_stations, rl / n_stations
        pc = priority_parameter(rh)
        plans = _candidates(n_piles, mu, lam_h, lam_l, wait_bounds_min, phi, top, pc,
                            queue_cap, discipline)
        pool = [p for p in plans if p.feasible] or plans
        best = min(pool, key=lambda p: (round(p.objective_min, 9), p.reserved))
        for k in show_reserved:
            p = plans[k]
            out.append({"rate_reserved": rh, "rate_walkin": rl, "priority": round(p.priority, 4),
                        "reserved": k, "e_min": round(p.e_min, 1), "e_max": round(p.e_max, 1),
                        "wait_avg_min": round(p.wait_avg_min, 1),
                        "wait_reserved_min": round(p.wait_reserved_min, 1),
                        "wait_walkin_min": round(p.wait_walkin_min, 1),
                        "objective_min": round(p.objective_min, 2), "feasible": p.feasible,
                        "chosen": best.reserved})
    return out
