"""The demand charge as a convex cost on each grid zone's aggregate, inside the sharing ADMM.

A tariff bills each zone d_k · (peak of its load in billing window k). A moving-horizon bill
optimiser charges only the excess over the window's peak so far, P0 (a peak already paid for
costs nothing to reach again), so the coupled problem of ``evgrid.coordinator.admm`` becomes

    min Σ_v f_v(p_v) + Σ_{g,k} d_k · (max_{t in k} Z_g[t] − P0_{g,k})_+,   Z_g = Σ_{v in g} p_v

under the same zone and city limits. The charge touches only the zone sums, so it goes into
the z-update (Boyd et al. 2011 §7.3, sharing with a cost on the sum): with one level L_{g,k}
per zone and window, the z-update is the limits' projection with each zone capped at
min(C_g[t], L_{g,k}) plus d_k/ρ · (L_{g,k} − P0)_+, and the best level solves a 1-D convex
problem (:func:`demand_levels`). The prices the stations receive are unchanged in kind; the
certificate stays weak duality, with the limits' worth now net of the charge
(:func:`demand_worth`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numba import njit


@dataclass(frozen=True)
class DemandCharge:
    """A demand charge over one period's horizon (H steps, K billing windows in it)."""

    rate_per_kw: np.ndarray  # [K] rate of each billing window the horizon touches
    window: np.ndarray  # [H] int: the window (0..K−1) of each step
    peak_kw: np.ndarray  # [G, K] peak so far of each zone in each window (0 for later ones)

    @property
    def windows(self) -> int:
        return int(self.rate_per_kw.size)


def demand_over_horizon(rate_per_kw: np.ndarray, billing_window: np.ndarray,
                        zone_peak_kw: np.ndarray) -> DemandCharge | None:
    """The demand charge of a horizon from the world's per-step rate and window ids, and each
    zone's executed peak so far in the current window; None when nothing is charged."""
    if rate_per_kw.size == 0 or not rate_per_kw.any():
        return None
    _, first, window = np.unique(billing_window, return_index=True, return_inverse=True)
    order = np.argsort(first)  # windows in time order
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    window = rank[window]
    rate = rate_per_kw[np.sort(first)]
    peak = np.zeros((zone_peak_kw.size, rate.size))
    peak[:, 0] = zone_peak_kw
    return DemandCharge(rate.astype(float), window.astype(np.int64), peak)


