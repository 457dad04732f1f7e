"""The coupled power-sharing problem solved centrally with cvxpy (Clarabel): ADMM's yardstick.

Same per-EV local costs and constraints as ``evgrid.agents.station`` and the same zone and
city coupling as ``evgrid.coordinator.admm``; used by tests and ``benchmarks/admm.py``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from evgrid.agents.station import StationPack


def centralised_optimum(
    pack: StationPack, zone_of_station: np.ndarray, zone_limit_kw: np.ndarray,
    city_limit_kw: np.ndarray,
) -> tuple[float, np.ndarray]:
    """(objective incl. the unmet-penalty constant, plan [M, H]) for a pack after begin_period."""
    import cvxpy as cp

    rows, h = pack.upper.shape
    mask = pack.upper.ravel() > 0
    idx = np.flatnonzero(mask)
    r, t = np.divmod(idx, h)
    n = idx.size
    p = cp.Variable(n)
    q = pack.q.ravel()[idx]
    energy = sp.csr_matrix((np.ones(n), (r, np.arange(n))), shape=(rows, n))
    g = zone_of_station[pack.row_station[r]]
    n_g = zone_limit_kw.shape[1]
    zone = sp.csr_matrix((np.ones(n), (t * n_g + g, np.arange(n))), shape=(h * n_g, n))
    city = sp.csr_matrix((np.ones(n), (t, np.arange(n))), shape=(h, n))
    obj = q @ p + pack.wear * cp.sum_squares(p)
    cons = [p >= 0, p <= pack.upper.ravel()[idx], energy @ p <= pack.budget,
            zone @ p <= zone_limit_kw.reshape(-1), city @ p <= city_limit_kw]
    prob = cp.Problem(cp.Minimize(obj), cons)
    prob.solve(solver="CLARABEL")
    if prob.status not in {"optimal", "optimal_inaccurate"}:
        raise RuntimeError(f"centralised solve ended {prob.status}")
    x = np.zeros(rows * h)
    x[idx] = p.value
    plan = pack.agg @ x.reshape(rows, h)
    return float(prob.value + pack.const.sum()), plan
