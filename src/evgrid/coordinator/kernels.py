"""The coordinator's per-round arithmetic over every station's profile, compiled (numba).

At 1,000 stations × 96 steps a round touches five [M, H] arrays; numpy spent ≈2 ms on the
twenty-odd temporaries of the z-update and the residual norms. ``relax_and_sum`` and
``consensus_and_norms`` do the same arithmetic as the formulas in ``evgrid.coordinator.admm``
(which documents them) in one pass each; ``zone_city_prices`` is the z-update's exact
multiplier search on the [zones × H] sums.

The two passes are split over a fixed number of station chunks that the calling thread's
kernel threads share: each chunk's partial sums are added in chunk order, so the result does
not depend on how many threads there are (one in Ray actors, and on a driver once Ray is up).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import numba
import numpy as np
from numba import njit, prange, types

# Reordered sums and fused multiply-adds are fine; infinities and NaN must stay meaningful.
_FAST = {"reassoc", "contract", "arcp", "nsz"}
_CHUNKS = 8
#: Below this many [station or EV] × step entries a kernel runs on the calling thread alone.
#: Measured on 2 cores: a parallel region's barrier costs µs on a quiet machine but up to a
#: scheduler slice (≈70 ms) when another process holds a core, against 0.04 ms of work for a
#: small city; above ~50,000 entries (1,000 stations) the split pays (design note 10).
PARALLEL_MIN_WORK = 50_000


@contextlib.contextmanager
def threads_for(work: int) -> Iterator[None]:
    """Run the kernels inside on one thread when ``work`` is too small to share (answers do
    not depend on the thread count: chunks are summed in a fixed order)."""
    if work >= PARALLEL_MIN_WORK or numba.get_num_threads() == 1:
        yield
        return
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)

@njit(cache=True, inline="always")
def _in_order(part: np.ndarray) -> np.ndarray:
    """Σ over the chunks (axis 0) in chunk order: the same sum whatever the thread count."""
    total = part[0].copy()
    for c in range(1, part.shape[0]):
        total += part[c]
    return total


_IN2 = types.Array(types.float64, 2, "C", readonly=True)  # a decoded message is read-only
_OUT2 = types.Array(types.float64, 2, "C")
_I64 = types.Array(types.int64, 1, "C", readonly=True)


# One explicit signature: a writable array passes as a read-only one, so the in-process,
# Ray and gRPC paths all run this one compiled version (never compiled inside a round).
@njit((_I64, _IN2, _IN2, _I64, types.float64, _OUT2, _IN2, _IN2, _I64, types.int64),
      cache=True, fastmath=_FAST, parallel=True)
def relax_and_sum(answer: np.ndarray, x_new: np.ndarray, z_src: np.ndarray, z_idx: np.ndarray,
                  alpha: float, xh: np.ndarray, x: np.ndarray, n: np.ndarray,
                  zone_of: np.ndarray, zones: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x̂ = αx + (1−α)·z_src[z_idx[i]] into row m of ``xh`` for the stations that answered
    (i = ``answer[m]`` ≥ 0; the others keep their row), and, in the same pass, Σ over each
    grid zone's stations of x̂, x and the participant counts n, [G, H] each."""
    m_count, h = xh.shape
    part = np.zeros((_CHUNKS, 3, zones, h))
    for c in prange(_CHUNKS):
        for m in range(c * m_count // _CHUNKS, (c + 1) * m_count // _CHUNKS):
            g, i = zone_of[m], answer[m]
            if i >= 0:
                j = z_idx[i]
                for t in range(h):
                    xh[m, t] = alpha * x_new[i, t] + (1.0 - alpha) * z_src[j, t]
            for t in range(h):
                part[c, 0, g, t] += xh[m, t]
                part[c, 1, g, t] += x[m, t]
                part[c, 2, g, t] += n[m, t]
    total = _in_order(part)
    return total[0], total[1], total[2]


@njit((_IN2, _IN2, _IN2, _I64, _IN2, _IN2, _IN2, _OUT2),
      cache=True, fastmath=_FAST, parallel=True)
def consensus_and_norms(
    xh: np.ndarray, x: np.ndarray, n: np.ndarray, zone_of: np.ndarray, shift: np.ndarray,
    pi: np.ndarray, z_prev: np.ndarray, z: np.ndarray,
) -> tuple[float, float, float, float, float]:
    """z = x̂ + n·shift_zone (into ``z``) and, weighting each station by 1/n (one EV's share),
    the squared norms ||x − z||², ||z − z_prev||², ||x||², ||z||² and Σ n·π²."""
    m_count, h = xh.shape
    part = np.zeros((_CHUNKS, 5))
    for c in prange(_CHUNKS):
        r2 = s2 = x2 = z2 = d2 = 0.0
        for m in range(c * m_count // _CHUNKS, (c + 1) * m_count // _CHUNKS):
            g = zone_of[m]
            for t in range(h):
                nn = n[m, t]
                w2 = 1.0 / max(nn, 1.0)
                zz = xh[m, t] + nn * shift[g, t]
                z[m, t] = zz
                r2 += w2 * (x[m, t] - zz) ** 2
                s2 += w2 * (zz - z_prev[m, t]) ** 2
                x2 += w2 * x[m, t] ** 2
                z2 += w2 * zz**2
                d2 += nn * pi[g, t] ** 2
        part[c, 0], part[c, 1], part[c, 2], part[c, 3], part[c, 4] = r2, s2, x2, z2, d2
    total = _in_order(part)
    return total[0], total[1], total[2], total[3], total[4]


@njit(cache=True)
def city_multipliers(
    s: np.ndarray, n: np.ndarray, zone_limit: np.ndarray, city_limit: np.ndarray
) -> np.ndarray:
    """[H] the z-update's city multiplier μ[t] (see :func:`zone_city_prices`).

    For a given μ the zone total is min(s_g − n_g μ, C_g); that is concave and piecewise
    linear in μ, with breakpoints μ_g = (s_g − C_g)/n_g, so μ is found exactly by checking
    the G + 1 segments. A zone with no participant at a step draws nothing then.
    """
    g_count, h = s.shape
    out = np.zeros(h)
    cands = np.empty(g_count + 1)
    for t in range(h):
        total = 0.0
        for g in range(g_count):
            if n[g, t] > 0:
                total += min(s[g, t], zone_limit[g, t])
        mu = 0.0
        if total > city_limit[t]:
            cands[0] = 0.0
            for g in range(g_count):
                cands[g + 1] = (max((s[g, t] - zone_limit[g, t]) / n[g, t], 0.0)
                                if n[g, t] > 0 else 0.0)
            cands.sort()
            # The segment [cands[k], cands[k+1]] holding the root: last k whose total ≥ P.
            k, tot_k = 0, total
            for j in range(g_count + 1):
                tot_j = 0.0
                for g in range(g_count):
                    if n[g, t] > 0:
                        tot_j += min(s[g, t] - n[g, t] * cands[j], zone_limit[g, t])
                if tot_j >= city_limit[t]:
                    k, tot_k = j, tot_j
            mu = cands[k]
            # Zones still capped just right of mu contribute no slope; a zone exactly at its
            # breakpoint is on its linear part there.
            slope = 0.0
            for g in range(g_count):
                gap = s[g, t] - n[g, t] * mu - zone_limit[g, t]
                if n[g, t] > 0 and not gap > 1e-12 * max(abs(zone_limit[g, t]), 1.0):
                    slope += n[g, t]
            if slope > 0.0:
                mu += (tot_k - city_limit[t]) / slope
        out[t] = mu
    return out


@njit(cache=True)
def zone_city_prices(
    s: np.ndarray, n: np.ndarray, zone_limit: np.ndarray, city_limit: np.ndarray
) -> np.ndarray:
    """The z-update's multipliers π[g, t] = λ_g[t] + μ[t] (exact, column by column).

    Minimises Σ_v ||z_v − v_v||² subject to the zone and city sums, given the zone sums
    ``s`` [G, H] of v and the participant counts ``n`` [G, H] (EVs plugged in at each step):
    μ from :func:`city_multipliers`, then each zone's λ_g = (s_g − n_g μ − C_g)_+ / n_g.
    """
    g_count, h = s.shape
    pi = np.zeros((g_count, h))
    mu = city_multipliers(s, n, zone_limit, city_limit)
    for t in range(h):
        for g in range(g_count):  # λ_g + μ; a zone with no participant has λ_g = 0
            lam = (max(0.0, (s[g, t] - n[g, t] * mu[t] - zone_limit[g, t]) / n[g, t])
                   if n[g, t] > 0 else 0.0)
            pi[g, t] = lam + mu[t]
    return pi


@njit(cache=True)
def coupling_violation(x_g: np.ndarray, zone_limit: np.ndarray, city_limit: np.ndarray) -> float:
    """Largest excess of the plans' zone sums ``x_g`` [G, H] over a zone limit, or of their
    total over the city limit, as a share of that limit (0 when every limit holds)."""
    worst = 0.0
    for t in range(x_g.shape[1]):
        total = 0.0
        for g in range(x_g.shape[0]):
            total += x_g[g, t]
            worst = max(worst, (x_g[g, t] - zone_limit[g, t]) / max(zone_limit[g, t], 1e-9))
        worst = max(worst, (total - city_limit[t]) / max(city_limit[t], 1e-9))
    return worst


@njit(cache=True)
def limits_worth(y: np.ndarray, n: np.ndarray, zone_limit: np.ndarray,
                 city_limit: np.ndarray) -> float:
    """max Σ_g y[g, t]·Z_g over 0 ≤ Z_g ≤ C_g[t], Σ_g Z_g ≤ P[t], summed over the steps: what
    the limits are worth at prices ``y`` [G, H]. Subtracted from the stations' duals it makes
    the Lagrangian dual of the coupled problem (the zone sums are ≥ 0 because every p is), so
    it is a fractional knapsack per step: the dearest zones first. Zones with no participant
    at a step (``n`` [G, H] = 0) have nothing to price. Infinite when a limit is and a price
    on it is not 0 (no bound then)."""
    g_count, h = y.shape
    total = 0.0
    for t in range(h):
        left = city_limit[t]
        taken = np.zeros(g_count, dtype=np.bool_)
        while left > 0.0:
            best, price = -1, 0.0
            for g in range(g_count):
                if not taken[g] and n[g, t] > 0 and y[g, t] > price:
                    best, price = g, y[g, t]
            if best < 0:
                break
            taken[best] = True
            z = min(zone_limit[best, t], left)
            total += price * z
            left -= z
    return total


@functools.cache
def warm_up() -> None:
    """Load (or compile, the first time on a machine) the kernels before round 0's deadline."""
    z, n = np.zeros((1, 1)), np.ones((1, 1))
    zone = np.zeros(1, np.int64)
    relax_and_sum(zone, z, z, zone, 1.5, z.copy(), z, n, zone, 1)
    consensus_and_norms(z, z, n, zone, z, z, z, np.empty((1, 1)))
    zone_city_prices(z, n, n, np.ones(1))
    coupling_violation(z, n, np.ones(1))
    limits_worth(z, n, n, np.ones(1))
