"""The coordinator's per-round passes over every station's profile, compiled (numba).

At 1,000 stations × 96 steps a round touches four [M, H] arrays; numpy spent ≈2 ms on the
twenty-odd temporaries of the z-update and the residual norms. These two passes do the same
arithmetic as the formulas in ``evgrid.coordinator.admm`` (which documents them), once.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit, types

# Reordered sums and fused multiply-adds are fine; infinities and NaN must stay meaningful.
_FAST = {"reassoc", "contract", "arcp", "nsz"}


_IN2 = types.Array(types.float64, 2, "C", readonly=True)  # a decoded message is read-only
_OUT2 = types.Array(types.float64, 2, "C")
_I64 = types.Array(types.int64, 1, "C", readonly=True)


# One explicit signature: a writable array passes as a read-only one, so the in-process,
# Ray and gRPC paths all run this one compiled version (never compiled inside a round).
@njit((_I64, _IN2, _IN2, _IN2, _I64, types.float64, _OUT2, _OUT2, _OUT2, _I64, types.int64),
      cache=True, fastmath=_FAST)
def absorb(rows: np.ndarray, x_new: np.ndarray, n_new: np.ndarray, z_src: np.ndarray,
           z_idx: np.ndarray, alpha: float, xh: np.ndarray, x: np.ndarray, n: np.ndarray,
           zone_of: np.ndarray, zones: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Store the answers (row ``rows[i]`` of the period takes answer i: x, its participant
    counts and x̂ = αx + (1−α)·z_src[z_idx[i]]), then return Σ over each grid zone's stations
    of x̂, x and the participant counts, [G, H] each (stations that did not answer keep
    their last row)."""
    h = xh.shape[1]
    for i in range(rows.size):
        m, j = rows[i], z_idx[i]
        for t in range(h):
            x[m, t] = x_new[i, t]
            xh[m, t] = alpha * x_new[i, t] + (1.0 - alpha) * z_src[j, t]
            n[m, t] = n_new[i, t]
    xh_g, x_g, n_g = np.zeros((zones, h)), np.zeros((zones, h)), np.zeros((zones, h))
    for m in range(xh.shape[0]):
        g = zone_of[m]
        for t in range(h):
            xh_g[g, t] += xh[m, t]
            x_g[g, t] += x[m, t]
            n_g[g, t] += n[m, t]
    return xh_g, x_g, n_g


@njit(cache=True, fastmath=_FAST)
def consensus_and_norms(
    xh: np.ndarray, x: np.ndarray, n: np.ndarray, zone_of: np.ndarray, shift: np.ndarray,
    pi: np.ndarray, z_prev: np.ndarray, z: np.ndarray,
) -> tuple[float, float, float, float, float]:
    """z = x̂ + n·shift_zone (into ``z``) and, weighting each station by 1/n (one EV's share),
    the squared norms ||x − z||², ||z − z_prev||², ||x||², ||z||² and Σ n·π²."""
    m_count, h = xh.shape
    r2 = s2 = x2 = z2 = d2 = 0.0
    for m in range(m_count):
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
    return r2, s2, x2, z2, d2


@functools.cache
def warm_up() -> None:
    """Load (or compile, the first time on a machine) the kernels before round 0's deadline."""
    z, n = np.zeros((1, 1)), np.ones((1, 1))
    zone = np.zeros(1, np.int64)
    absorb(zone, z, n, z, zone, 1.5, z.copy(), z.copy(), n.copy(), zone, 1)
    consensus_and_norms(z, z, n, zone, z, z, z, np.empty((1, 1)))
