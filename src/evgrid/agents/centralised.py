"""The coupled power-sharing problem solved centrally with cvxpy (Clarabel): ADMM's yardstick.

Same per-EV local costs and constraints as ``evgrid.agents.station``, the same zone and city
coupling and the same demand charge over the peak so far as ``evgrid.coordinator.admm``; used
by the ``mpc`` policy (``evgrid.agents.mpc``), tests and ``benchmarks/admm.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from evgrid.agents.station import StationPack
from evgrid.coordinator.demand import DemandCharge


@dataclass(frozen=True)
class CentralPlan:
    objective: float  # incl. the unmet-penalty constant and the demand charge [currency]
    plan_kw: np.ndarray  # [M, H] each station's plan
    level_kw: np.ndarray  # [G] each zone's planned peak in the first step's billing window
    row_plan_kw: np.ndarray  # [rows, H] each EV's (and phantom row's) plan


def centralised_plan(
    pack: StationPack, zone_of_station: np.ndarray, zone_limit_kw: np.ndarray,
    city_limit_kw: np.ndarray, demand: DemandCharge | None = None,
) -> CentralPlan:
    """The coupled problem for a pack after ``begin_period``; limits are [H, G] and [H]."""
    import cvxpy as cp

    rows, h = pack.upper.shape
    mask = pack.upper.ravel() > 0
    idx = np.flatnonzero(mask)
    r, t = np.divmod(idx, h)
    n = idx.size
    n_g = zone_limit_kw.shape[1]
    if n == 0:  # nothing can charge (every EV has what it asked): nothing to plan
        level0 = (demand.peak_kw[:, demand.window[0]] if demand is not None and h
                  else np.full(n_g, np.inf))
        return CentralPlan(float(pack.const.sum()), np.zeros((len(pack.ids), h)), level0,
                           np.zeros((rows, h)))
    p = cp.Variable(n)
    q = pack.q.ravel()[idx]
    energy = sp.csr_matrix((np.ones(n), (r, np.arange(n))), shape=(rows, n))
    g = zone_of_station[pack.row_station[r]]
    zone = sp.csr_matrix((np.ones(n), (t * n_g + g, np.arange(n))), shape=(h * n_g, n))
    city = sp.csr_matrix((np.ones(n), (t, np.arange(n))), shape=(h, n))
    obj = q @ p + pack.wear * cp.sum_squares(p)
    cons = [p >= 0, p <= pack.upper.ravel()[idx], energy @ p <= pack.budget,
            zone @ p <= zone_limit_kw.reshape(-1), city @ p <= city_limit_kw]
    level, const = None, 0.0
    if demand is not None:
        # level[g, k] ≥ P0 and ≥ the zone's load at every step of window k; the charge is
        # billed on the excess over P0 (a peak already paid for is free to reach again).
        k = demand.windows
        level = cp.Variable(n_g * k)
        spread = sp.csr_matrix((np.ones(h * n_g), (np.arange(h * n_g), (
            demand.window[:, None] * n_g + np.arange(n_g)[None, :]).reshape(-1))),
            shape=(h * n_g, n_g * k))
        p0 = demand.peak_kw.T.reshape(-1)  # [K·G], window-major like the columns
        cons += [zone @ p <= spread @ level, level >= p0]
        rate = np.repeat(demand.rate_per_kw, n_g)
        obj = obj + cp.sum(cp.multiply(rate, level))  # less rate @ p0, added below
        const = -float(rate @ p0)
    prob = cp.Problem(cp.Minimize(obj), cons)
    prob.solve(solver="CLARABEL")
    if prob.status not in {"optimal", "optimal_inaccurate"}:
        raise RuntimeError(f"centralised solve ended {prob.status}")
    x = np.zeros(rows * h)
    x[idx] = p.value
    row_plan = x.reshape(rows, h)
    plan = pack.agg @ row_plan
    first = (np.asarray(level.value).reshape(-1, n_g)[demand.window[0]] if level is not None
             and demand is not None else np.full(n_g, np.inf))
    return CentralPlan(float(prob.value + pack.const.sum() + const), plan, first, row_plan)


def centralised_optimum(
    pack: StationPack, zone_of_station: np.ndarray, zone_limit_kw: np.ndarray,
    city_limit_kw: np.ndarray, demand: DemandCharge | None = None,
) -> tuple[float, np.ndarray]:
    """(objective incl. the unmet-penalty constant, plan [M, H]) for a pack after begin_period."""
    cp_ = centralised_plan(pack, zone_of_station, zone_limit_kw, city_limit_kw, demand)
    return cp_.objective, cp_.plan_kw
