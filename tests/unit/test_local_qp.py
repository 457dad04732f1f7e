"""The exact vectorised local solve equals cvxpy (Clarabel) to 1e-6 on random instances."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from evgrid.agents.local_qp import solve_local


def cvxpy_row(w, q, upper, budget, rho, wear):
    p = cp.Variable(w.size)
    obj = q @ p + wear * cp.sum_squares(p) + rho / 2 * cp.sum_squares(p - w)
    prob = cp.Problem(cp.Minimize(obj), [p >= 0, p <= upper, cp.sum(p) <= budget])
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
    return p.value, prob.value


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 6), h=st.integers(1, 24),
       rho=st.floats(0.01, 50), wear=st.floats(0, 2))
def test_matches_cvxpy(seed: int, n: int, h: int, rho: float, wear: float) -> None:
    rng = np.random.default_rng(seed)
    w = rng.normal(5, 8, (n, h))
    q = rng.normal(-1, 2, (n, h))
    upper = rng.uniform(0, 22, (n, h)) * (rng.random((n, h)) < 0.8)
    budget = rng.uniform(0, 1.2, n) * upper.sum(axis=1)
    p, _ = solve_local(w, q, upper, budget, rho=rho, wear=wear)
    assert (p >= 0).all() and (p <= upper + 1e-12).all()
    assert (p.sum(axis=1) <= budget * (1 + 1e-9) + 1e-9).all()
    for i in range(n):
        ref, ref_obj = cvxpy_row(w[i], q[i], upper[i], budget[i], rho, wear)
        obj = q[i] @ p[i] + wear * (p[i] ** 2).sum() + rho / 2 * ((p[i] - w[i]) ** 2).sum()
        # The objective is strictly convex: equal optimal values mean equal minimisers.
        assert obj <= ref_obj + 1e-6 * max(1.0, abs(ref_obj)), (obj, ref_obj)
        np.testing.assert_allclose(p[i], ref, rtol=1e-6, atol=1e-5 * max(1.0, upper[i].max()))


def test_width_skips_only_zeros() -> None:
    """Not searching the columns after an EV's departure changes nothing (they stay 0)."""
    rng = np.random.default_rng(7)
    n, h = 40, 50
    width = rng.integers(0, h + 1, n)
    upper = np.where(np.arange(h)[None, :] < width[:, None], rng.uniform(3, 22, (n, h)), 0.0)
    w, q = rng.normal(5, 8, (n, h)), rng.normal(-1, 2, (n, h))
    budget = rng.uniform(0, 1, n) * upper.sum(1)
    dense, mu = solve_local(w, q, upper, budget, rho=0.3, wear=0.01)
    short, mu_s = solve_local(w, q, upper, budget, rho=0.3, wear=0.01, width=width)
    np.testing.assert_allclose(short, dense, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mu_s, mu, rtol=1e-12, atol=1e-12)
