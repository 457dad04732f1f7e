"""Seed 003's M/M/c/c availability forecast (003_48b05ca88a329b62.txt): expm vs closed forms
and vs an independent Gillespie simulation of the same chain."""

from __future__ import annotations

import numpy as np
import pytest

from evgrid.optim.availability import (
    allocation_radius_km,
    erlang_b,
    expected_wait_h,
    free_pile_probability,
    mmcc_generator,
    simulate_free_probability,
)


@pytest.mark.parametrize(("c", "lam", "mu"), [(1, 0.5, 0.4), (4, 2.0, 0.4), (12, 6.0, 0.5)])
def test_generator_rows_sum_to_zero(c: int, lam: float, mu: float) -> None:
    q = mmcc_generator(c, lam, mu)
    assert q.shape == (c + 1, c + 1)
    assert np.allclose(q.sum(axis=1), 0.0)
    off = q - np.diag(np.diag(q))
    assert (off >= 0).all()
    assert q[0, 1] == pytest.approx(c * mu) and q[c, c - 1] == pytest.approx(lam)


def test_erlang_b_closed_form_and_vectorised() -> None:
    # B(c, a) = (a^c/c!) / Σ_k a^k/k!
    for c, a in [(1, 0.5), (3, 2.0), (8, 5.0)]:
        terms = [a**k / np.prod(np.arange(1, k + 1)) for k in range(c + 1)]
        assert erlang_b(c, a) == pytest.approx(terms[-1] / sum(terms), rel=1e-12)
    out = erlang_b(np.array([1, 3, 8]), np.array([0.5, 2.0, 5.0]))
    assert isinstance(out, np.ndarray) and out.shape == (3,)
    assert out[2] == pytest.approx(erlang_b(8, 5.0))
    assert np.isfinite(erlang_b(500, 450.0))  # the recursion does not overflow


@pytest.mark.parametrize("free_now", [0, 2, 4])
def test_forecast_tends_to_one_minus_erlang_b(free_now: int) -> None:
    c, lam, mu = 4, 2.0, 0.4
    p = free_pile_probability(c, lam, mu, free_now, 200.0)
    assert float(p) == pytest.approx(1.0 - erlang_b(c, lam / mu), abs=1e-9)


def test_forecast_at_zero_is_the_observation() -> None:
    p = free_pile_probability(4, 2.0, 0.4, np.array([0, 1, 4]), 0.0)
    assert p.tolist() == [0.0, 1.0, 1.0]


def test_vectorised_equals_scalar_calls() -> None:
    c = np.array([2, 4, 4, 10, 4])
    lam = np.array([1.0, 2.0, 2.0, 3.0, 2.0])
    free = np.array([0, 1, 3, 5, 1])
    tau = np.array([0.5, 0.5, 1.0, 2.0, 0.0])
    vec = free_pile_probability(c, lam, 0.4, free, tau)
    one = [float(free_pile_probability(int(ci), float(li), 0.4, int(fi), float(ti)))
           for ci, li, fi, ti in zip(c, lam, free, tau, strict=True)]
    assert np.allclose(vec, one, atol=1e-14)
    w = expected_wait_h(c, lam, 0.4, free, tau)
    assert np.allclose(w, (1 - vec) / (c * 0.4))


@pytest.mark.parametrize(("c", "lam", "mu", "free_now", "tau"),
                         [(4, 2.0, 0.4, 1, 0.5), (10, 3.0, 0.4, 0, 1.0), (2, 1.0, 0.5, 2, 2.0)])
def test_forecast_matches_gillespie(c: int, lam: float, mu: float, free_now: int,
                                    tau: float) -> None:
    runs = 20_000
    exact = float(free_pile_probability(c, lam, mu, free_now, tau))
    sim = simulate_free_probability(c, lam, mu, free_now, tau, runs=runs, seed=7)
    se = np.sqrt(exact * (1 - exact) / runs)
    assert abs(sim - exact) <= 4 * se + 1e-3


def test_radius_monotone_and_clipped() -> None:
    soc = np.linspace(0, 1, 11)
    occ = np.linspace(0, 1, 11)
    r = allocation_radius_km(soc[:, None], occ[None, :], base_km=3.0, min_km=1.0, max_km=5.0)
    assert (np.diff(r, axis=0) >= 0).all() and (np.diff(r, axis=1) >= 0).all()
    assert r.min() >= 1.0 and r.max() <= 5.0
    assert float(allocation_radius_km(1.0, 0.0, base_km=3.0)) == pytest.approx(3.0)
    # strictly wider for a busier area, narrower for an emptier battery (inside the clip)
    assert allocation_radius_km(0.8, 0.6) > allocation_radius_km(0.8, 0.2)
    assert allocation_radius_km(0.3, 0.5) < allocation_radius_km(0.9, 0.5)


def test_waiting_room_chain_reaches_the_mmck_stationary_law() -> None:
    """With a waiting room the forecast tends to M/M/c/K's closed form (K = c + room):
    π_n ∝ aⁿ/n! for n ≤ c busy, aⁿ/(c!·c^{n−c}) beyond; a free pile iff n < c."""
    from math import factorial

    from evgrid.optim.availability import free_pile_probability

    c, lam, mu, room = 3, 2.5, 1.0, 6
    a = lam / mu
    w = np.array([a**n / factorial(n) if n <= c else a**n / (factorial(c) * c ** (n - c))
                  for n in range(c + room + 1)])
    expected = w[:c].sum() / w.sum()
    for free, queued in ((3, 0), (0, 0), (0, 5)):
        got = free_pile_probability(c, lam, mu, free, 200.0, queued_now=queued, room=room)
        assert float(got) == pytest.approx(expected, abs=1e-9)


def test_a_queue_ahead_lowers_the_chance_of_a_free_pile() -> None:
    from evgrid.optim.availability import free_pile_probability

    loss = free_pile_probability(4, 2.0, 0.5, 0, 0.5)
    queue = [float(free_pile_probability(4, 2.0, 0.5, 0, 0.5, queued_now=q, room=20))
             for q in (0, 2, 6)]
    assert queue[0] > queue[1] > queue[2]
    assert queue[0] <= float(loss) + 1e-12  # arrivals now queue instead of being lost
