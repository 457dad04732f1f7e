"""Priority fills within every limit: what LLF, FCFS, EDF and a learned station's budget share.

Vectorised: a fill is a sort and a few cumulative sums, never a Python loop over chargers.
Priority orders follow acnportal's ``algorithms/sorted_algorithms.py``.
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


def laxity_h(obs: Observation) -> np.ndarray:
    """[C] hours to departure minus hours to finish at full rate (LLF's key)."""
    rate = np.minimum(obs.charger_max_kw, obs.ev_max_kw) * obs.charger_eta
    need_h = np.divide(obs.ev_remaining_kwh, rate, out=np.zeros_like(rate), where=rate > 0)
    return obs.steps_left * obs.dt_h - need_h
