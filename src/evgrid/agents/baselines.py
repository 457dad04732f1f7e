"""The field's reference controllers: uncontrolled, FCFS, round robin, EDF and LLF.

All but ``uncontrolled`` respect the grid-zone and city limits themselves (a sorted greedy
fill or an equal-share water fill, both vectorised); ``uncontrolled`` asks every EV's full
rate and leaves the limits to the simulator's safety projection, which counts the cuts.
Priority orders follow acnportal's ``algorithms/sorted_algorithms.py``: EDF by departure,
LLF by laxity = time left − time needed at full rate.
"""

from __future__ import annotations

import numpy as np

from evgrid.envs.interface import Observation
from evgrid.envs.simulator import run_start


def grouped_exclusive_cumsum(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Σ of the earlier elements of the same group (array order), for each element."""
    if values.size == 0:
        return values.copy()
    order = np.argsort(groups, kind="stable")
    v, g = values[order], groups[order]
    cum = np.cumsum(v) - v
    out = np.empty_like(values)
    out[order] = cum - cum[run_start(g)]
    return out


def greedy_fill(obs: Observation, want_kw: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Serve chargers in ascending ``key`` order, each up to ``want_kw``, within every limit.

    Equals the sequential greedy: a charger gets min(want, zone room, city room) after all
    chargers ahead of it. Zone room first, then the city room on what zones allowed (once the
    city is exhausted everything after gets 0, so the zone pass never over-counts).
    """
    order = np.lexsort((np.arange(key.size), key))
    w, g = want_kw[order], obs.charger_grid[order]
    zone_room = obs.zone_limit_kw[0][g] - grouped_exclusive_cumsum(w, g)
    a = np.clip(zone_room, 0.0, w)
    served = np.diff(np.minimum(np.cumsum(a), obs.city_limit_kw[0]), prepend=0.0)
    out = np.empty_like(want_kw)
    out[order] = np.maximum(served, 0.0)
    return out


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
        rate = np.minimum(obs.charger_max_kw, obs.ev_max_kw) * obs.charger_eta
        need_h = np.divide(obs.ev_remaining_kwh, rate, out=np.zeros_like(rate), where=rate > 0)
        laxity_h = obs.steps_left * obs.dt_h - need_h
        return greedy_fill(obs, obs.rate_cap_kw, laxity_h)
