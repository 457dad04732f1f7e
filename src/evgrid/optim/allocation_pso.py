"""Binary particle swarm optimisation of the allocation (000_f74a305f822cf870.txt §3.4.2, §4.2).

Each particle holds one continuous position per valid ``x_{v,s,t}`` (Eq. 18–19). A position
maps to a probability by the sigmoid of Eq. 20 (temperature ``tau``) and to bits by Eq. 21.
Bits are not yet a solution: they are *decoded* by a feasibility repair — per (v, t) keep the
set bit of highest position (Eq. 9); per (s, t) keep the vehicle of highest position (Eq. 10);
only present, eligible (Eq. 17) and available triples exist at all — and a fast power
dispatch (:func:`dispatch_greedy`: P_min first, then each period's grid room to the least
flexible vehicles, cheapest periods first), which gives the score of Eq. 8 + the unmet
penalty. The inertia weight decays linearly from ``w_max`` to ``w_min`` (§4.2); the run
stops after ``iterations`` or when gbest has not improved for ``patience`` iterations.

Personal and global bests are the best *decoded* assignments, encoded back as positions
±``x_best`` (as Kennedy & Eberhart's binary PSO keeps bit-vector bests): a swarm is then
pulled to the decision that scored, not to a continuous point whose next sample may differ.
The final gbest is re-dispatched exactly (:func:`evgrid.optim.allocation.dispatch_lp`).
By default one particle starts from the rolling-horizon heuristic's plan (a standard hybrid
initialisation), so the swarm never returns worse than RHH and spends its iterations
improving on it; ``PSOConfig(rhh_seed=False)`` gives the pure swarm.

Why hand-written numpy: there is no maintained PSO library in this environment — pyswarms,
the usual choice, is unmaintained since 2021, is not installed, and its ``BinaryPSO`` has no
hook for a repair step, which Eq. 9–17 need (a raw bit vector is almost never feasible).
The whole swarm is one array, so every step is vectorised over particles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from evgrid.optim.allocation import (
    Allocation,
    AllocationProblem,
    dispatch_lp,
    drop_idle,
    evaluate,
    make_allocation,
)
from evgrid.optim.allocation_rhh import solve_rhh

_TOL = 1e-9


@dataclass(frozen=True)
class PSOConfig:
    """Swarm settings (Eq. 18–21, §4.2). Defaults are the classic Shi–Eberhart values."""

    swarm: int = 30
    iterations: int = 200
    w_max: float = 0.9
    w_min: float = 0.4
    c1: float = 1.5
    c2: float = 1.5
    tau: float = 1.0  # Eq. 20's temperature
    v_max: float = 4.0  # velocity clamp
    x_max: float = 6.0  # position clamp
    x_best: float = 4.0  # |position| that encodes a best's bit (sigmoid(4) ≈ 0.98)
    #: Stop when gbest has not improved for this many iterations (0: never).
    patience: int = 50
    #: Seed particle 0 (and the first gbest) with the rolling-horizon heuristic's plan.
    rhh_seed: bool = True

    def __post_init__(self) -> None:
        if self.swarm < 1 or self.iterations < 1:
            raise ValueError(f"need swarm >= 1 and iterations >= 1, got {self.swarm}, "
                             f"{self.iterations}")
        if not 0 <= self.w_min <= self.w_max or self.tau <= 0 or self.v_max <= 0:
            raise ValueError("need 0 <= w_min <= w_max, tau > 0 and v_max > 0")


def dispatch_greedy(problem: AllocationProblem, station: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Powers for a batch of assignments ``station`` [P, V, T] (−1 = none), and the
    assignments repaired for them. Returns (station, power_kw), both [P, V, T].

    1. Eq. 13 forces P_min on every assigned period: a vehicle whose P_min alone would
       overfill its battery (Eq. 15) loses its dearest periods; a period whose P_min load
       exceeds the grid (Eq. 11) loses its vehicles with the least need.
    2. The rest of each vehicle's need goes to its cheapest assigned periods (only those
       where a kWh costs less than the unmet penalty); when a period's grid room is short,
       vehicles with the least capacity left in later (dearer) periods go first.
    3. With P_min = 0, an assigned period that got no power is unassigned (it would pay
       Eq. 8's relocation cost for nothing).
    Vectorised over the batch; the loop is over periods only.
    """
    p = problem
    st = station.copy()
    n_p, v_n, _ = st.shape
    pair = p.pair_max_kw()
    vv = np.broadcast_to(np.arange(v_n)[None, :, None], st.shape)
    assigned = st >= 0
    pmax = np.where(assigned, pair[vv, np.maximum(st, 0)], 0.0)
    e_per_kw = p.eta * p.dt_h
    by_price = np.argsort(p.price_per_kwh, kind="stable")
    if p.p_min_kw > 0:
        # Eq. 15 under P_min alone: keep the cheapest periods that fit.
        base_e = np.where(assigned, p.p_min_kw * e_per_kw, 0.0)[:, :, by_price]
        keep = np.cumsum(base_e, axis=2) <= p.headroom_kwh()[None, :, None] + _TOL
        fit = np.empty_like(keep)
        fit[:, :, by_price] = keep
        assigned &= fit
        # Eq. 11 under P_min alone: keep the neediest vehicles that fit.
        by_need = np.argsort(-p.need_kwh(), kind="stable")
        base = np.where(assigned, p.p_min_kw, 0.0)[:, by_need, :]
        keep = np.cumsum(base, axis=1) <= p.grid_limit_kw[None, None, :] + _TOL
        fit = np.empty_like(keep)
        fit[:, by_need, :] = keep
        assigned &= fit
        st = np.where(assigned, st, -1)
        pmax = np.where(assigned, pmax, 0.0)
    base = np.where(assigned, p.p_min_kw, 0.0)
    power = base.copy()
    got = base.sum(axis=2) * e_per_kw
    rest = np.minimum(np.maximum(0.0, p.need_kwh()[None, :] - got),
                      np.maximum(0.0, p.headroom_kwh()[None, :] - got))
    extra = np.maximum(0.0, pmax - base)
    room = p.grid_limit_kw[None, :] - base.sum(axis=1)
    periods = by_price[p.worth_charging()[by_price]]
    cap_left = extra[:, :, periods].sum(axis=2) * e_per_kw
    rows = np.arange(n_p)[:, None]
    for t in periods:
        e_t = extra[:, :, t]
        cap_left -= e_t * e_per_kw
        want = np.minimum(e_t, rest / e_per_kw)
        r_t = np.maximum(room[:, t], 0.0)
        if (want.sum(axis=1) > r_t + _TOL).any():
            order = np.argsort(cap_left - rest, axis=1, kind="stable")
            w_sorted = want[rows, order]
            before = np.cumsum(w_sorted, axis=1) - w_sorted
            grant = np.empty_like(want)
            grant[rows, order] = np.clip(r_t[:, None] - before, 0.0, w_sorted)
        else:
            grant = want
        power[:, :, t] += grant
        rest = np.maximum(0.0, rest - grant * e_per_kw)
    if p.p_min_kw <= 0:
        st = np.where(power > _TOL, st, -1)
    return st, power