@njit(cache=True)
def demand_levels(a: np.ndarray, n: np.ndarray, cap: np.ndarray, window: np.ndarray,
                  weight: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """[G, K] the level L minimising, per zone g and window k (each alone),

        Σ_{t in k, n>0} (a[g,t] − min(cap[g,t], L))_+² / (2 n[g,t]) + weight[k] · (L − peak[g,k])_+

    where a = s − n·μ is the zone's unconstrained total at the city multiplier μ. The first
    term falls and the second rises with L, so L ≥ peak, and the slope
    weight − Σ_{t: a_t > L < cap_t} (a_t − L)/n_t is increasing: bisection finds its root.
    A window without a charge has L = inf (no cap).
    """
    g_count, h = a.shape
    k_count = weight.size
    out = np.full((g_count, k_count), np.inf)
    for g in range(g_count):
        for k in range(k_count):
            if weight[k] <= 0.0:
                continue
            lo = peak[g, k]
            hi = lo
            for t in range(h):
                if window[t] == k and n[g, t] > 0:
                    hi = max(hi, min(a[g, t], cap[g, t]))
            if hi <= lo:
                out[g, k] = lo
                continue
            for _ in range(60):
                mid = 0.5 * (lo + hi)
                slope = weight[k]
                for t in range(h):
                    if window[t] == k and n[g, t] > 0 and mid < cap[g, t] and a[g, t] > mid:
                        slope -= (a[g, t] - mid) / n[g, t]
                if slope > 0.0:
                    hi = mid
                else:
                    lo = mid
                if hi - lo <= 1e-9 * max(hi, 1.0):
                    break
            out[g, k] = hi
    return out


@njit(cache=True)
def city_dual(mu: np.ndarray, s: np.ndarray, n: np.ndarray, zone_limit: np.ndarray,
              city_limit: np.ndarray, window: np.ndarray, weight: np.ndarray,
              peak: np.ndarray) -> tuple[float, np.ndarray]:
    """The z-update's dual function over the city limit's price μ [H] and its gradient.

    Priced at μ, the city limit leaves one problem per zone, solved exactly by
    :func:`demand_levels` with a = s − n·μ; its zone totals Z are unique (the objective is
    strictly convex in them), so the dual q(μ) = Σ_g φ_g(μ) − μ·P is concave and smooth with
    gradient Σ_g Z_g − P (Danskin). Steps with an unlimited city must keep μ = 0.
    """
    g_count, h = s.shape
    a = s - n * mu[None, :]
    level = demand_levels(a, n, zone_limit, window, weight, peak)
    value = 0.0
    grad = np.zeros(h)
    for t in range(h):
        if np.isfinite(city_limit[t]):
            value -= mu[t] * city_limit[t]
            grad[t] = -city_limit[t]
    for g in range(g_count):
        for k in range(weight.size):
            if weight[k] > 0.0:
                value += weight[k] * max(level[g, k] - peak[g, k], 0.0)
        for t in range(h):
            if n[g, t] > 0:
                z = min(a[g, t], zone_limit[g, t], level[g, window[t]])
                value += (s[g, t] - z) ** 2 / (2.0 * n[g, t]) + mu[t] * z
                grad[t] += z
    return value, grad


def demand_levels_city(s: np.ndarray, n: np.ndarray, zone_limit: np.ndarray,
                       city_limit: np.ndarray, window: np.ndarray, weight: np.ndarray,
                       peak: np.ndarray, mu0: np.ndarray) -> np.ndarray:
    """The levels when the city limit binds too. Zone by zone they would stall (raising one
    zone's level while lowering another's is what a shared city limit asks, and the
    objective has kinks there), so the city's price μ is found instead, by maximising the
    smooth concave dual :func:`city_dual` (L-BFGS-B from ``mu0``, bounds μ ≥ 0), and each
    zone's level is then its own at that price."""
    from scipy.optimize import minimize

    def fun(mu: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = city_dual(mu, s, n, zone_limit, city_limit, window, weight, peak)
        return -value, -grad

    bounds = [(0.0, None if np.isfinite(p) else 0.0) for p in city_limit]
    res = minimize(fun, np.clip(mu0, 0.0, None), jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 500})
    return demand_levels(s - n * res.x[None, :], n, zone_limit, window, weight, peak)


@njit(cache=True)
def demand_cost(z_g: np.ndarray, window: np.ndarray, rate: np.ndarray,
                peak: np.ndarray) -> float:
    """Σ_{g,k} rate[k] · (max_{t in k} z_g[g,t] − peak[g,k])_+ : the charge a plan adds."""
    g_count, h = z_g.shape
    total = 0.0
    for g in range(g_count):
        for k in range(rate.size):
            top = peak[g, k]
            for t in range(h):
                if window[t] == k and z_g[g, t] > top:
                    top = z_g[g, t]
            total += rate[k] * (top - peak[g, k])
    return total


@njit(cache=True)
def demand_worth(y: np.ndarray, n: np.ndarray, zone_limit: np.ndarray, window: np.ndarray,
                 rate: np.ndarray, peak: np.ndarray) -> float:
    """An upper bound on max Σ y·Z − charge(Z) over 0 ≤ Z_g[t] ≤ C_g[t] (the city limit
    relaxed): separable per zone and window, and for a level L the best Z is min(C, L), so
    each term is max_L Σ_t y_t·min(C_t, L) − rate·(L − P0)_+, concave and piecewise linear
    in L: its maximum is at a breakpoint (0, P0 or some C_t). Infinite when an uncharged
    window prices an unlimited zone."""
    g_count, h = y.shape
    total = 0.0
    for g in range(g_count):
        for k in range(rate.size):
            best = -np.inf
            # Candidates: 0, P0 and every C_t of the window.
            for c in range(-2, h):
                if c == -2:
                    level = 0.0
                elif c == -1:
                    level = peak[g, k]
                elif window[c] == k:
                    level = zone_limit[g, c]
                else:
                    continue
                if rate[k] <= 0.0:
                    level = np.inf
                value = 0.0
                for t in range(h):
                    if window[t] == k and n[g, t] > 0 and y[g, t] > 0.0:
                        value += y[g, t] * min(zone_limit[g, t], level)
                if rate[k] > 0.0:
                    value -= rate[k] * max(level - peak[g, k], 0.0)
                best = max(best, value)
                if rate[k] <= 0.0:
                    break
            total += best
    return total


def net_worth_lp(y: np.ndarray, n: np.ndarray, zone_limit: np.ndarray, city_limit: np.ndarray,
                 window: np.ndarray, rate: np.ndarray, peak: np.ndarray) -> float:
    """max Σ y·Z − Σ rate·(L − P0)_+ over 0 ≤ Z_g[t] ≤ C_g[t], Σ_g Z_g[t] ≤ P[t], Z ≤ L: the
    exact worth of the limits net of the charge, as one LP (HiGHS), for when several zones
    share a binding city limit and :func:`demand_worth` is loose. Only steps and zones with
    a participant and a positive price can take a Z > 0. Infinite when unbounded."""
    import scipy.sparse as sp
    from scipy.optimize import linprog

    g_idx, t_idx = np.nonzero((n > 0) & (y > 0))
    m, k_count, g_count = g_idx.size, rate.size, y.shape[0]
    if m == 0:
        return 0.0
    # Variables: Z (m entries), then the excess e[g, k] = L − P0 ≥ 0 (G·K).
    cost = np.concatenate([-y[g_idx, t_idx], np.repeat(rate[None, :], g_count, 0).ravel()])
    rows = np.arange(m)
    e_col = m + g_idx * k_count + window[t_idx]
    level = sp.csr_matrix((np.concatenate([np.ones(m), -np.ones(m)]),
                           (np.concatenate([rows, rows]), np.concatenate([rows, e_col]))),
                          shape=(m, m + g_count * k_count))
    city_rows = np.unique(t_idx)
    city_pos = np.searchsorted(city_rows, t_idx)
    city = sp.csr_matrix((np.ones(m), (city_pos, rows)),
                         shape=(city_rows.size, m + g_count * k_count))
    finite = np.isfinite(city_limit[city_rows])
    a_ub = sp.vstack([level, city[finite]]).tocsr()
    b_ub = np.concatenate([peak[g_idx, window[t_idx]], city_limit[city_rows][finite]])
    upper = zone_limit[g_idx, t_idx]
    bounds = [(0.0, float(u) if np.isfinite(u) else None) for u in upper]
    bounds += [(0.0, None)] * (g_count * k_count)
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if res.status != 0:  # unbounded (3), or no answer: no bound rather than a wrong one
        return float("inf")
    # HiGHS's primal value is within its tolerance of the optimum; its dual bound would be
    # exact, but a 1e-7 relative slip cannot certify a 1e-3 gap.
    return float(-res.fun)


@functools.cache
def warm_up() -> None:
    """Load (or compile) the kernels before a round's deadline (``kernels.warm_up``'s reason)."""
    one, win, rate = np.ones((1, 1)), np.zeros(1, dtype=np.int64), np.ones(1)
    demand_levels(one, one, one, win, rate, np.zeros((1, 1)))
    city_dual(rate, one, one, one, rate, win, rate, np.zeros((1, 1)))
    demand_cost(one, win, rate, np.zeros((1, 1)))
    demand_worth(one, one, one, win, rate, np.zeros((1, 1)))
