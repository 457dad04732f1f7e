"""Cohort agents: each user type decides where its drivers go, sharing zone capacity by ADMM.

A cohort k expects, over the horizon, D_k vehicles parked at once (Little's law: arrival rate ×
mean dwell), split by the SoC zone class each vehicle may use (000 §3.1). It claims x_{k,s}
vehicles at each facility zone s of the right class, minimising seed 003's assignment cost
(drive distance + walking distance + charging fee, priced with the cohort's value of time) plus
the expected wait for a charger: seed 003's M/M/c/c availability forecast, P(no free pile when
the cohort's drivers get there, τ = their drive time) from the zone's typical free count at the
city's average utilisation, times the wait for the first pile to free (1/(c·μ);
:func:`evgrid.optim.availability.expected_wait_h`)
subject to Σ_s∈class x_{k,s} = D_{k,class}; the coupling Σ_k x_{k,s} ≤ chargers_s is shared
by ADMM (one scaled price per facility zone). Arriving drivers of cohort k are then routed to
zone s with probability ∝ x_{k,s}, among zones with a free charger when there is one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from evgrid.envs.sessions import draw_truncated
from evgrid.envs.simulator import Arrivals, assign_by_preference, candidate_slots
from evgrid.envs.world import World
from evgrid.optim.assignment_router import DRIVE_KMH, driver_costs
from evgrid.optim.availability import expected_wait_h

SAMPLES = 4000  # Monte-Carlo draws per cohort for expected distances and class shares


def project_simplex(v: np.ndarray, total: float) -> np.ndarray:
    """Euclidean projection of v onto {x ≥ 0, Σx = total} (sort-based, exact)."""
    if total <= 0 or v.size == 0:
        return np.zeros_like(v)
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - total
    k = np.arange(1, v.size + 1)
    r = np.flatnonzero(u - css / k > 0)[-1]
    return np.maximum(v - css[r] / (r + 1), 0.0)


@dataclass
class CohortAgent:
    """One user type's routing agent (plain object; Ray wraps it as an actor)."""

    name: str
    cost: np.ndarray  # [S] cost of sending one vehicle to each facility zone [currency]
    groups: list[np.ndarray]  # candidate slots per SoC class
    demand: np.ndarray  # [len(groups)] expected vehicles parked at once per class
    alpha: float = 1.6

    def __post_init__(self) -> None:
        self.x = np.zeros_like(self.cost)
        self.xh = np.zeros_like(self.cost)

    def propose(self, z: np.ndarray, u: np.ndarray, rho: float) -> tuple[np.ndarray, np.ndarray]:
        """One ADMM x-update: argmin cost·x + ρ/2||x − z + u||² per class simplex."""
        w = z - u - self.cost / rho
        x = np.zeros_like(self.cost)
        for g, d in zip(self.groups, self.demand, strict=True):
            x[g] = project_simplex(w[g], float(d))
        self.x = x
        self.xh = self.alpha * x + (1 - self.alpha) * z
        return self.xh, self.x

    def shares(self) -> np.ndarray:
        """[S] routing weights (claims normalised within each class)."""
        out = np.zeros_like(self.x)
        for g, d in zip(self.groups, self.demand, strict=True):
            if d > 0:
                out[g] = self.x[g] / d
        return out


def build_cohort_agents(world: World, *, seed: int = 0, alpha: float = 1.6) -> list[CohortAgent]:
    """Cohort agents for every cohort of the scenario, from Monte-Carlo expectations."""
    sc = world.scenario
    rng = np.random.default_rng(seed)
    xs, ys = world.slot_xy_km[:, 0], world.slot_xy_km[:, 1]
    # Expected wait per zone at the city's average utilisation (the claims ADMM then moves
    # drivers away from zones that would overfill; this prices the queue below that).
    dwell_h = [float(draw_truncated(c.dwell_h, SAMPLES, rng).mean()) for c in sc.cohorts]
    parked_total = sum(sc.arrivals_per_day * c.share / 24 * d
                       for c, d in zip(sc.cohorts, dwell_h, strict=True))
    chargers = world.slot_chargers.astype(float)
    mean_dwell = parked_total / max(sum(sc.arrivals_per_day * c.share / 24 for c in sc.cohorts), 1e-9)
    load = parked_total * chargers / max(chargers.sum(), 1.0)
    mu = 1.0 / max(mean_dwell, 1e-9)
    piles = np.maximum(world.slot_chargers, 1)
    typical_free = np.maximum(world.slot_chargers - np.round(load), 0).astype(np.int64)
    agents = []
    for c in sc.cohorts:
        dwell = draw_truncated(c.dwell_h, SAMPLES, rng)
        parked = sc.arrivals_per_day * c.share / 24 * float(dwell.mean())  # Little's law
        soc = draw_truncated(c.arrival_soc, SAMPLES, rng)
        origin = np.stack([rng.uniform(xs.min() - 1, xs.max() + 1, SAMPLES),
                           rng.uniform(ys.min() - 1, ys.max() + 1, SAMPLES)], axis=1)
        drive = np.linalg.norm(origin[:, None, :] - world.slot_xy_km[None], axis=2).mean(0)
        energy = max(c.target_soc - float(soc.mean()), 0.0) * c.battery_kwh
        wait_h = expected_wait_h(piles, load * mu, mu, typical_free, drive / DRIVE_KMH)
        vot = np.array([c.value_of_time_per_h])
        cost = (driver_costs(drive[None, :], world.slot_walk_km[None, :], world.slot_fee_per_kwh,
                             np.array([energy]), vot)[0]
                + wait_h * c.value_of_time_per_h)
        # SoC classes: the set of zones a driver may use depends only on its arrival SoC.
        fake = _SocOnly(soc)
        cand = candidate_slots(world, fake, np.arange(SAMPLES))
        patterns, inverse = np.unique(cand, axis=0, return_inverse=True)
        share = np.bincount(inverse.ravel(), minlength=len(patterns)) / SAMPLES
        groups = [np.flatnonzero(p) for p in patterns]
        agents.append(CohortAgent(name=c.name, cost=cost, groups=groups, demand=parked * share,
                                  alpha=alpha))
    return agents