def score_batch(problem: AllocationProblem, station: np.ndarray, power: np.ndarray
                ) -> np.ndarray:
    """[P] objective (Eq. 8 + unmet penalty) of a batch; the same as :func:`evaluate`."""
    p = problem
    energy = p.alpha1 * p.dt_h * np.einsum("pvt,t->p", power, p.price_per_kwh)
    v_n = station.shape[1]
    vv = np.broadcast_to(np.arange(v_n)[None, :, None], station.shape)
    reloc = p.alpha2 * np.where(station >= 0, p.relocation_cost[vv, np.maximum(station, 0)],
                                0.0).sum(axis=(1, 2))
    got = p.eta * p.dt_h * power.sum(axis=2)
    unmet = np.maximum(0.0, (p.e_req_kwh - p.e_init_kwh)[None, :] - got).sum(axis=1)
    return energy + reloc + p.unmet_penalty_per_kwh * unmet


class _Decoder:
    """Bits over the valid triples → repaired assignments [P, V, T] (Eq. 9, 10, 17)."""

    def __init__(self, problem: AllocationProblem, n_particles: int) -> None:
        self.v_n, self.s_n, self.t_n = problem.shape
        self.vi, self.si, self.ti = np.nonzero(problem.valid())
        self.shape = (n_particles, self.v_n, self.s_n, self.t_n)

    @property
    def k(self) -> int:
        return int(self.vi.size)

    def decode(self, bits: np.ndarray, pos: np.ndarray) -> np.ndarray:
        n_p = bits.shape[0]
        key = np.full(self.shape, -np.inf)
        key[:, self.vi, self.si, self.ti] = np.where(bits, pos, -np.inf)
        # Eq. 9: per (v, t) the set bit of highest position.
        best_s = np.argmax(key, axis=2)  # [P, V, T]
        best = np.take_along_axis(key, best_s[:, :, None, :], axis=2)[:, :, 0, :]
        has = best > -np.inf
        # Eq. 10: per (s, t) the vehicle of highest position among those that chose s.
        chosen = np.full(self.shape, -np.inf)
        pp, vv, tt = np.nonzero(has)
        chosen[pp, vv, best_s[pp, vv, tt], tt] = best[pp, vv, tt]
        winner = np.argmax(chosen, axis=1)  # [P, S, T]
        ok = winner[pp, best_s[pp, vv, tt], tt] == vv
        st = np.full((n_p, self.v_n, self.t_n), -1, dtype=np.int64)
        st[pp[ok], vv[ok], tt[ok]] = best_s[pp[ok], vv[ok], tt[ok]]
        return st

    def encode(self, st: np.ndarray, a: float) -> np.ndarray:
        """Assignments [P, V, T] → positions ±a over the valid triples."""
        on = st[:, self.vi, self.ti] == self.si[None, :]
        return np.where(on, a, -a)


