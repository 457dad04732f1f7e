"""Walk-in (non-reservation) routing by simulated annealing (§3 of 004_8f5fa6c845a0843d.txt).

§3.1 sends a proportion ``x[r, j]`` of subregion ``r``'s random vehicles (rate ``λ_r``) to
station ``j`` and minimises their travel time (distance / speed) plus the queue waiting time
at ``j``, weighted by the probability of entering the queue there. §3.2 solves it by
simulated annealing with the parameters of its table: ``T0 = 100``, ``T_min = 1e-4``,
``K_max = 1000`` iterations and a neighbourhood of ±0.01 on the proportions. The table's
cooling factor reads "7", which cannot be a geometric factor; we read it as **0.97 per
iteration** (``T_k = T0 · 0.97^k``), so the search stops at ``T_min`` after ~454 iterations,
before ``K_max``.

Queue model (ours; §3 names the quantities, not the formula). Station ``j`` is an M/M/c
queue for walk-ins with ``c_j = servers[j]`` piles of rate ``μ`` and arrival rate
``λ_j = Σ_r λ_r x[r, j]``:

* ``P_j`` = Erlang C(c_j, λ_j/μ), §3's probability of entering the queue;
* stationary wait ``P_j / (c_j μ − λ_j)``, plus the present backlog
  ``(queue_len[j] − free_piles[j]) / (c_j μ)`` — vehicles already waiting must clear first,
  and piles free right now absorb the first arrivals (a credit, the total is floored at 0);
* an overloaded station (``ρ ≥ 0.99``) or one without piles gets the wait at ``ρ = 0.99``
  plus ``OVERLOAD_H`` hours per unit of excess load — finite, continuous and increasing,
  so that the annealing can still compare two overloaded plans.

Objective: walk-in vehicle-minutes per hour, ``Σ_r Σ_j λ_r x[r, j] (60 t[r, j] + 60 W_j)``.
Minutes (not hours) so that a 0.01 move of a busy subregion changes it by ~0.1–1, a size
the temperature schedule above resolves in its last ~250 iterations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

OVERLOAD_H = 10.0
_RHO_CAP = 0.99


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in an M/M/c queue with offered load ``a = λ/μ``
    (Erlang B by its stable recursion, then C from B); 1 when ``a ≥ c``."""
    if c <= 0 or a >= c:
        return 1.0
    if a <= 0.0:
        return 0.0
    b = 1.0
    for n in range(1, c + 1):
        b = a * b / (n + a * b)
    return c * b / (c - a * (1.0 - b))


def station_wait_h(lam: float, c: int, mu: float, backlog: float) -> float:
    """Expected walk-in queue wait at one station (hours), the module's queue model."""
    if c <= 0:
        return OVERLOAD_H * (1.0 + lam / max(mu, 1e-9))
    cap = c * mu
    lam_eff = min(lam, _RHO_CAP * cap)
    wait = erlang_c(c, lam_eff / mu) / (cap - lam_eff)
    if lam > lam_eff:
        wait += OVERLOAD_H * (lam - lam_eff) / cap
    return max(0.0, wait + backlog / cap)


def _station_cost(lam: float, c: int, mu: float, backlog: float) -> float:
    """Vehicle-minutes per hour spent waiting at one station: ``λ_j · 60 W_j``."""
    return lam * 60.0 * station_wait_h(lam, c, mu, backlog)


def shares_objective(shares: np.ndarray, rates: np.ndarray, travel_h: np.ndarray,
                     servers: np.ndarray, mu: float, backlog: np.ndarray) -> float:
    """Walk-in vehicle-minutes per hour of the plan ``shares`` (travel + queue wait)."""
    flow = rates[:, None] * shares
    lam = flow.sum(axis=0)
    travel = float(np.sum(flow * travel_h)) * 60.0
    wait = sum(_station_cost(float(lam[j]), int(servers[j]), mu, float(backlog[j]))
               for j in range(lam.size))
    return travel + wait


def nearest_shares(travel_h: np.ndarray) -> np.ndarray:
    """Every subregion to its nearest station: the annealing's start (and FIFS's rule)."""
    shares = np.zeros_like(travel_h, dtype=np.float64)
    shares[np.arange(travel_h.shape[0]), np.argmin(travel_h, axis=1)] = 1.0
    return shares


