"""The offline-optimal bound: the perfect-information LP over the whole horizon.

Given the realised sessions and which EV sat on which charger when (the same for every
controller, see ``evgrid.envs.simulator``), choose every charger's power at every step to

    minimise   Σ_t Σ_c p[t,c]·Δt·(price[t] + carbon_price·carbon[t]) + penalty · Σ_v unmet_v
    subject to 0 ≤ p[t,c] ≤ min(charger rating, EV limit)           (Eq. 12–13 of 000)
               Σ_t η·p[t,c(v)]·Δt ≤ battery room_v                    (Eq. 15)
               unmet_v ≥ requested_v − Σ_t η·p[t,c(v)]·Δt, unmet_v ≥ 0   (Eq. 16, softened)
               Σ_{c in zone g} p[t,c] ≤ C_g[t],   Σ_c p[t,c] ≤ P_city[t]  (Eq. 11, per feeder)

plus, with a tariff's demand charge, Σ_{g,w} d_w · peak[g,w] with one epigraph variable per grid
zone and billing window, Σ_{c in zone g} p[t,c] ≤ peak[g,w(t)] (the peak is priced, not capped).

No controller that sees the same arrivals can beat it, so its gap is the honest score. The LP
is built with scipy sparse matrices and solved through cvxpy by HiGHS (Clarabel as fallback).
The schedule is then executed in the simulator like any controller's, so its KPIs are computed
by the same code and its feasibility is checked by the same projection.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from evgrid.envs.interface import Observation
from evgrid.envs.projection import project
from evgrid.envs.simulator import SimResult, Simulator


@contextlib.contextmanager
def quiet_native_stdout() -> Iterator[None]:
    """Silence C-level stdout (HiGHS prints a banner there on first use, ignoring verbose)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@dataclass(frozen=True)
class OfflineSolution:
    power_kw: np.ndarray  # [T, C]
    solver_objective: float
    solve_s: float
    build_s: float
    n_variables: int
    solver: str


def solve_offline(result: SimResult, *, solver: str | None = None) -> OfflineSolution:
    """Solve the bound for the sessions and connections of ``result`` (any policy's run)."""
    import cvxpy as cp  # heavy: imported only where the bound is computed

    t0 = time.perf_counter()
    w, s = result.world, result.sessions
    ev = result.ev_at_charger
    t_idx, c_idx = np.nonzero(ev >= 0)
    v_idx = ev[t_idx, c_idx]
    n = t_idx.size
    scen = w.scenario
    upper = np.minimum(w.charger_max_kw[c_idx], s.max_kw[v_idx])
    eta_dt = w.charger_eta[c_idx] * w.dt_h
    # Charging past the request is allowed (the simulator allows it up to the battery room,
    # and with a negative price it pays), so the request enters only through the unmet slack.
    unit = w.price_per_kwh + scen.prices.carbon_price_per_kg * w.carbon_kg_per_kwh
    coef = w.dt_h * unit[t_idx]
    penalty = scen.unmet_penalty_per_kwh

    sessions_used, v_row = np.unique(v_idx, return_inverse=True)
    energy = sp.csr_matrix((eta_dt, (v_row, np.arange(n))), shape=(sessions_used.size, n))
    zone_row = t_idx * w.n_grid + w.charger_grid[c_idx]
    zone = sp.csr_matrix((np.ones(n), (zone_row, np.arange(n))), shape=(w.steps * w.n_grid, n))
    city = sp.csr_matrix((np.ones(n), (t_idx, np.arange(n))), shape=(w.steps, n))
    # Sessions that never sit on a charger (or ask for nothing) add their whole request.
    unserved = np.ones(len(s), dtype=bool)
    unserved[sessions_used] = False
    const = penalty * float(s.requested_kwh[unserved].sum())

    if n == 0:  # nothing can charge: the bound is every request unmet
        return OfflineSolution(np.zeros((w.steps, w.n_chargers)), const, 0.0, 0.0, 0, "none")
    room = s.battery_kwh[sessions_used] * (1 - s.arrival_soc[sessions_used])
    x = cp.Variable(n, nonneg=True)
    unmet = cp.Variable(sessions_used.size, nonneg=True)
    constraints = [
        x <= upper,
        energy @ x <= room,
        energy @ x + unmet >= s.requested_kwh[sessions_used],
        zone @ x <= w.zone_limit_kw.reshape(-1),
        city @ x <= w.city_limit_kw,
    ]
    cost = coef @ x + penalty * cp.sum(unmet)
    rate = w.demand_rate_per_kw
    if rate.any():
        # peak[g, w] ≥ the zone's load at every step of billing window w.
        _, win = np.unique(w.billing_window, return_inverse=True)
        n_win = int(win.max()) + 1
        rows = np.arange(w.steps * w.n_grid)
        cols = (win[:, None] * w.n_grid + np.arange(w.n_grid)[None, :]).reshape(-1)
        spread = sp.csr_matrix((np.ones(rows.size), (rows, cols)),
                               shape=(w.steps * w.n_grid, n_win * w.n_grid))
        first = np.array([rate[win == k][0] for k in range(n_win)])
        peak = cp.Variable(n_win * w.n_grid, nonneg=True)
        constraints.append(zone @ x <= spread @ peak)
        cost = cost + np.repeat(first, w.n_grid) @ peak
    problem = cp.Problem(cp.Minimize(cost), constraints)
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    chosen = solver or ("HIGHS" if "HIGHS" in cp.installed_solvers() else "CLARABEL")
    with quiet_native_stdout():
        problem.solve(solver=chosen)
    if problem.status not in {"optimal", "optimal_inaccurate"} or x.value is None:
        raise RuntimeError(f"offline LP ended {problem.status!r} with solver {chosen}")
    power = np.zeros((w.steps, w.n_chargers))
    power[t_idx, c_idx] = np.clip(x.value, 0.0, upper)
    return OfflineSolution(
        power_kw=power,
        solver_objective=float(problem.value) + const,
        solve_s=time.perf_counter() - t1,
        build_s=build_s,
        n_variables=n,
        solver=chosen,
    )


class ScheduleReplay:
    """A controller that plays back a precomputed [T, C] schedule (the offline optimum).

    The schedule is first passed through the same projection as everything else, so solver
    tolerance (1e-7 kW) is not reported as a limit violation.
    """

    name = "offline_optimal"

    def __init__(self, power_kw: np.ndarray) -> None:
        self.power_kw = power_kw

    def schedule(self, obs: Observation) -> np.ndarray:
        safe, _ = project(
            self.power_kw[obs.t],
            upper_kw=obs.power_cap_kw,
            charger_grid=obs.charger_grid,
            zone_limit_kw=obs.zone_limit_kw[0],
            city_limit_kw=float(obs.city_limit_kw[0]),
        )
        return safe


def offline_optimal_run(sim: Simulator, reference: SimResult) -> tuple[SimResult, OfflineSolution]:
    """Solve the bound for ``reference``'s sessions and execute it in ``sim``."""
    solution = solve_offline(reference)
    return sim.run(ScheduleReplay(solution.power_kw)), solution
