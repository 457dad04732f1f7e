"""Rolling-horizon heuristic of the allocation (000_f74a305f822cf870.txt §3.4.3, §4.2).

At each epoch t (§4.2):

1. ``V_t`` — the vehicles present at t that still need energy, and (``lookahead``, the
   default) those arriving within the window: they are planned, so that the stations and
   grid room they will need are priced, but only step t is ever implemented;
2. a window ``T_t^H = [t, t + H)`` (Eq. 22's restricted problem);
3. each vehicle's candidate stations ``STA^c_{v,τ}`` (Eq. 23): eligible (Eq. 17), within
   ``d_max`` of relocation cost (the ``max_candidates`` nearest), free at τ (availability,
   and not yet taken in this window by a vehicle planned before it);
4. greedy assignment in priority order — least laxity first by default, lowest SoC first
   (§4.2's rule) with ``priority="soc"``. Each vehicle takes the candidate station that
   serves it cheapest: it plans its remaining need into its cheapest free periods, priced
   ``(α1·p_τ + λ_τ)/η`` per battery kWh (Eq. 26's Lagrangian; periods after the window at
   that price, as if the station stayed free), and pays Eq. 8's relocation for each period
   planned, the unmet penalty for what it cannot get, and a small fit cost for station
   power it cannot draw. With equal costs this is §4.2's "nearest available high-power
   charger": nearer means less relocation, higher power fewer periods and less shortfall,
   and a car that can only draw 7 kW leaves the 22 kW charger to one that can;
5. the grid constraint Eq. 11 is priced, not imposed, while planning: λ_τ (over [t, T)) is
   updated by a projected subgradient step on the planned load,
   ``λ ← max(0, λ + θ_k·p̄·(load − PO_gmax)/PO_gmax)`` with ``θ_k = θ_0/(k+1)``, and the
   greedy replanned, for a few iterations (the dual of Eq. 26, ``max_λ≥0 min L``); λ carries
   over to the next epoch as a warm start;
6. only step t is implemented: each planned vehicle's power at t (lifted to P_min or dropped,
   Eq. 13), then a final projection in priority order so that Eq. 11 holds exactly;
7. grid room still free at t goes to vehicles still short whose cheapest remaining price is
   within ``eager_margin`` of p_t (a myopic plan defers to cheap periods that vehicles it
   cannot yet see will crowd); the batteries are updated and the horizon rolls on.

What each choice is worth, mean (min) quality = MIP/RHH objective over 36 random instances
(n = 320 … 38,400, ``random_problem``): all defaults 95.0 % (80.3 %); lowest SoC first
instead of least laxity 91.3 % (62.0 %); without step 7 88.5 % (58.8 %); without λ
(no iterations) 94.4 %; without lookahead 94.9 %; without the fit cost 94.9 %.

Cost: ``O(T · iterations · |V_t| · |STA^c| · T)``. The loop over vehicles is sequential
(each vehicle sees the stations the previous ones took), so the greedy is compiled with
numba (as ``evgrid.coordinator.kernels``): a lot2102 routing call takes milliseconds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numba import njit

from evgrid.optim.allocation import Allocation, AllocationProblem, make_allocation

_TOL = 1e-9


@dataclass(frozen=True)
class RHHConfig:
    """Window, candidate sets and Lagrangian steps of the rolling-horizon heuristic."""

    horizon: int = 8  # H periods per window
    d_max: float = math.inf  # Eq. 23: relocation cost beyond which a station is no candidate
    max_candidates: int = 64  # nearest candidates a vehicle considers (keeps epochs cheap)
    iterations: int = 4  # subgradient iterations on λ per epoch
    step: float = 0.3  # θ_0, in units of the mean weighted price per 100 % overload
    priority: Literal["soc", "laxity"] = "laxity"
    #: Plan also for the vehicles arriving within the window (decisions stay step t's only).
    lookahead: bool = True
    #: Fill grid room left at t for vehicles still short when t's price is within this
    #: fraction of the cheapest left in their stay (``None``: never).
    eager_margin: float | None = 0.5
    #: Weight of the fit cost (unusable station power) in the station choice (0: off).
    fit_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.horizon < 1 or self.max_candidates < 1 or self.iterations < 0:
            raise ValueError("need horizon >= 1, max_candidates >= 1 and iterations >= 0")
        if self.priority not in ("soc", "laxity"):
            raise ValueError(f"priority must be 'soc' or 'laxity', got {self.priority!r}")


@njit(cache=True)
def _plan_window(t: int, w_len: int, order: np.ndarray, need: np.ndarray,
                 cost_kwh: np.ndarray, worth: np.ndarray, arrival: np.ndarray,
                 departure: np.ndarray, cand_ptr: np.ndarray, cand_idx: np.ndarray,
                 cand_kw: np.ndarray, cand_cost: np.ndarray, cand_fit: np.ndarray,
                 occ: np.ndarray, alpha2: float, penalty: float, e_per_kw: float
                 ) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """Greedy assignment over one window (steps 3–4 of the module docstring), compiled.

    ``cost_kwh`` [T] is the Lagrangian price per battery kWh, ``(α1 p + λ)/η``; candidates
    are CSR rows (``cand_ptr``) of station index, pair PO_max, relocation cost and fit cost
    (per period, of the station's power the vehicle cannot use); ``occ``
    [S, w_len] marks taken (or unavailable) station-periods and is updated in place.
    Returns each vehicle's station (−1: none) and its planned kW over [t, T) — window
    periods on that station, later ones as if it stayed free (the load λ is priced on).
    """
    v_n = arrival.size
    t_n = cost_kwh.size
    st = np.full(v_n, -1, dtype=np.int64)
    plan = np.zeros((v_n, t_n - t))
    end_w = t + w_len
    for v in order:
        lo, hi = cand_ptr[v], cand_ptr[v + 1]
        if hi == lo:
            continue
        a, d = arrival[v], departure[v]
        first = max(t, a)
        periods = np.empty(max(0, d - first), dtype=np.int64)
        n_p = 0
        in_window = False
        for tau in range(first, d):
            if worth[tau]:
                periods[n_p] = tau
                n_p += 1
                if tau < end_w:
                    in_window = True
        if not in_window:
            continue
        periods = periods[:n_p]
        periods = periods[np.argsort(cost_kwh[periods], kind="mergesort")]
        best_h, best_h_est = -1, np.inf
        best_a, best_a_est = -1, np.inf
        for j in range(lo, hi):
            s = cand_idx[j]
            cap = cand_kw[j] * e_per_kw
            rest = need[v]
            est = 0.0
            used = 0
            helps = False
            for tau in periods:
                if rest <= 1e-9:
                    break
                if tau < end_w and occ[s, tau - t]:
                    continue
                g = min(cap, rest)
                if g <= 1e-9:
                    continue
                est += g * cost_kwh[tau]
                rest -= g
                used += 1
                if tau < end_w:
                    helps = True
            est += (alpha2 * cand_cost[j] + cand_fit[j]) * used + penalty * rest
            if helps and est < best_h_est:
                best_h, best_h_est = j, est
            if est < best_a_est:
                best_a, best_a_est = j, est
        j = best_h if best_h >= 0 else best_a
        s = cand_idx[j]
        cap = cand_kw[j] * e_per_kw
        rest = need[v]
        for tau in periods:
            if rest <= 1e-9:
                break
            if tau < end_w and (best_h < 0 or occ[s, tau - t]):
                continue
            g = min(cap, rest)
            plan[v, tau - t] = g / e_per_kw
            rest -= g
            if tau < end_w:
                occ[s, tau - t] = True
        if best_h >= 0:
            st[v] = s
    return st, plan


def _candidates(problem: AllocationProblem, cfg: RHHConfig
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Eq. 23's static part per vehicle, as CSR rows (ptr, station, PO_max, relocation cost):
    eligible, able to draw P_min, within ``d_max``; the ``max_candidates`` nearest by
    relocation cost, nearest first (availability per period is checked in the window).
    Also each entry's fit cost per period: ``fit_weight`` × the station power the vehicle
    cannot use, valued at the mean energy price — so that, other things equal, a 7 kW car
    takes a 7 kW charger and leaves the 22 kW one to a car that can draw 22 kW."""
    p = problem
    pair = p.pair_max_kw()
    ok = p.eligible & (pair >= max(p.p_min_kw, 1e-9)) & (p.relocation_cost <= cfg.d_max)
    cost = np.where(ok, p.relocation_cost, np.inf)
    k = min(cfg.max_candidates, p.shape[1])
    nearest = np.argsort(cost, axis=1, kind="stable")[:, :k]
    keep = np.take_along_axis(ok, nearest, axis=1)
    counts = keep.sum(axis=1)
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    vv = np.broadcast_to(np.arange(p.shape[0])[:, None], nearest.shape)[keep]
    idx = nearest[keep].astype(np.int64)
    kw = pair[vv, idx].astype(float)
    unused = p.station_max_kw[idx] - kw
    fit = cfg.fit_weight * p.alpha1 * float(p.price_per_kwh.mean()) * p.dt_h * unused
    return ptr, idx, kw, p.relocation_cost[vv, idx].astype(float), fit


def solve_rhh(problem: AllocationProblem, config: RHHConfig | None = None) -> Allocation:
    """The rolling-horizon heuristic (Eq. 22–26, §4.2); deterministic."""
    cfg = config or RHHConfig()
    t0 = time.perf_counter()
    p = problem
    v_n, _, t_n = p.shape
    station = np.full((v_n, t_n), -1, dtype=np.int64)
    power = np.zeros((v_n, t_n))
    energy = p.e_init_kwh.astype(float).copy()
    lam = np.zeros(t_n)
    cand_ptr, cand_idx, cand_kw, cand_cost, cand_fit = _candidates(p, cfg)
    unavailable = ~p.availability()
    arrival = p.arrival.astype(np.int64)
    departure = p.departure.astype(np.int64)
    present = p.present()
    pair = p.pair_max_kw()
    e_per_kw = p.eta * p.dt_h
    mean_price = max(p.alpha1 * float(p.price_per_kwh.mean()), 1e-9)
    for t in range(t_n):
        need = np.minimum(np.maximum(0.0, p.e_req_kwh - energy), p.battery_kwh - energy)
        window = np.arange(t, min(t + cfg.horizon, t_n))
        seen = present[:, window].any(axis=1) if cfg.lookahead else present[:, t]
        active = np.flatnonzero(seen & (need > _TOL))
        if not (present[active, t]).any():
            continue
        if cfg.priority == "soc":
            key = energy[active] / np.maximum(p.battery_kwh[active], 1e-9)
        else:  # least laxity: spare periods beyond what the need takes at full power
            full = p.vehicle_max_kw[active] * e_per_kw
            start = np.maximum(p.arrival[active], t)
            key = (p.departure[active] - start) - need[active] / np.maximum(full, 1e-9)
        order = active[np.argsort(key, kind="stable")]
        grid = p.grid_limit_kw[t:]
        for k in range(cfg.iterations + 1):
            cost_kwh = (p.alpha1 * p.price_per_kwh + lam) / p.eta
            worth = cost_kwh < p.unmet_penalty_per_kwh
            occ = np.ascontiguousarray(unavailable[:, window])
            st_w, plan = _plan_window(t, window.size, order.astype(np.int64), need, cost_kwh,
                                      worth, arrival, departure, cand_ptr, cand_idx, cand_kw,
                                      cand_cost, cand_fit, occ, float(p.alpha2),
                                      float(p.unmet_penalty_per_kwh), e_per_kw)
            if k == cfg.iterations:
                break
            load = plan.sum(axis=0)
            theta = cfg.step / (k + 1)
            new = np.maximum(
                0.0, lam[t:] + theta * mean_price * (load - grid) / np.maximum(grid, 1e-9))
            if np.array_equal(new, lam[t:]):
                break  # the plan already answers these prices (e.g. no overload, λ = 0)
            lam[t:] = new
        # Implement step t only: P_min (Eq. 13), then Eq. 11 exactly, in priority order.
        room = float(p.grid_limit_kw[t])
        for v in order:
            s = st_w[v]
            want = plan[v, 0]
            if s < 0 or want <= _TOL:
                continue
            head_kw = (p.battery_kwh[v] - energy[v]) / e_per_kw
            want = min(want, pair[v, s], head_kw)
            if want < p.p_min_kw:
                want = p.p_min_kw if p.p_min_kw <= min(pair[v, s], head_kw) else 0.0
            grant = min(want, room)
            if grant < p.p_min_kw or grant <= _TOL:
                continue
            station[v, t] = s
            power[v, t] = grant
            room -= grant
            energy[v] += grant * e_per_kw
        if cfg.eager_margin is not None and room > _TOL:
            room = _fill_now(p, t, order, station, power, energy, room, unavailable,
                             cand_ptr, cand_idx, cand_kw, pair, cfg.eager_margin)
    return make_allocation(p, station, power, "rhh", time.perf_counter() - t0)


def _fill_now(p: AllocationProblem, t: int, order: np.ndarray, station: np.ndarray,
              power: np.ndarray, energy: np.ndarray, room: float, unavailable: np.ndarray,
              cand_ptr: np.ndarray, cand_idx: np.ndarray, cand_kw: np.ndarray,
              pair: np.ndarray, margin: float) -> float:
    """Step 7: grid room left at t goes to vehicles still short, in priority order, when t
    is within ``margin`` of the cheapest price left in their stay — on their station, or on
    the nearest free highest-power candidate (§4.2's rule). Updates in place; returns the
    room left."""
    e_per_kw = p.eta * p.dt_h
    busy = unavailable[:, t].copy()
    on = station[:, t] >= 0
    busy[station[on, t]] = True
    for v in order:
        if room <= _TOL:
            break
        if not p.arrival[v] <= t < p.departure[v]:
            continue
        left = min(p.e_req_kwh[v], p.battery_kwh[v]) - energy[v]
        if left <= _TOL:
            continue
        if p.price_per_kwh[t] > (1.0 + margin) * p.price_per_kwh[t:p.departure[v]].min():
            continue
        s = int(station[v, t])
        if s < 0:
            c = cand_idx[cand_ptr[v]:cand_ptr[v + 1]]
            free = ~busy[c]
            if not free.any():
                continue
            # Highest power the vehicle can draw, then the smallest charger that gives it.
            key = cand_kw[cand_ptr[v]:cand_ptr[v + 1]] - 1e-6 * p.station_max_kw[c]
            j = int(np.argmax(np.where(free, key, -np.inf)))
            s = int(c[j])
        extra = min(pair[v, s] - power[v, t], left / e_per_kw, room)
        if station[v, t] < 0 and extra < p.p_min_kw:
            head = (p.battery_kwh[v] - energy[v]) / e_per_kw
            if p.p_min_kw > min(pair[v, s], head, room):
                continue
            extra = p.p_min_kw
        if extra <= _TOL:
            continue
        station[v, t] = s
        busy[s] = True
        power[v, t] += extra
        energy[v] += extra * e_per_kw
        room -= extra
    return room