def anneal_walkin_shares(rates_per_subregion: np.ndarray, travel_h: np.ndarray,
                         free_piles: np.ndarray, mu: float, queue_len: np.ndarray, *,
                         servers: np.ndarray | None = None, t0: float = 100.0,
                         cooling: float = 0.97, t_min: float = 1e-4, k_max: int = 1000,
                         step: float = 0.01, seed: int = 0) -> np.ndarray:
    """Shares ``x[r, j]`` (rows sum to 1) minimising walk-in travel + queue wait (§3.2).

    A move takes ``step`` of subregion r's share from a station it uses to another station
    (the ±0.01 neighbourhood), accepted by Metropolis' rule ``exp(−Δ/T)``. Starts from the
    nearest-station plan and returns the best plan seen, so it is never worse than nearest.
    ``servers`` (piles open to walk-ins per station) defaults to ``free_piles``.
    Deterministic per ``seed``."""
    rates = np.asarray(rates_per_subregion, dtype=np.float64).ravel()
    travel = np.asarray(travel_h, dtype=np.float64)
    n_r, n_j = travel.shape
    free = np.asarray(free_piles, dtype=np.float64).ravel()
    servers_arr = (free if servers is None else np.asarray(servers, dtype=np.float64)).astype(int)
    backlog = np.asarray(queue_len, dtype=np.float64).ravel() - free
    x0 = nearest_shares(travel)
    if n_j < 2 or n_r == 0 or not np.any(rates > 0):
        return x0
    best_x = _anneal(x0, rates, travel, servers_arr, float(mu), backlog,
                     _Schedule(t0, cooling, t_min, k_max, step), seed)
    best_x = np.clip(best_x, 0.0, None)
    return best_x / best_x.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class _Schedule:
    t0: float
    cooling: float
    t_min: float
    k_max: int
    step: float

    def n_iterations(self) -> int:
        """Iterations until ``T < t_min`` or ``k_max``, whichever comes first."""
        if self.t0 <= self.t_min:
            return 0
        if not 0 < self.cooling < 1:
            return self.k_max
        return min(self.k_max, math.ceil(math.log(self.t_min / self.t0) / math.log(self.cooling)))


def _anneal(x0: np.ndarray, rates: np.ndarray, travel: np.ndarray, servers: np.ndarray,
            mu: float, backlog: np.ndarray, sched: _Schedule, seed: int) -> np.ndarray:
    """The Metropolis loop on plain Python floats (numpy scalars cost ~10x per access);
    random numbers are drawn in one batch up front, so the run is deterministic per seed."""
    n_r, n_j = travel.shape
    x = x0.tolist()
    tr = travel.tolist()
    rt = rates.tolist()
    cs, bl = [int(c) for c in servers], backlog.tolist()
    lam = (rates[:, None] * x0).sum(axis=0).tolist()
    cost = [_station_cost(lam[j], cs[j], mu, bl[j]) for j in range(n_j)]
    current = float(np.sum(rates[:, None] * x0 * travel)) * 60.0 + sum(cost)
    best, best_x = current, [row[:] for row in x]
    active = [r for r in range(n_r) if rt[r] > 0]
    n_it = sched.n_iterations()
    draws = np.random.default_rng(seed).random((n_it, 4)).tolist()
    temp = float(sched.t0)
    for u_r, u_src, u_dst, u_acc in draws:
        r = active[int(u_r * len(active))]
        xr = x[r]
        used = [j for j in range(n_j) if xr[j] > 0.0]
        src = used[int(u_src * len(used))]
        dst = int(u_dst * (n_j - 1))
        dst += dst >= src
        d = min(sched.step, xr[src])
        moved = rt[r] * d
        lam_s, lam_d = lam[src] - moved, lam[dst] + moved
        new_s = _station_cost(lam_s, cs[src], mu, bl[src])
        new_d = _station_cost(lam_d, cs[dst], mu, bl[dst])
        delta = (moved * 60.0 * (tr[r][dst] - tr[r][src])
                 + new_s - cost[src] + new_d - cost[dst])
        if delta <= 0.0 or u_acc < math.exp(-delta / temp):
            xr[src] -= d
            xr[dst] += d
            lam[src], lam[dst] = lam_s, lam_d
            cost[src], cost[dst] = new_s, new_d
            current += delta
            if current < best - 1e-12:
                best, best_x = current, [row[:] for row in x]
        temp *= sched.cooling
    return np.asarray(best_x, dtype=np.float64)


def route_walkin(shares_row: np.ndarray, travel_h_row: np.ndarray, free_piles: np.ndarray,
                 in_range: np.ndarray, rng: np.random.Generator, *,
                 load: np.ndarray | None = None) -> int:
    """One walk-in's station: a draw from its subregion's SA shares (§3), but never a full
    station while one with a free pile is in range — then the nearest in-range free one.
    With none free in range, the least-loaded in range (``load``, e.g. queue per pile;
    ties and ``load=None`` go to the nearest). An empty ``in_range`` means every station."""
    travel = np.asarray(travel_h_row, dtype=np.float64)
    ok = np.asarray(in_range, dtype=bool)
    if not ok.any():
        ok = np.ones_like(ok)
    free = np.asarray(free_piles) > 0
    weights = np.where(ok, np.clip(np.asarray(shares_row, dtype=np.float64), 0.0, None), 0.0)
    total = weights.sum()
    if total > 0:
        pick = int(rng.choice(weights.size, p=weights / total))
    else:
        pick = int(np.flatnonzero(ok)[np.argmin(travel[ok])])
    if free[pick]:
        return pick
    free_in_range = np.flatnonzero(ok & free)
    if free_in_range.size:
        return int(free_in_range[np.argmin(travel[free_in_range])])
    cand = np.flatnonzero(ok)
    loads = np.zeros(cand.size) if load is None else np.asarray(load, dtype=np.float64)[cand]
    order = np.lexsort((travel[cand], loads))
    return int(cand[order[0]])
