"""Seed 003's station-availability forecast (003_48b05ca88a329b62.txt, "queueing model").

The seed models each charging station as an M/M/c/c loss system: Poisson arrivals at rate λ,
exponential sessions at rate μ per pile, ``c`` piles, no waiting room. Its state ``x(t)`` is the
number of *available* piles, the generator is ``Q`` and the probability that a driver who arrives
``τ`` hours from now finds a free pile is ``P(S_j > 0) = 1 − w₀(τ)`` with ``w(τ) = w(0)·e^{Qτ}``.
We take ``w(0)`` to be a point mass at the free count observed now (the seed's "initial state
distribution" as a dispatcher sees it: the station reports its live count).

Why it matters for the allocator: a station that is free *now* may be full when the EV gets
there; forecasting at the drive time ``τ`` lets the assignment prefer stations likely to have a
pile on arrival, and the forecast decays to the stationary Erlang-B answer as ``τ`` grows
(so a long drive is judged on the station's long-run blocking, not its current snapshot).

Also here: the seed's dynamic allocation radius ("adjusted based on the driver's remaining
battery charge and station occupancy rates"), a practitioner's expected-wait reading of the
forecast, and a Gillespie simulation of the same chain, used by the tests to validate ``expm``.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import expm

__all__ = [
    "allocation_radius_km",
    "erlang_b",
    "expected_wait_h",
    "free_pile_probability",
    "mmcc_generator",
    "simulate_free_probability",
]


def mmcc_generator(c: int, lam: float, mu: float, room: int = 0) -> np.ndarray:
    """The generator ``Q`` of seed 003's chain over the number of FREE piles 0..c.

    From ``x`` free piles an arrival takes one (``x → x−1`` at rate λ, only while ``x > 0``: at
    ``x = 0`` an M/M/c/c arrival is blocked and the state stays) and each of the ``c − x`` busy
    piles finishes at rate μ (``x → x+1`` at rate ``(c − x)·μ``). Rows sum to zero.

    ``room > 0`` adds a waiting room (M/M/c/c+room), our extension for stations where drivers
    queue, as in evgrid's simulator: state ``i`` of ``0..c+room`` is ``i − room`` = free piles
    minus queued drivers, an arrival at a full station joins the queue (while there is room)
    and a freed pile goes to the queue's head. ``room = 0`` is the seed's chain exactly.
    """
    if c < 0 or room < 0:
        raise ValueError("c and room must be >= 0")
    if lam < 0 or mu < 0:
        raise ValueError("rates must be >= 0")
    n = c + room + 1
    q = np.zeros((n, n))
    for i in range(n):
        net = i - room
        if i > 0 and (net > 0 or room > 0):
            q[i, i - 1] = lam
        if net < c:
            q[i, i + 1] = (c - max(net, 0)) * mu
        q[i, i] = -q[i].sum()
    return q


def _transition_matrix(c: int, lam: float, mu: float, tau_h: float, room: int = 0
                       ) -> np.ndarray:
    """``e^{Qτ}`` — all rows; the caller picks the row of the observed state."""
    return expm(mmcc_generator(c, lam, mu, room) * tau_h)


def free_pile_probability(
    c: np.ndarray | int,
    lam: np.ndarray | float,
    mu: np.ndarray | float,
    free_now: np.ndarray | int,
    tau_h: np.ndarray | float,
    *,
    queued_now: np.ndarray | int = 0,
    room: int = 0,
) -> np.ndarray:
    """``P(S_j > 0 at t+τ) = 1 − w₀(τ)`` of seed 003, per station (arguments broadcast).

    ``w(0)`` is a point mass at ``free_now`` (clipped to ``0..c``), so ``w₀(τ)`` is the entry
    ``[free_now, 0]`` of ``e^{Qτ}``. Stations may differ in ``c``; ``expm`` is computed once per
    distinct ``(c, λ, μ, τ)`` — a region has few station types and few drive-time buckets, so
    this is far cheaper than one ``expm`` per station. ``τ = 0`` returns ``free_now > 0``.

    With ``room > 0`` (see :func:`mmcc_generator`) the chain has a waiting room and starts at
    ``free_now − queued_now``: a station with drivers waiting has no free pile until they are
    served, which the loss chain cannot know.
    """
    cb, lb, mb, fb, tb, qb = np.broadcast_arrays(
        np.asarray(c), np.asarray(lam, dtype=float), np.asarray(mu, dtype=float),
        np.asarray(free_now), np.asarray(tau_h, dtype=float), np.asarray(queued_now))
    ci = cb.astype(int)
    if (ci < 0).any() or (tb < 0).any() or room < 0:
        raise ValueError("c, tau_h and room must be >= 0")
    fi = np.clip(fb.astype(int), 0, ci)
    start = room + np.where(fi > 0, fi, -np.minimum(qb.astype(int), room))
    out = np.empty(ci.shape, dtype=float)
    now = tb == 0
    out[now] = fi[now] > 0
    keys = np.stack([ci[~now], lb[~now], mb[~now], tb[~now]], axis=-1).reshape(-1, 4)
    if keys.size:
        uniq, inv = np.unique(keys, axis=0, return_inverse=True)
        rows = start[~now].ravel()
        vals = np.empty(rows.size)
        for u, (cu, lu, mu_u, tu) in enumerate(uniq):
            sel = inv.ravel() == u
            p = _transition_matrix(int(cu), float(lu), float(mu_u), float(tu), room)
            vals[sel] = 1.0 - p[rows[sel], : room + 1].sum(axis=1)
        out[~now] = np.clip(vals, 0.0, 1.0)
    return out


def erlang_b(c: np.ndarray | int, a: np.ndarray | float) -> float | np.ndarray:
    """Erlang B: the stationary ``P(no free pile)`` of M/M/c/c with offered load ``a = λ/μ``.

    The stable recursion ``B₀ = 1, B_k = a·B_{k−1} / (k + a·B_{k−1})`` (no factorials, no
    overflow for large ``c``). It is the ``τ → ∞`` limit of ``w₀(τ)`` in seed 003's forecast.
    Scalars in give a float out; arrays broadcast.
    """
    cb, ab = np.broadcast_arrays(np.asarray(c), np.asarray(a, dtype=float))
    ci = cb.astype(int)
    if (ci < 0).any() or (ab < 0).any():
        raise ValueError("c and a must be >= 0")
    b = np.ones(ci.shape)
    for k in range(1, int(ci.max(initial=0)) + 1):
        step = k <= ci
        b = np.where(step, ab * b / (k + ab * b), b)
    if b.ndim == 0:
        return float(b)
    return b


def expected_wait_h(
    c: np.ndarray | int,
    lam: np.ndarray | float,
    mu: np.ndarray | float,
    free_now: np.ndarray | int,
    tau_h: np.ndarray | float,
) -> np.ndarray:
    """Expected wait [h] for a pile of a driver arriving after ``τ``: ``(1 − P_free)·1/(c·μ)``.

    A practitioner's reading, not in seed 003 (which stops at ``P(S_j > 0)``): with probability
    ``w₀(τ)`` the driver finds every pile busy and then waits for the first of ``c`` busy piles
    to free, an ``Exp(c·μ)`` time with mean ``1/(c·μ)``; otherwise it plugs in at once. It
    ignores other drivers already waiting (M/M/c/c has no queue), so it is a lower bound on a
    real queue's wait — good enough to rank stations in the assignment cost.
    """
    cb = np.asarray(c, dtype=float)
    mb = np.asarray(mu, dtype=float)
    p_free = free_pile_probability(c, lam, mu, free_now, tau_h)
    with np.errstate(divide="ignore"):
        service = np.where(cb * mb > 0, 1.0 / np.maximum(cb * mb, 1e-300), np.inf)
    return np.asarray((1.0 - p_free) * service, dtype=float)


def allocation_radius_km(
    soc: np.ndarray | float,
    occupancy: np.ndarray | float,
    *,
    base_km: float = 3.0,
    min_km: float = 1.0,
    max_km: float = 10.0,
    occupancy_gain: float = 1.0,
    soc_floor: float = 0.25,
) -> np.ndarray:
    """Seed 003's allocation radius, "adjusted based on the driver's remaining battery charge
    and station occupancy rates" (003_48b05ca88a329b62.txt, state-transition process).

    The seed gives no formula; our reading::

        r = base_km · (1 + occupancy_gain·occ) · (soc_floor + (1 − soc_floor)·soc),  clipped

    * busy stations (high ``occ`` ∈ [0, 1]) → search wider, since near piles are likely taken;
    * low state of charge (``soc`` ∈ [0, 1]) → search narrower: the seed's battery constraint
      ``Q_rk/ΔE_k ≥ D_ki`` and range anxiety make long detours infeasible or unwelcome.

    Non-decreasing in both arguments (strictly, before clipping to ``[min_km, max_km]``). At
    ``soc = 1, occ = 0`` it is ``base_km``. Arguments broadcast.
    """
    if not 0 < min_km <= max_km:
        raise ValueError("need 0 < min_km <= max_km")
    if occupancy_gain < 0 or not 0 <= soc_floor <= 1:
        raise ValueError("need occupancy_gain >= 0 and soc_floor in [0, 1]")
    s = np.clip(np.asarray(soc, dtype=float), 0.0, 1.0)
    o = np.clip(np.asarray(occupancy, dtype=float), 0.0, 1.0)
    r = base_km * (1.0 + occupancy_gain * o) * (soc_floor + (1.0 - soc_floor) * s)
    return np.asarray(np.clip(r, min_km, max_km), dtype=float)


def simulate_free_probability(
    c: int,
    lam: float,
    mu: float,
    free_now: int,
    tau_h: float,
    *,
    runs: int = 20_000,
    seed: int = 0,
) -> float:
    """Monte-Carlo ``P(x(τ) > 0)`` by Gillespie simulation of the chain of :func:`mmcc_generator`.

    Independent of ``expm``, so agreement validates the forecast. All runs advance together
    (vectorised over runs): each step draws the holding time of every unfinished run, stops those
    that pass ``τ``, and moves the rest by one arrival or one departure.
    """
    rng = np.random.default_rng(seed)
    x = np.full(runs, int(np.clip(free_now, 0, c)))
    t = np.zeros(runs)
    active = np.ones(runs, dtype=bool)
    while active.any():
        idx = np.flatnonzero(active)
        xi = x[idx]
        down = np.where(xi > 0, lam, 0.0)
        up = (c - xi) * mu
        total = down + up
        stuck = total <= 0
        dt = np.full(idx.size, np.inf)
        dt[~stuck] = rng.exponential(1.0 / total[~stuck])
        t[idx] += dt
        done = t[idx] > tau_h
        active[idx[done]] = False
        move = idx[~done]
        if move.size:
            u = rng.random(move.size) * total[~done]
            x[move] += np.where(u < down[~done], -1, 1)
    return float((x > 0).mean())