def solve_pso(problem: AllocationProblem, config: PSOConfig | None = None, *,
              seed: int = 0, polish: bool = True) -> Allocation:
    """Binary PSO (Eq. 18–21) with repair and greedy dispatch; deterministic for a seed.

    ``polish`` re-dispatches the final gbest with the exact LP (same assignment, optimal
    powers), keeping whichever scores better.
    """
    cfg = config or PSOConfig()
    t0 = time.perf_counter()
    p = problem
    v_n, _, t_n = p.shape
    rng = np.random.default_rng(seed)
    dec = _Decoder(p, cfg.swarm)
    if dec.k == 0:
        z = np.zeros((v_n, t_n))
        return make_allocation(p, np.full((v_n, t_n), -1), z, "pso", time.perf_counter() - t0)
    shape = (cfg.swarm, dec.k)
    pos = rng.uniform(-cfg.x_max, cfg.x_max, shape)
    vel = rng.uniform(-cfg.v_max, cfg.v_max, shape) * 0.5
    pbest_st = np.full((cfg.swarm, v_n, t_n), -1, dtype=np.int64)
    pbest_score = np.full(cfg.swarm, np.inf)
    gbest_st = pbest_st[0].copy()
    gbest_power = np.zeros((v_n, t_n))
    gbest_score = np.inf
    if cfg.rhh_seed:
        warm = solve_rhh(p)
        gbest_st, gbest_power, gbest_score = warm.station, warm.power_kw, warm.objective
        pbest_st[0], pbest_score[0] = warm.station, warm.objective
        pos[0] = dec.encode(warm.station[None], cfg.x_best)[0]
    stale = 0
    for it in range(cfg.iterations):
        prob = 1.0 / (1.0 + np.exp(-cfg.tau * pos))  # Eq. 20
        bits = rng.random(shape) < prob  # Eq. 21
        st, power = dispatch_greedy(p, dec.decode(bits, pos))
        score = score_batch(p, st, power)
        better = score < pbest_score
        pbest_score = np.where(better, score, pbest_score)
        pbest_st[better] = st[better]
        i = int(np.argmin(score))
        if score[i] < gbest_score - 1e-12:
            gbest_score, gbest_st, gbest_power = float(score[i]), st[i].copy(), power[i].copy()
            stale = 0
        else:
            stale += 1
            if cfg.patience and stale >= cfg.patience:
                break
        # Eq. 18–19 with §4.2's linearly decaying inertia.
        w = cfg.w_max - (cfg.w_max - cfg.w_min) * it / max(1, cfg.iterations - 1)
        r1, r2 = rng.random(shape), rng.random(shape)
        pb = dec.encode(pbest_st, cfg.x_best)
        gb = dec.encode(gbest_st[None], cfg.x_best)
        vel = w * vel + cfg.c1 * r1 * (pb - pos) + cfg.c2 * r2 * (gb - pos)
        np.clip(vel, -cfg.v_max, cfg.v_max, out=vel)
        pos = np.clip(pos + vel, -cfg.x_max, cfg.x_max)
    station, power = gbest_st, gbest_power
    if polish:
        exact = dispatch_lp(p, station)
        if exact is not None:
            st2 = drop_idle(p, station, exact)
            if evaluate(p, st2, exact)[0] < evaluate(p, station, power)[0]:
                station, power = st2, exact
    return make_allocation(p, station, power, "pso", time.perf_counter() - t0)
