"""The field's reference controllers: uncontrolled, FCFS, round robin, EDF and LLF.

All but ``uncontrolled`` respect the grid-zone and city limits themselves (a sorted greedy
fill or an equal-share water fill, both vectorised); ``uncontrolled`` asks every EV's full
rate and leaves the limits to the simulator's safety projection, which counts the cuts.
Priority orders follow acnportal's ``algorithms/sorted_algorithms.py``: EDF by departure,
LLF by laxity = time left − time needed at full rate.
"""

from __future__ import annotations

import numpy as np

from evgrid.envs.fill import greedy_fill, grouped_exclusive_cumsum, laxity_h
from evgrid.envs.interface import Observation

__all__ = ["greedy_fill", "grouped_exclusive_cumsum", "water_level"]


def water_level(values: np.ndarray, budget: float) -> float:
    """λ with Σ min(v, λ) = budget (∞ if everything fits)."""
    if values.sum() <= budget:
        return float("inf")
    v = np.sort(values)
    n = v.size
    below = np.cumsum(v) - v  # Σ of the smaller ones
    filled = below + v * (n - np.arange(n))  # total if the level were v[k]
    k = min(int(np.searchsorted(filled, budget)), n - 1)
    return float((budget - below[k]) / (n - k))


def equal_share_fill(obs: Observation, want_kw: np.ndarray) -> np.ndarray:
    """Max-min fair share within each grid zone, then within the city limit."""
    a = want_kw.copy()
    for g in np.unique(obs.charger_grid[want_kw > 0]):
        idx = obs.charger_grid == g
        a[idx] = np.minimum(a[idx], water_level(a[idx], float(obs.zone_limit_kw[0][g])))
    return np.minimum(a, water_level(a, float(obs.city_limit_kw[0])))


class Uncontrolled:
    """Every EV at its full rate the moment it plugs in; the projection enforces the limits."""

    name = "uncontrolled"

    def schedule(self, obs: Observation) -> np.ndarray:
        return obs.rate_cap_kw


class FirstComeFirstServed:
    """Full rate in arrival order until a zone or the city runs out."""

    name = "fcfs"

    def schedule(self, obs: Observation) -> np.ndarray:
        return greedy_fill(obs, obs.rate_cap_kw, obs.ev_arrival_step.astype(float))


class RoundRobin:
    """Equal share: the fixed point of round robin with vanishing increments (max-min fair)."""

    name = "round_robin"

    def schedule(self, obs: Observation) -> np.ndarray:
        return equal_share_fill(obs, obs.rate_cap_kw)


class EarliestDeadlineFirst:
    """Full rate by earliest departure first."""

    name = "edf"

    def schedule(self, obs: Observation) -> np.ndarray:
        return greedy_fill(obs, obs.rate_cap_kw, obs.ev_departure_step.astype(float))


class LeastLaxityFirst:
    """Full rate by least laxity first: laxity = time to departure − time to finish at max rate."""

    name = "llf"

    def schedule(self, obs: Observation) -> np.ndarray:
        return greedy_fill(obs, obs.rate_cap_kw, laxity_h(obs))
