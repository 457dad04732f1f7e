"""Exact solution of every EV's ADMM local problem, compiled (numba), no solver call in the loop.

Each EV v (a row) solves, over the horizon steps t where it is plugged in,

    min_p  Σ_t [ q_t p_t + κ·Δt·p_t² ] + (ρ/2) Σ_t (p_t − w_t)²
    s.t.   0 ≤ p_t ≤ U_t,      Σ_t p_t ≤ B            (B = energy owed / (η·Δt))

q_t = Δt·(c_t − η·v_t) is the linear cost of Eq. 14–16 of 000_f74a305f822cf870.txt: c the
station's unit cost (price + carbon price·carbon), v the value of a kWh delivered at t (the
unmet-energy penalty, discounted for lateness), η the charger efficiency; κ the battery-wear weight
(seed 001's ageing cost, quadratic in power), w the ADMM target. The KKT conditions give
p_t(μ) = clip(a_t − μ·b, 0, U_t) with a_t = (ρ·w_t − q_t)/(ρ + 2κΔt), b = 1/(ρ + 2κΔt), and
the budget multiplier μ ≥ 0 is the root of a piecewise-linear non-increasing function, found
exactly by a safeguarded Newton iteration per row. ``tests/unit/test_local_qp.py`` checks it
against cvxpy (Clarabel) to 1e-6 relative on random instances.

Why compiled: at 1,000 stations (≈6,000 EVs, ≈290,000 plugged-in EV-steps over 96 steps) one
ADMM round touches every one of them, and numpy's one-temporary-per-operation style spent ≈20 ms
a round on it. Three fused passes per row (target, multiplier, relaxed plan and the station's
sums) do the same in ≈0.9 ms on one core, ≈0.5 ms on two (measured, 2-core machine). Memory
traffic is most of it, so q is formed from the station's c and the shared v rather than
stored per EV-step, and the plan x is not stored at all (only its station sums and cost).
The kernels are cached on disk (``cache=True``), so only the first process compiles them.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange

_MAX_NEWTON = 60
# Let the compiler reorder sums and fuse multiply-adds (vectorised loops), but not assume away
# infinities or NaN: the bracket starts at +inf.
_FAST = {"reassoc", "contract", "arcp", "nsz"}


@njit(cache=True, inline="always", fastmath=_FAST)
def _excess(a: np.ndarray, upper: np.ndarray, b: float, mu: float, budget: float,
            width: int) -> tuple[float, float]:
    """g(μ) = Σ_t clip(a_t − μ·b, 0, U_t) − B and its slope's magnitude (b × free entries).
    Branch-free, so the compiler vectorises it."""
    g, free = -budget, 0
    for t in range(width):
        v = a[t] - mu * b
        g += min(max(v, 0.0), upper[t])
        free += (v > 0.0) & (v < upper[t])
    return g, free * b


@njit(cache=True, fastmath=_FAST)
def _multiplier(a: np.ndarray, upper: np.ndarray, b: float, budget: float, width: int,
                mu: float, g: float, slope: float) -> float:
    """Smallest μ ≥ 0 with g(μ) ≤ 0 (see module docstring), searched from ``mu`` where
    g = ``g`` and its slope's magnitude is ``slope``. g is piecewise linear and non-increasing,
    so a Newton step from a point on the root's piece lands on the root; a step that leaves the
    bracket is replaced by bisection. Started at last round's μ, an ADMM round usually needs
    one step (the active set has not changed), i.e. one more evaluation of g."""
    tol = 1e-12 * max(budget, 1.0)
    lo, hi = -1.0, np.inf  # lo < 0: g(0) not known to be > 0 yet
    for _ in range(_MAX_NEWTON):
        if abs(g) <= tol or (mu == 0.0 and g <= tol):
            return mu
        if g > 0.0:
            lo = mu
        else:
            hi = mu
        step = mu + g / slope if slope > 0.0 else np.nan
        if lo < 0.0 and step <= 0.0:  # the budget may have stopped binding: is μ = 0 the answer?
            step = 0.0
        elif not max(lo, 0.0) < step < hi:
            if hi == np.inf:  # the bracket's top, needed only now: every entry at 0
                hi = 0.0
                for t in range(width):
                    if upper[t] > 0.0 and a[t] / b > hi:
                        hi = a[t] / b
            step = 0.5 * (max(lo, 0.0) + hi)
        mu = step
        g, slope = _excess(a, upper, b, mu, budget, width)
    return mu


@njit(cache=True, inline="always", fastmath=_FAST)
def _q(dt: float, unit: float, eta: float, value: float) -> float:
    """The linear cost q of one kW for one step (module docstring)."""
    return dt * (unit - eta * value)


@njit(cache=True, fastmath=_FAST)
def _dual_row(ad: np.ndarray, u: np.ndarray, rho: float, dt: float, unit: np.ndarray, eta: float,
              value: np.ndarray, up: np.ndarray, budget: float, width: int, wear: float,
              bd: float, mu: float) -> float:
    """One EV's local minimum at prices y = max(ρ·u, 0) without the proximal term,
    min Σ_t (q_t + y_t)·p_t + κΔt·p_t² over its feasible set, by the same multiplier search
    started from the ADMM local problem's multiplier ``mu`` (near agreement the proximal term
    vanishes and the two problems, so their multipliers, coincide)."""
    md = max(mu, 0.0)
    for t in range(width):
        ad[t] = -(_q(dt, unit[t], eta, value[t]) + max(rho * u[t], 0.0)) * bd
    g, slope = _excess(ad, up, bd, md, budget, width)
    md = _multiplier(ad, up, bd, budget, width, md, g, slope)
    # The Lagrangian at md, a lower bound for any md ≥ 0: exact search or not, it stays valid.
    d = -md * budget
    for t in range(width):
        v = min(max(ad[t] - md * bd, 0.0), up[t])
        d += (wear * v - ad[t] / bd + md) * v
    return d


@njit(cache=True, fastmath=_FAST, parallel=True)
def admm_round(
    xh: np.ndarray, mu: np.ndarray, shift: np.ndarray, u: np.ndarray, src: np.ndarray,
    row_ptr: np.ndarray, unit: np.ndarray, eta: np.ndarray, value: np.ndarray, dt: float,
    upper: np.ndarray, budget: np.ndarray, width: np.ndarray, rho: float, wear: float,
    alpha: float, xh_sum: np.ndarray, x_sum: np.ndarray, cost: np.ndarray,
) -> None:
    """One ADMM x-update for every EV of every targeted station, in place (Boyd §7.3, §3.4.3).

    Station s owns rows ``row_ptr[s]:row_ptr[s+1]`` and follows row k = ``src[s]`` of ``shift``
    and ``u`` (its grid zone's row, or its own; −1: not asked this round). An EV takes part
    only while plugged in (its first ``width`` steps; after that it has no variable and
    x = x̂ = 0). Its target is its last relaxed plan moved by the zone's correction,
    z = x̂ + shift_k, minus the scaled dual u_k; it solves its local problem (x, with
    q = dt·(unit[s] − eta[r]·value)) and over-relaxes (x̂ = αx + (1−α)z into ``xh``; in round 0,
    z is the EV's warm start), and the station's sums of x̂ and x and its cost Σ q·x + κΔt·x²
    are accumulated. With α = 1, ``xh`` holds the plan itself.

    Usually three passes per EV: the target with g at last round's μ, g at the Newton step
    from there (the root when the EV's active set has not changed), and the plan. Stations are
    independent, so they are spread over the process's threads (``NUMBA_NUM_THREADS``; 1 in
    actors and edge nodes); each station's sums are its own, so the result does not depend on
    the thread count.
    """
    n_st, h = src.size, shift.shape[1]
    b = 1.0 / (rho + 2.0 * wear)
    for s in prange(n_st):
        k = src[s]
        if k < 0:
            continue
        a = np.empty(h)
        z = np.empty(h)
        c = 0.0
        xh_sum[s, :] = 0.0
        x_sum[s, :] = 0.0
        for r in range(row_ptr[s], row_ptr[s + 1]):
            wr, up, budget_r, eta_r = width[r], upper[r], budget[r], eta[r]
            m = max(mu[r], 0.0)
            g, free = -budget_r, 0
            for t in range(wr):
                z[t] = xh[r, t] + shift[k, t]
                a[t] = (rho * (z[t] - u[k, t]) - _q(dt, unit[s, t], eta_r, value[t])) * b
                v = a[t] - m * b
                g += min(max(v, 0.0), up[t])
                free += (v > 0.0) & (v < up[t])
            m = _multiplier(a, up, b, budget_r, wr, m, g, free * b)
            mu[r] = m
            for t in range(wr):
                v = min(max(a[t] - m * b, 0.0), up[t])
                xh[r, t] = alpha * v + (1.0 - alpha) * z[t]
                xh_sum[s, t] += xh[r, t]
                x_sum[s, t] += v
                c += (_q(dt, unit[s, t], eta_r, value[t]) + wear * v) * v
        cost[s] = c


@njit(cache=True, fastmath=_FAST, parallel=True)
def dual_round(
    u: np.ndarray, src: np.ndarray, row_ptr: np.ndarray, unit: np.ndarray, eta: np.ndarray,
    value: np.ndarray, dt: float, upper: np.ndarray, budget: np.ndarray, width: np.ndarray,
    rho: float, wear: float, mu: np.ndarray, dual: np.ndarray,
) -> None:
    """Each targeted station's share of the Lagrangian dual function at the prices it was sent,
    y = max(ρ·u_k, 0): ``dual[s]`` = Σ_v min_{p_v feasible} Σ_t (q_t + y_t)·p_t + κΔt·p_t²,
    the local problem without the proximal term (each EV's search starts from its ADMM
    multiplier in ``mu``; other arguments as for :func:`admm_round`). Summed over stations,
    less the prices' worth of the limits, it bounds the coupled optimum from below (weak
    duality): the coordinator's certificate. About half a round's work, so the coordinator
    asks for it only near the end of a solve. Needs κ > 0 (with κ = 0 the local problem is a
    linear program this search does not solve).
    """
    n_st, h = src.size, u.shape[1]
    bd = 1.0 / (2.0 * wear)
    for s in prange(n_st):
        k = src[s]
        if k < 0:
            continue
        ad = np.empty(h)
        d = 0.0
        for r in range(row_ptr[s], row_ptr[s + 1]):
            d += _dual_row(ad, u[k], rho, dt, unit[s], eta[r], value, upper[r], budget[r],
                           width[r], wear, bd, mu[r])
        dual[s] = d


def solve_local(
    w: np.ndarray, q: np.ndarray, upper: np.ndarray, budget: np.ndarray, *, rho: float,
    wear: float, mu0: np.ndarray | None = None, width: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The minimiser p [n, H] of the local problem above for every row, by the kernel an ADMM
    round runs (each row its own station with unit cost q, target w, no dual, α = 1).

    ``wear`` is κ·Δt; ``q`` may be [H] (shared prices) or [n, H]. Returns (p, μ); ``mu0``
    warm-starts the multiplier search. ``width`` [n] says a row's entries from that column
    on are 0 (its EV has left), so they are not searched.
    """
    n, h = w.shape
    p, rows = np.array(w, dtype=float, order="C"), np.arange(n + 1)
    mu = np.zeros(n) if mu0 is None else np.array(mu0, dtype=float)
    admm_round(p, mu, np.zeros((n, h)), np.zeros((n, h)), rows[:-1], rows,
               np.array(np.broadcast_to(q, (n, h)), dtype=float, order="C"), np.zeros(n),
               np.zeros(h), 1.0, np.array(upper, dtype=float, order="C"),
               np.array(budget, dtype=float),
               np.full(n, h) if width is None else np.array(width, dtype=np.int64),
               float(rho), float(wear), 1.0, np.zeros((n, h)), np.zeros((n, h)), np.zeros(n))
    if width is not None:  # the kernel leaves the columns past a row's width alone: still w
        p[np.arange(h)[None, :] >= np.asarray(width)[:, None]] = 0.0
    return p, mu


@functools.cache
def warm_up() -> None:
    """Load (or, the first time on a machine, compile) the kernels now, not in round 0: an edge
    node or actor that compiled during its first round would miss that round's deadline."""
    one, z = np.ones((1, 1)), np.zeros((1, 1))
    admm_round(z.copy(), np.zeros(1), z, z, np.zeros(1, np.int64), np.array([0, 1]), z,
               np.ones(1), np.ones(1), 1.0, one, np.ones(1), np.ones(1, np.int64), 1.0, 0.0, 1.5,
               z.copy(), z.copy(), np.zeros(1))
    dual_round(z, np.zeros(1, np.int64), np.array([0, 1]), z, np.ones(1), np.ones(1), 1.0, one,
               np.ones(1), np.ones(1, np.int64), 1.0, 1.0, np.zeros(1), np.zeros(1))
