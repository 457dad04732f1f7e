"""Sharing-form ADMM for the grid power budget (numpy and compiled kernels; no ray, no grpc).

The coupled problem (Eq. 37–39 of 000_f74a305f822cf870.txt; Boyd et al. 2011 §7.3 sharing):

    min Σ_v f_v(p_v)   s.t.  Σ_{v in grid zone g} p_v[t] ≤ C_g[t],  Σ_v p_v[t] ≤ P_city[t]

where each EV row v of each station is a participant and f_v is its local cost (see
``evgrid.agents.local_qp``). With one copy z_v per participant, the z-update is a projection
whose solution shifts every participant of zone g by the same amount λ_g + μ (zone and city
multipliers), so the scaled dual is one price vector per grid zone and the coordinator only
needs each station's aggregate profile and its participant count. It never sees an EV.

Boyd §3.3–3.4 details implemented here: over-relaxation (α ∈ [1.5, 1.8]), ρ adapted by
residual balancing (μ = 10, τ = 2) and then frozen for ``freeze`` rounds before convergence is
tested (a residual right after a ρ change is not a residual of the same problem), stopping on
primal and dual residuals AND on the coupling violation (residuals alone can stop 1–2 % off
the optimum) AND on a certified objective gap, or at an iteration / wall-clock deadline.
The certificate is weak duality: near the end each station also reports its dual function at
the prices it was sent (``evgrid.agents.local_qp``), and their sum less the prices' worth of
the limits bounds the optimum from below; the solve stops once the plans' objective is within
``gap_tol`` of the best such bound.

Partial participation: an agent whose proposal is missing keeps its last one; one that misses
``drop_after`` rounds in a row (or that its transport already knows to be unreachable when the
period opens) is *dropped* from the period. Its draw is then its fallback budget
(``evgrid.coordinator.fallback``: its last envelope, then its safe share), which is reserved on
its zone and on the city, and the others converge without it on what is left. It is asked again
the next period. Every station's envelope (the consensus it was sent at the end of a period) is
kept here, so the reservation is exactly what the station executes on its own.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from evgrid.coordinator.demand import (
    DemandCharge,
    demand_cost,
    demand_levels,
    demand_levels_city,
    demand_worth,
    net_worth_lp,
)
from evgrid.coordinator.demand import warm_up as warm_up_demand
from evgrid.coordinator.fallback import (
    Envelope,
    fallback_budget_kw,
    rated_sums_kw,
    safe_share_kw,
)
from evgrid.coordinator.kernels import (
    city_multipliers,
    consensus_and_norms,
    coupling_violation,
    limits_worth,
    relax_and_sum,
    threads_for,
    warm_up,
    zone_city_prices,
)
from evgrid.coordinator.messages import (
    ConsensusTargets,
    PowerProposals,
    Registration,
    is_forecast,
)
from evgrid.envs.projection import project

log = logging.getLogger(__name__)


def _executable(z: np.ndarray, caps: np.ndarray, onehot: np.ndarray, zone_limit: np.ndarray,
                city_limit: np.ndarray) -> np.ndarray:
    """[M, H] shares made executable at every step: clipped to [0, each station's rating],
    then scaled per grid zone and then city so the sums meet the limits ([G, H], [H]), as the
    simulator's safety projection does."""
    x = np.clip(z, 0.0, caps[:, None])
    zone_load = onehot @ x  # [G, H]
    over = zone_load > zone_limit
    scale = np.divide(zone_limit, zone_load, out=np.ones_like(zone_load), where=over)
    x = x * (onehot.T @ scale)
    total = x.sum(axis=0)
    city_over = total > city_limit
    return x * np.divide(city_limit, total, out=np.ones_like(total), where=city_over)


def fill_now(share: np.ndarray, want: np.ndarray, zone_of: np.ndarray, zone_limit: np.ndarray,
             city_limit: float) -> np.ndarray:
    """[M] each station's power for the first step: its agreed ``share``, made executable and
    work-conserving within ``zone_limit`` [G] and ``city_limit``.

    Clipped to [0, want] the shares are scaled per zone, then city, like the simulator's
    projection. Room the shares leave unused (a station planning to charge later) is offered
    to stations that could use more right now (``want``: what their EVs would take), in
    proportion to what they could use, within the same limits: capacity an EV is waiting for
    is never idled, and an EV is never seen. With a demand charge the zone limit passed here
    is the agreed peak level, so the fill never sets a new peak.
    """
    inf = np.full(share.size, np.inf)
    ok, _ = project(np.clip(share, 0.0, want), upper_kw=inf, charger_grid=zone_of,
                    zone_limit_kw=zone_limit, city_limit_kw=city_limit)
    ask = np.maximum(want - ok, 0.0)
    onehot = np.zeros((zone_limit.size, share.size))
    onehot[zone_of, np.arange(share.size)] = 1.0
    extra, _ = project(ask, upper_kw=ask, charger_grid=zone_of,
                       zone_limit_kw=np.maximum(zone_limit - onehot @ ok, 0.0),
                       city_limit_kw=max(city_limit - float(ok.sum()), 0.0))
    return ok + extra


def _c(a: np.ndarray) -> np.ndarray:
    """A C-contiguous float array (the kernels' layout); no copy when it already is one."""
    return np.ascontiguousarray(a, dtype=float)


@dataclass(frozen=True)
class AdmmConfig:
    """ADMM settings (Boyd et al. 2011 §3.3–3.4)."""

    rho: float = 0.02  # initial penalty [currency/kW²] (scaled by residual balancing)
    alpha: float = 1.8  # over-relaxation, 1.5–1.8 works best (1.8 measured best here)
    eps_abs: float = 5e-3  # absolute residual tolerance per entry [kW]
    eps_rel: float = 1e-3  # relative residual tolerance (alone: gaps up to 0.12 %, hence gap_tol)
    violation_tol: float = 1e-3  # coupling violation, share of the limit
    gap_tol: float = 1e-3  # certified gap: (objective − best dual bound) / |bound|
    certify_within: float = 1.5  # ask stations for their duals once residuals are this × tol
    max_iter: int = 200
    deadline_s: float = 5.0  # wall clock per solve
    adapt_mu: float = 10.0  # residual balancing: adapt when one residual is μ× the other
    adapt_tau: float = 2.0  # ... by this factor
    adapt_until: int = 60  # stop adapting ρ after this round (guarantees convergence)
    freeze: int = 3  # rounds after a ρ change (or a drop) before convergence may be declared
    drop_after: int = 3  # rounds a station may miss in a row before it is dropped from the period


@dataclass
class AdmmStats:
    """What one ADMM solve did (reported in KPIs and benchmarks)."""

    iterations: int = 0
    primal_residual: float = math.inf
    dual_residual: float = math.inf
    violation_rel: float = math.inf
    objective: float = math.nan
    rho: float = math.nan
    converged: bool = False
    stopped_by: str = ""
    wall_s: float = 0.0
    missing: int = 0  # proposals that missed their round (kept from the round before)
    gap_bound: float = math.inf  # certified relative gap: no plan is better by more (inf: none)
    lower_bound: float = -math.inf  # best dual bound: the optimum is at least this [currency]
    dropped: tuple[str, ...] = ()  # stations dropped from this period (fallback reserved)


@dataclass
class CoordinatorState:
    """What a coordinator carries from one period to the next (its checkpoint): ρ, the scaled
    duals (warm start) and the step they start at, and each station's last envelope."""

    rho: float
    u: np.ndarray  # [G, H] scaled duals
    start: int  # horizon start of the period u belongs to (-1: none yet)
    envelopes: dict[str, Envelope]


@dataclass
class _Period:
    start: int
    zone_limit: np.ndarray  # [G, H]
    city_limit: np.ndarray  # [H]
    agents: tuple[str, ...]
    row: dict[str, int]
    zone_of: np.ndarray  # [M] grid-zone index per agent
    onehot: np.ndarray  # [G, M]
    xh: np.ndarray  # [M, H] last relaxed proposal per agent (kept when one is missing)
    x: np.ndarray  # [M, H] last plan per agent
    n: np.ndarray  # [M, H] participants (EVs plugged in at each step)
    borrowed: bool  # x and n are a message's arrays (all answered), not the coordinator's
    caps: np.ndarray  # [M] registered power of each station [kW]
    zone_limit0: np.ndarray  # [G, H] the limits as given (before any reservation)
    city_limit0: np.ndarray  # [H]
    active: np.ndarray  # [M] bool: still taking part (not dropped)
    missed: np.ndarray  # [M] rounds missed in a row
    reserve: np.ndarray  # [M, H] fallback draw reserved for a dropped station [kW]
    obj: np.ndarray  # [M]
    want: np.ndarray  # [M] most each station can use at the first step [kW]
    everyone: np.ndarray  # [M] 0..M−1, the rows when every station answers in order
    z_prev: np.ndarray | None = None
    y_sent: np.ndarray | None = None  # [G, H] prices of the last targets, max(ρ·u, 0)
    best_bound: float = -math.inf  # best lower bound on the optimum so far (weak duality)
    certify: bool = False  # the last targets asked for duals (from near convergence on)
    no_duals: bool = False  # asked, everyone answered, and not every answer had a dual
    round: int = 0
    last_rho_change: int = 0
    t0: float = 0.0
    dropped: list[str] = field(default_factory=list)
    demand: DemandCharge | None = None  # the tariff's demand charge over this horizon
    level: np.ndarray | None = None  # [G, K] the z-update's peak level per zone and window
    last_lp: int = -(10**9)  # round of the last exact bound (net_worth_lp)



#: Rounds between two exact bounds of a period with a demand charge (``_bound``).
LP_EVERY = 10


class PowerCoordinator:
    """The coordinator's side of the power-sharing ADMM, driven one round at a time.

    ``begin(...)`` opens a control period and returns round-0 targets; each
    ``update(proposals)`` consumes one round of proposals and returns the next targets, with
    ``done`` set once the solve has converged or hit a deadline; ``settle()`` then gives each
    station its power for the first step and its envelope. Warm start: the scaled duals of the
    previous period, shifted to the new start, and its ρ. Proposals are kept only within a
    period; a station silent for ``drop_after`` rounds is dropped (module docstring).
    """

    def __init__(self, grid_ids: list[str], config: AdmmConfig | None = None) -> None:
        self.grid_ids = list(grid_ids)
        self.config = config or AdmmConfig()
        self.registry: dict[str, Registration] = {}
        self.rho = self.config.rho
        self.u = np.zeros((len(grid_ids), 0))  # [G, H] scaled duals (warm start)
        self.stats = AdmmStats()
        self.envelopes: dict[str, Envelope] = {}  # last envelope sent to each station
        self._previous_envelopes: dict[str, Envelope] = {}  # as they were when the period opened
        self._p: _Period | None = None
        self._resume_start = -1  # start of the duals in u when restored between periods
        warm_up()
        warm_up_demand()

    def state(self) -> CoordinatorState:
        """The state a restarted coordinator resumes from (between periods)."""
        start = self._p.start if self._p is not None else self._resume_start
        return CoordinatorState(self.rho, self.u.copy(), start, dict(self.envelopes))

    def restore(self, state: CoordinatorState) -> None:
        """Resume from ``state``: the next ``begin`` warm-starts as if nothing had happened."""
        self.rho, self.u, self.envelopes = state.rho, state.u.copy(), dict(state.envelopes)
        self._p = None
        self._resume_start = state.start

    def register(self, reg: Registration) -> None:
        if reg.kind == "station" and reg.grid_zone not in self.grid_ids:
            raise ValueError(f"grid zone {reg.grid_zone!r} is not one of {self.grid_ids}")
        self.registry[reg.agent_id] = reg

    def unregister(self, agent_id: str) -> None:
        self.registry.pop(agent_id, None)

    @property
    def round(self) -> int:
        return -1 if self._p is None else self._p.round

    @property
    def horizon_start(self) -> int:
        return -1 if self._p is None else self._p.start

    @property
    def horizon(self) -> int:
        return 0 if self._p is None else int(self._p.city_limit.size)

    def begin(
        self, horizon_start: int, zone_limit_kw: np.ndarray, city_limit_kw: np.ndarray,
        *, absent: Iterable[str] = (), demand: DemandCharge | None = None,
    ) -> ConsensusTargets:
        """Open a period: limits are [H, G] and [H] from ``horizon_start`` on. Stations in
        ``absent`` (known unreachable) are dropped at once; the targets skip them. ``demand``
        is the tariff's demand charge on each zone's peak (``evgrid.coordinator.demand``)."""
        agents = tuple(a for a, r in self.registry.items() if r.kind == "station")
        h, m, g = city_limit_kw.size, len(agents), len(self.grid_ids)
        self._previous_envelopes = dict(self.envelopes)  # what each station held coming in
        prev = self._p.start if self._p is not None else self._resume_start
        shift = horizon_start - (prev if prev >= 0 else horizon_start)
        u = np.zeros((g, h))
        if self.u.size and shift >= 0:
            old = self.u[:, shift:]
            k = min(h, old.shape[1])
            u[:, :k] = old[:, :k]
        self.u = u
        zone_of = np.array([self.grid_ids.index(self.registry[a].grid_zone) for a in agents],
                           dtype=np.int64)
        onehot = np.zeros((g, m))
        onehot[zone_of, np.arange(m)] = 1.0
        self._p = _Period(
            start=horizon_start,
            zone_limit=np.asarray(zone_limit_kw, float).T.copy(),
            city_limit=np.asarray(city_limit_kw, float).copy(),
            agents=agents, row={a: i for i, a in enumerate(agents)}, zone_of=zone_of,
            onehot=onehot, xh=np.zeros((m, h)), x=np.zeros((m, h)), n=np.zeros((m, h)),
            borrowed=False, everyone=np.arange(m, dtype=np.int64),
            caps=np.array([self.registry[a].max_power_kw for a in agents], dtype=float),
            zone_limit0=np.asarray(zone_limit_kw, float).T.copy(),
            city_limit0=np.asarray(city_limit_kw, float).copy(),
            active=np.ones(m, dtype=bool), missed=np.zeros(m, dtype=np.int64),
            reserve=np.zeros((m, h)),
            obj=np.zeros(m), want=np.zeros(m), t0=time.perf_counter(), demand=demand,
        )
        self.stats = AdmmStats(rho=self.rho)
        gone = [a for a in absent if a in self._p.row]
        if gone:
            self._drop(np.array([self._p.row[a] for a in gone], dtype=np.int64))
        return self._targets(np.zeros((m, h)), np.zeros((g, h)), False)

    def _targets(self, z: np.ndarray, shift: np.ndarray, done: bool) -> ConsensusTargets:
        p = self._p
        assert p is not None
        p.certify = p.certify and not done
        if p.certify:
            p.y_sent = np.maximum(self.rho * self.u, 0.0)
        ids, zone, zz = p.agents, p.zone_of, z
        if p.dropped:  # the targets go to the stations still taking part
            act = np.flatnonzero(p.active)
            ids, zone, zz = tuple(p.agents[i] for i in act), p.zone_of[act], z[act]
        return ConsensusTargets(round=p.round, horizon_start=p.start, agent_ids=ids,
                                agent_zone=zone, zone_u=self.u, rho=self.rho, done=done,
                                zone_shift=shift, z_kw=zz, alpha=self.config.alpha,
                                certify=p.certify)

    def fallback_kw(self, agent_id: str, horizon_start: int, safe_kw: np.ndarray) -> np.ndarray:
        """What ``agent_id`` draws on its own from ``horizon_start`` on (its last envelope,
        then ``safe_kw``, its safe share): see ``evgrid.coordinator.fallback``."""
        return fallback_budget_kw(self.envelopes.get(agent_id, Envelope.none()), safe_kw,
                                  horizon_start)

    def _drop(self, rows: np.ndarray) -> None:
        """Take stations out of this period: reserve their fallback draw on their zone and the
        city, and solve for the others on what is left (module docstring)."""
        p = self._p
        assert p is not None
        rows = rows[p.active[rows]]
        if rows.size == 0:
            return
        if p.borrowed:
            p.x, p.n, p.borrowed = p.x.copy(), p.n.copy(), False
        # Real stations' ratings only: a forecast station (expected arrivals) draws nothing, and
        # an edge node computes its own safe share from the city file's stations alone.
        zone_cap, city_cap = rated_sums_kw(
            (self.grid_ids[g], c) for a, g, c in zip(p.agents, p.zone_of.tolist(),
                                                     p.caps.tolist(), strict=True)
            if not is_forecast(a))
        for i in rows.tolist():
            g = p.zone_of[i]
            safe = safe_share_kw(p.caps[i], zone_cap[self.grid_ids[g]], city_cap,
                                 p.zone_limit0[g], p.city_limit0)
            r = self.fallback_kw(p.agents[i], p.start, safe)
            p.reserve[i] = r
            if (r > p.zone_limit[g] * (1 + 1e-9) + 1e-9).any() or (
                    r > p.city_limit * (1 + 1e-9) + 1e-9).any():
                # Only when a limit fell below what was agreed earlier: nothing can stop a
                # station that does not answer from drawing what it agreed; said, not hidden.
                log.warning("%s: its fallback reservation exceeds what its zone or the city "
                            "has left at some step (a limit fell since it was agreed)",
                            p.agents[i])
            p.zone_limit[g] = np.maximum(p.zone_limit[g] - r, 0.0)
            p.city_limit = np.maximum(p.city_limit - r, 0.0)
            p.dropped.append(p.agents[i])
        p.active[rows] = False
        p.x[rows] = p.xh[rows] = p.n[rows] = 0.0
        p.obj[rows] = p.want[rows] = 0.0
        if p.z_prev is not None:
            p.z_prev[rows] = 0.0
        # A new problem: the old bound is not a bound of it, and ρ must settle again.
        p.best_bound, p.no_duals, p.last_rho_change = -math.inf, False, p.round

    def update(self, proposals: PowerProposals) -> ConsensusTargets:
        """Consume one round; return the next round's targets (``done`` when finished)."""
        p, cfg = self._p, self.config
        if p is None:
            raise RuntimeError("begin() a period first")
        if proposals.agent_ids == p.agents:  # everyone answered, in order: keep their arrays
            rows = p.everyone
            missing = 0
            p.x, p.n, p.borrowed = _c(proposals.plan_kw), _c(proposals.participants), True
            p.missed[:] = 0
        else:
            unknown = [a for a in proposals.agent_ids if a not in p.row]
            if unknown:
                raise ValueError(f"proposals from stations outside this period: {unknown}")
            rows = np.array([p.row[a] for a in proposals.agent_ids], dtype=np.int64)
            keep = p.active[rows]
            if not keep.all():  # a dropped station answered after all: it is out this period
                proposals = proposals.take(np.flatnonzero(keep))
                rows = rows[keep]
            missing = int(p.active.sum()) - int(np.unique(rows).size)
            p.missed[p.active] += 1
            p.missed[rows] = 0
            if p.borrowed:  # rows are about to be overwritten: own them first
                p.x, p.n, p.borrowed = p.x.copy(), p.n.copy(), False
            p.x[rows], p.n[rows] = proposals.plan_kw, proposals.participants
        p.obj[rows], p.want[rows] = proposals.objective, proposals.want
        # x̂ = αx + (1−α)z (Boyd §3.4.3), formed here from the z each station was sent; in
        # round 0 z is the stations' warm start, which they report.
        z_src, z_idx = ((proposals.start, np.arange(len(rows), dtype=np.int64))
                        if p.z_prev is None else (p.z_prev, rows))
        answer = rows  # answer[m]: which answer row m takes (−1: none this round)
        if rows is not p.everyone:
            answer = np.full(len(p.agents), -1, dtype=np.int64)
            answer[rows] = np.arange(len(rows))
        with threads_for(p.xh.size):
            xh_g, x_g, n_g = relax_and_sum(answer, _c(proposals.plan_kw), _c(z_src), z_idx,
                                           cfg.alpha, p.xh, p.x, p.n, p.zone_of,
                                           len(self.grid_ids))
        xh, x, n = p.xh, p.x, p.n
        obj = float(p.obj.sum())
        if p.demand is not None:  # the plans' zone sums pay the charge over the peak so far
            obj += demand_cost(x_g, p.demand.window, p.demand.rate_per_kw, p.demand.peak_kw)
        if p.certify and missing == 0:  # a bound needs every station's dual of one round
            bound = self._bound(proposals.dual_objective, rows, n_g, obj)
            if math.isnan(bound):  # a station that cannot (κ = 0, an older edge node) or lied
                p.no_duals = True
            else:
                p.best_bound = max(p.best_bound, bound)
        gap = ((obj - p.best_bound) / max(abs(p.best_bound), 1e-9)
               if math.isfinite(p.best_bound) else math.inf)
        pi = self._prices(xh_g + n_g * self.u, n_g)
        shift = self.u - pi  # [G, H]: z_v = x̂_v + shift for every participant of zone g
        # Residuals per participant (Boyd §3.3): a station's aggregate over n EVs is divided by
        # √n, i.e. each of its EVs is taken to carry an equal share, a lower bound on the EV-level
        # norm that is exact for the zone-price part. Aggregates alone would make a 200-EV
        # station's tolerance √200 times stricter than ten 20-EV stations'.
        z = np.empty_like(xh)
        with threads_for(xh.size):
            r2, s2, x2, z2, d2 = consensus_and_norms(
                xh, x, n, p.zone_of, shift, pi, p.z_prev if p.z_prev is not None else xh, z)
        r, sres = math.sqrt(r2), self.rho * math.sqrt(s2)
        p.z_prev = z
        size = math.sqrt(max(float(n_g.sum()), 1.0))
        eps_pri = size * cfg.eps_abs + cfg.eps_rel * math.sqrt(max(x2, z2))
        eps_dual = size * cfg.eps_abs + cfg.eps_rel * self.rho * math.sqrt(d2)
        viol = coupling_violation(x_g, p.zone_limit, p.city_limit)
        self.u = pi
        p.round += 1
        k = p.round
        # Residual balancing (Boyd §3.4.1), only early on; u is rescaled with ρ. Not on a round
        # with missing proposals: a stale plan inflates the primal residual without telling
        # anything about ρ (a station answering every other round once drove ρ 32× up, and
        # ρ, carried from period to period, then cost every later period 200 rounds).
        if (k <= cfg.adapt_until and k - p.last_rho_change >= cfg.freeze and missing == 0):
            scale = 1.0
            if r > cfg.adapt_mu * sres:
                scale = cfg.adapt_tau
            elif sres > cfg.adapt_mu * r:
                scale = 1.0 / cfg.adapt_tau
            if scale != 1.0:
                self.rho *= scale
                self.u = self.u / scale
                p.last_rho_change = k
        wall = time.perf_counter() - p.t0
        # Residuals can pass while the objective is still 0.1–0.2 % off (measured on 10-station
        # instances), so the gap must be certified too, unless a station cannot report its dual.
        # Duals cost the stations about half a round: they are asked for only near the end.
        certified = gap <= cfg.gap_tol or p.no_duals
        near = cfg.certify_within
        # Asked from near convergence on, until the bound has a margin (it only gets better).
        p.certify = (p.certify or (r <= near * eps_pri and sres <= near * eps_dual)) and not (
            gap <= 0.5 * cfg.gap_tol or p.no_duals)
        converged = (r <= eps_pri and sres <= eps_dual and viol <= cfg.violation_tol
                     and k - p.last_rho_change >= cfg.freeze and certified)
        stop = ("converged" if converged else "max_iter" if k >= cfg.max_iter
                else "deadline" if wall >= cfg.deadline_s else "")
        if not stop:
            lagging = np.flatnonzero(p.active & (p.missed >= cfg.drop_after))
            if lagging.size:
                self._drop(lagging)
        self.stats = AdmmStats(iterations=k, primal_residual=r, dual_residual=sres,
                               violation_rel=viol, objective=obj, rho=self.rho,
                               converged=converged, stopped_by=stop, wall_s=wall,
                               missing=self.stats.missing + missing, gap_bound=gap,
                               lower_bound=p.best_bound, dropped=tuple(p.dropped))
        return self._targets(z, shift, bool(stop))

    def _prices(self, s: np.ndarray, n_g: np.ndarray) -> np.ndarray:
        """The z-update's multipliers π [G, H] for zone sums ``s`` of x̂ + u: the limits'
        projection, and with a demand charge each zone also capped at its level L
        (``evgrid.coordinator.demand``): each zone's alone, exact unless the city limit then
        binds, else the levels minimising the whole z-update."""
        p = self._p
        assert p is not None
        if p.demand is None:
            return zone_city_prices(s, n_g, p.zone_limit, p.city_limit)
        d = p.demand
        weight = d.rate_per_kw / self.rho  # the charge in the scaled z-update's units
        level = demand_levels(s, n_g, p.zone_limit, d.window, weight, d.peak_kw)
        caps = np.minimum(p.zone_limit, level[:, d.window])
        mu = city_multipliers(s, n_g, caps, p.city_limit)
        if mu.any():
            level = demand_levels_city(s, n_g, p.zone_limit, p.city_limit, d.window, weight,
                                       d.peak_kw, mu)
            caps = np.minimum(p.zone_limit, level[:, d.window])
        pi = zone_city_prices(s, n_g, caps, p.city_limit)
        p.level = level
        return pi

    def _net_worth(self, n_g: np.ndarray, *, exact: bool) -> float:
        """An upper bound on what the limits are worth at the prices sent, net of the demand
        charge: max Σ y·Z − charge(Z) over the zone and city limits. With one zone it is a
        problem per window (``demand_worth``, the city limit a cap like the zone's); zones
        that share the city are solved exactly as one LP (``net_worth_lp``)."""
        p = self._p
        assert p is not None and p.y_sent is not None and p.demand is not None
        d = p.demand
        # Every Z ≥ 0, so the city limit caps each zone alone too (exact with one zone).
        caps = np.minimum(p.zone_limit, p.city_limit[None, :])
        best = demand_worth(p.y_sent, n_g, caps, d.window, d.rate_per_kw, d.peak_kw)
        if exact and int((n_g > 0).any(axis=1).sum()) > 1:
            # Zones that share the city limit: the separable bound lets each take the whole
            # city; the LP is exact (asked only on the rounds that certify).
            best = min(best, net_worth_lp(p.y_sent, n_g, p.zone_limit, p.city_limit, d.window,
                                          d.rate_per_kw, d.peak_kw))
        return best

    def _bound(self, dual: np.ndarray | None, rows: np.ndarray, n_g: np.ndarray,
               objective: float) -> float:
        """The Lagrangian dual at the prices last sent: a lower bound on the optimum (−inf when
        a limit is unbounded), or NaN when some station gave no usable dual.

        A station's own plan is feasible for its own problem, so its dual can be no more than
        its objective plus the plan's worth at those prices; an answer above that is refused
        as no dual, so one station cannot certify a plan that is not good enough.
        """
        p = self._p
        assert p is not None and p.y_sent is not None
        if dual is None:
            return math.nan
        worth = (p.x[rows] @ p.y_sent.T)[np.arange(rows.size), p.zone_of[rows]]
        top = p.obj[rows] + worth
        if not (dual <= top + 1e-9 * (np.abs(top) + 1.0)).all():
            return math.nan
        worth_limits = limits_worth(p.y_sent, n_g, p.zone_limit, p.city_limit)
        if p.demand is not None:
            # The exact worth is an LP: asked only when the cheap bound would not certify the
            # plans' ``objective``, and at most every LP_EVERY rounds (it costs ~5 ms).
            worth_limits = min(worth_limits, self._net_worth(n_g, exact=False))
            cheap = float(dual.sum()) - worth_limits
            if (cheap < objective - self.config.gap_tol * abs(objective)
                    and p.round - p.last_lp >= LP_EVERY):
                p.last_lp = p.round
                worth_limits = min(worth_limits, self._net_worth(n_g, exact=True))
        return float(dual.sum()) - worth_limits if math.isfinite(worth_limits) else -math.inf

    def consensus(self) -> dict[str, np.ndarray]:
        """Each station's consensus share Z_i [H] after the last round: the zone and city sums
        of these meet every limit exactly (they are the z-update's projection). A dropped
        station's share is its reserved fallback draw."""
        p = self._p
        if p is None:
            return {}
        z = p.z_prev if p.z_prev is not None else np.zeros_like(p.reserve)
        return {a: (z[i] if p.active[i] else p.reserve[i]) for i, a in enumerate(p.agents)}

    def settle(self) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """End the period: each station's power for the first step (``executable_now``) and its
        envelope over the horizon, which is also what it falls back on until the next agreement
        (kept here to reserve it if it goes silent).

        The envelope is the consensus made executable at every step, not the raw share z: z
        may be negative while a limit binds, and Σ max(z, 0) over a zone is then above the
        limit (an unconverged period once gave one station 95.5 kW of a 50 kW feeder). Clipped
        to [0, its rating] and scaled per zone and city, the envelopes of a period together
        meet every limit at every step, whoever falls back on them."""
        p = self._p
        if p is None:
            return {}, {}
        agreed = self.executable_now()
        z = p.z_prev if p.z_prev is not None else np.zeros_like(p.reserve)
        active = p.active[:, None]
        env = np.where(active, _executable(np.where(active, z, 0.0), p.caps, p.onehot,
                                           p.zone_limit, p.city_limit), p.reserve)
        if env.shape[1]:
            env[:, 0] = [agreed.get(a, 0.0) for a in p.agents]
        envelopes = {}
        for i, a in enumerate(p.agents):
            envelopes[a] = env[i].copy()
            self.envelopes[a] = Envelope(p.start, envelopes[a])
        return agreed, envelopes

    def unconfirmed(self, agent_ids: Iterable[str]) -> None:
        """Stations that may not have received the envelope ``settle`` gave them (their done
        target went unanswered): until they confirm one, what they may draw is the larger of
        their previous envelope and the new one, step by step, and that is what is reserved
        for them if they go silent."""
        p = self._p
        if p is None:
            return
        for a in agent_ids:
            new = self.envelopes.get(a)
            old = self._previous_envelopes.get(a)
            if new is None or old is None:
                continue
            mixed = fallback_budget_kw(old, new.kw, new.start)  # old where it covers, else new
            self.envelopes[a] = Envelope(new.start, np.maximum(mixed, new.kw))

    def executable_now(self) -> dict[str, float]:
        """Each station's power for the first step: its consensus share z (which meets every
        limit but may be negative) made executable by :func:`fill_now`; a dropped station
        draws its reservation."""
        p = self._p
        if p is None or p.city_limit.size == 0:
            return {}
        # A dropped station draws its reservation, which the limits here already exclude.
        zone_now, city_now = p.zone_limit[:, 0], float(p.city_limit[0])
        if p.level is not None and p.demand is not None:  # no new peak beyond the agreed level
            zone_now = np.minimum(zone_now, p.level[:, p.demand.window[0]])
        z0 = p.z_prev[:, 0] if p.z_prev is not None else np.zeros(len(p.agents))
        out = np.where(p.active, fill_now(z0, np.where(p.active, p.want, 0.0), p.zone_of,
                                          zone_now, city_now), p.reserve[:, 0])
        return dict(zip(p.agents, out.tolist(), strict=True))

    def plans(self) -> dict[str, np.ndarray]:
        """The last plan X_i [H] each station proposed this period."""
        p = self._p
        return {} if p is None else {a: p.x[i] for i, a in enumerate(p.agents)}