@dataclass(frozen=True)
class _SocOnly:
    """The two session columns ``candidate_slots`` reads, for sampled drivers."""

    arrival_soc: np.ndarray

    @property
    def facility(self) -> np.ndarray:
        return np.full(self.arrival_soc.size, -1)


@dataclass
class ClaimStats:
    iterations: int
    violation_rel: float
    primal_residual: float
    converged: bool


def solve_claims(
    agents: list[Any], capacity: np.ndarray, *, rho: float = 1.0, tol: float = 1e-3,
    max_iter: int = 1000,
    gather: Callable[[list[Any]], list[tuple[np.ndarray, np.ndarray]]] = list,
) -> ClaimStats:
    """Sharing ADMM for Σ_k x_{k,s} ≤ capacity_s (one participant per cohort and slot).

    The z-update shifts every cohort's claim on an over-full zone by the same amount
    λ_s = max(0, (Σ_k v_{k,s} − cap_s) / K), so u is one scaled price per zone. ``agents`` are
    :class:`CohortAgent` objects or proxies whose ``propose`` returns futures that ``gather``
    resolves (``ray.get`` for actors), so all cohorts answer a round in parallel. ρ is
    balanced against the residuals (Boyd §3.4.1) every 10 rounds during the first 200.
    """
    k = len(agents)
    s = capacity.size
    u = np.zeros(s)
    z = np.zeros((k, s))
    r = viol = np.inf
    for it in range(1, max_iter + 1):
        answers = gather([a.propose(z[i], u, rho) for i, a in enumerate(agents)])
        xh = np.stack([a[0] for a in answers])
        x = np.stack([a[1] for a in answers])
        v = xh + u[None, :]
        lam = np.maximum(0.0, (v.sum(0) - capacity) / k)
        z_new = v - lam[None, :]
        u = lam
        r = float(np.linalg.norm(x - z_new))
        dual = float(rho * np.linalg.norm(z_new - z))
        z = z_new
        load = x.sum(0)
        viol = float((np.maximum(load - capacity, 0) / np.maximum(capacity, 1.0)).max(initial=0.0))
        scale = max(1.0, float(np.abs(x).max(initial=0.0)))
        if r <= tol * scale and dual <= tol * scale and viol <= tol:
            return ClaimStats(it, viol, r, True)
        if it % 10 == 0 and it <= 200 and (r > 10 * dual or dual > 10 * r):
            step = 2.0 if r > 10 * dual else 0.5
            rho *= step
            u = u / step
    return ClaimStats(max_iter, viol, r, False)


class CohortRouter:
    """A simulator router that sends each cohort's arrivals by its agreed shares.

    Random-utility choice (Gumbel-max): each arriving driver ranks the zones it may use by
    log(share) + Gumbel noise, i.e. draws a zone with probability ∝ its cohort's share, and the
    simulator's deferred acceptance seats drivers on free chargers in that preference order.
    Zones its cohort claimed nothing of rank after all claimed ones, by distance. Replayed
    sessions (cohort −1) keep the nearest-free rule.
    """

    def __init__(self, agents: list[CohortAgent], *, seed: int = 0) -> None:
        self.weights = np.stack([a.shares() for a in agents]) if agents else np.zeros((0, 0))
        self.seed = seed

    def __call__(self, arrivals: Arrivals) -> np.ndarray:
        cohort = arrivals.cohort
        dist = arrivals.travel_km()
        if self.weights.size == 0:
            cost = dist
        else:
            rng = np.random.default_rng((self.seed, arrivals.t))
            w = np.where((cohort >= 0)[:, None], self.weights[np.maximum(cohort, 0)], 0.0)
            gumbel = rng.gumbel(size=w.shape)
            with np.errstate(divide="ignore"):
                cost = np.where(w > 0, -(np.log(w) + gumbel), 1e6 + dist)
            cost = np.where((cohort >= 0)[:, None], cost, dist)
        return assign_by_preference(arrivals.candidates(), cost, arrivals.free)


def cohort_router(
    world: World, *, seed: int = 0, host: Callable[[list[CohortAgent]], Any] | None = None,
) -> tuple[CohortRouter, ClaimStats]:
    """Build the cohort agents, agree their claims on charger capacity, return the router.

    ``host`` moves the agents elsewhere for the negotiation (e.g. into Ray actors): it returns
    (proxies, gather, fetch) where ``fetch()`` brings the agreed agents back.
    """
    agents = build_cohort_agents(world, seed=seed)
    cap = world.slot_chargers.astype(float)
    if host is None:
        stats = solve_claims(agents, cap)
    else:
        proxies, gather, fetch = host(agents)
        stats = solve_claims(proxies, cap, gather=gather)
        agents = fetch()
    return CohortRouter(agents, seed=seed), stats
