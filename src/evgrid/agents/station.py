"""Station agents: each facility states the power profile it wants and executes what it agreed.

A station knows only its own chargers and the EVs on them (energy owed, deadlines, rates)
plus the price and carbon forecast. Over a receding horizon it solves, per EV,

    min  Σ_t Δt·(price + carbon price·carbon − penalty·η·(1−δ)^t)·p_t + κΔt·p_t² + (ρ/2)||p − w||²
    s.t. 0 ≤ p_t ≤ min(charger rating, EV limit) while plugged in, 0 after departure,
         Σ_t η·p_t·Δt ≤ energy owed                               (Eq. 12–16 of 000)

(the unmet-energy penalty is linear, so it folds into the price; δ, the urgency, discounts
energy promised for later, which a receding horizon cannot guarantee), and reports the sum of its
EVs' profiles to the coordinator. After agreement it turns the first step of its plan into
per-charger set-points with least-laxity-first inside the agreed power.

``StationPack`` hosts any number of stations and solves all their EVs in one vectorised call;
a pack of one is the edge deployment, a pack of all is the in-process run, and packs of
``stations_per_actor`` are the Ray actors. Same code, same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from evgrid.agents.local_qp import admm_round, dual_round, warm_up
from evgrid.coordinator.driver import Executed, TransportStats, WarmStarts, WarmTable
from evgrid.coordinator.kernels import threads_for
from evgrid.coordinator.messages import (
    ConsensusTargets,
    PowerProposals,
    Registration,
    StationContext,
    StationState,
)
from evgrid.envs.interface import Observation
from evgrid.envs.station_actions import Layout, StationRows
from evgrid.envs.world import World

#: (station state, budget kW) -> (charger indices, kW per charger), never above the budget:
#: how a station turns power into set-points (``evgrid.agents.dispatch``).
Dispatch = Callable[[StationState, float], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class StationConfig:
    """Local-problem weights shared by a station's EVs."""

    unmet_penalty_per_kwh: float = 2.0  # cost of a kWh still owed at departure
    carbon_price_per_kg: float = 0.05
    wear_per_kw2h: float = 0.002  # κ: battery-wear cost of charging at p kW for 1 h is κ·p²
    urgency_per_h: float = 0.05  # a kWh delivered h hours later is worth (1 − urgency)^h as much
    #: A learned station policy (an exported bundle folder, ``evgrid.agents.dispatch``) that
    #: executes the agreed power in place of the plan; None: follow the plan. A path, not the
    #: loaded policy, so the config travels to Ray actors and edge nodes as it is.
    policy_dir: str | None = None


def station_states(obs: Observation, station_ids: list[str], horizon: int,
                   contexts: Sequence[StationContext] | None = None) -> dict[str, StationState]:
    """Slice the city observation into each station's local view over ``horizon`` steps (with
    its ``contexts``, per station in order, for a learned policy: ``evgrid.agents.dispatch``)."""
    t = obs.t
    h = min(horizon, obs.price_per_kwh.size)
    cap = obs.rate_cap_kw  # already 0 for free / offline chargers
    rate = np.where(obs.connected, np.minimum(obs.charger_max_kw, obs.ev_max_kw), 0.0)
    steps = np.arange(h)[None, :]
    out = {}
    for f, sid in enumerate(station_ids):
        idx = np.flatnonzero(obs.connected & (obs.charger_facility == f) & (cap > 0))
        left = (obs.ev_departure_step[idx] - t)[:, None]
        out[sid] = StationState(
            station_id=sid,
            horizon_start=t,
            dt_h=obs.dt_h,
            charger=idx,
            arrival_step=obs.ev_arrival_step[idx],
            departure_step=obs.ev_departure_step[idx],
            upper_kw=np.where(steps < left, rate[idx][:, None], 0.0),
            eta=obs.charger_eta[idx],
            owed_kwh=obs.ev_remaining_kwh[idx],
            price_per_kwh=obs.price_per_kwh[:h],
            carbon_kg_per_kwh=obs.carbon_kg_per_kwh[:h],
            context=None if contexts is None else contexts[f],
        )
    return out


def station_contexts(obs: Observation, world: World) -> list[StationContext]:
    """Every facility's context at ``obs`` (what the coordinator sends with its state)."""
    rows = StationRows.of_obs(obs, world, Layout.of(world))
    return [StationContext(
        chargers=int(rows.chargers[i]), rated_kw=float(rows.rated_kw[i]),
        price_scale=rows.price_scale, demand_share=rows.demand_share,
        zone_peak_kw=float(rows.zone_peak_kw[i]), zone_limit_kw=float(rows.zone_limit_kw[i]),
        city_share=rows.city_share, day_left=rows.day_left,
    ) for i in range(rows.n)]


def llf_within(budget_kw: float, want_kw: np.ndarray, laxity_h: np.ndarray) -> np.ndarray:
    """Least laxity first inside one power budget (a station's agreed power)."""
    order = np.lexsort((np.arange(want_kw.size), laxity_h))
    served = np.diff(np.minimum(np.cumsum(want_kw[order]), max(budget_kw, 0.0)), prepend=0.0)
    out = np.empty_like(want_kw)
    out[order] = np.maximum(served, 0.0)
    return out


class StationPack:
    """Many station agents solved together (see module docstring)."""

    def __init__(
        self,
        station_ids: list[str],
        grid_zones: list[str],
        max_power_kw: list[float],
        config: StationConfig | None = None,
        *,
        chargers: list[int] | None = None,
        dispatch: Dispatch | None = None,
    ) -> None:
        self.ids = list(station_ids)
        self.config = config or StationConfig()
        if dispatch is None and self.config.policy_dir is not None:
            from evgrid.agents.dispatch import make_dispatch  # it builds on this module

            dispatch = make_dispatch(self.config.policy_dir, self.ids)
        #: A learned policy executes the agreed power its way (``evgrid.agents.dispatch``);
        #: without one the stations follow their plans (:func:`setpoints_following`).
        self.dispatch = dispatch
        self.chargers = list(chargers) if chargers is not None else [0] * len(self.ids)
        self.id_tuple = tuple(self.ids)
        self.index = {a: i for i, a in enumerate(self.ids)}
        self.grid_zones = list(grid_zones)
        self.max_power_kw = list(max_power_kw)
        # (station, charger, arrival, departure) -> (step planned at, plan): charger numbers
        # need not be unique across stations (an edge node numbers its own from 0).
        self._warm: WarmStarts = {}
        self.states: dict[str, StationState] = {}
        self._rows = 0
        self._stats = TransportStats()  # in this process: nothing is ever refused or late
        warm_up()

    @property
    def stats(self) -> TransportStats:
        return self._stats

    def unreachable(self) -> set[str]:
        return set()

    def unconfirmed(self) -> set[str]:
        return set()  # in this process every envelope arrives

    def warm_starts(self) -> WarmTable:
        """Each EV's last plan (its warm start next period), for a checkpoint."""
        return WarmTable.from_dict(self._warm)

    def load_warm_starts(self, warm: WarmTable) -> None:
        """Take the warm starts of this pack's stations from a checkpoint."""
        mine = set(self.ids)
        self._warm = {k: v for k, v in warm.to_dict().items() if k[0] in mine}

    def registrations(self) -> list[Registration]:
        return [Registration(agent_id=a, kind="station", grid_zone=g, max_power_kw=m, chargers=c)
                for a, g, m, c in zip(self.ids, self.grid_zones, self.max_power_kw, self.chargers,
                                      strict=True)]

    # -- one control period -------------------------------------------------------------------
    def begin_period(self, states: Mapping[str, StationState], *,
                     optional: frozenset[str] = frozenset()) -> None:
        """Load this period's local data and warm-start each EV from its previous plan."""
        missing = [s for s in self.ids if s not in states]
        if missing:
            raise ValueError(f"no state for stations {missing}")
        self.states = {s: states[s] for s in self.ids}
        sts = list(self.states.values())
        h = sts[0].horizon if sts else 0
        self.h = h
        counts = np.array([st.charger.size for st in sts], dtype=np.int64)
        self.counts = counts
        self._rows = int(counts.sum())
        self.row_station = np.repeat(np.arange(len(sts)), counts)
        cfg = self.config
        cat = (lambda f: np.concatenate([f(st) for st in sts])) if sts else (lambda f: np.zeros(0))
        self.upper = np.concatenate([st.upper_kw for st in sts]) if self._rows else np.zeros((0, h))
        eta = cat(lambda st: st.eta)
        dt = sts[0].dt_h if sts else 1.0
        self.dt_h = dt
        unit = np.stack([st.price_per_kwh + cfg.carbon_price_per_kg * st.carbon_kg_per_kwh
                         for st in sts]) if sts else np.zeros((0, h))
        # Energy delivered later is worth a little less: the station cannot see the EVs that will
        # arrive and compete for the same feeder, nor an early departure (receding horizon).
        value = cfg.unmet_penalty_per_kwh * (1 - cfg.urgency_per_h) ** (np.arange(h) * dt)
        # q = Δt·(unit − η·value) per EV-step is formed inside the kernel (see ``q``).
        self.unit, self.eta, self.value = unit, eta, value
        self.budget = cat(lambda st: st.owed_kwh) / np.maximum(eta * dt, 1e-12)
        self.wear = cfg.wear_per_kw2h * dt
        self.const = cfg.unmet_penalty_per_kwh * np.array([st.owed_kwh.sum() for st in sts])
        # Warm start: each EV's last relaxed plan x̂ from the previous period (its plan, up to the
        # ADMM tolerance), shifted to the new start.
        x = np.zeros((self._rows, h))
        keys = []
        r = 0
        for st in sts:
            for c, a, d in zip(st.charger, st.arrival_step, st.departure_step, strict=True):
                key = (st.station_id, int(c), int(a), int(d))
                keys.append(key)
                warm = self._warm.get(key)
                # Only a plan made at or before this period's start (not one from a later
                # period, as when a period is solved again): shifted to the new start.
                if warm is not None and warm[0] <= st.horizon_start:
                    start, prev = warm
                    tail = prev[st.horizon_start - start:]
                    m = min(h, tail.size)
                    x[r, :m] = tail[:m]
                r += 1
        # Entries from an EV's departure on are 0: the kernel does not search them.
        start = sts[0].horizon_start if sts else 0
        self.width = (np.clip(cat(lambda st: st.departure_step) - start, 0, h).astype(np.int64)
                      if self._rows else np.zeros(0, np.int64))
        self.keys = keys
        # The sharing ADMM's N_i per step: EVs of each station still plugged in at that step.
        self.present = np.zeros((len(sts), h))
        np.add.at(self.present, self.row_station,
                  (np.arange(h)[None, :] < self.width[:, None]).astype(float))
        self.row_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.agg = sp.csr_matrix(
            (np.ones(self._rows), (self.row_station, np.arange(self._rows))),
            shape=(len(sts), self._rows),
        )
        self.xh = np.clip(x, 0.0, self.upper)
        self.mu = np.zeros(self._rows)
        self.dual = np.zeros(len(sts))
        self.xh_sum = self.agg @ self.xh
        self.x_sum = self.xh_sum.copy()
        self.cost = np.zeros(len(sts))
        self._waiting(sts)
        self.want_now = self.want_with_plan()

    def _waiting(self, sts: list[StationState]) -> None:
        """Which EVs wait for a cheaper step (``waits``: now is dearer, per kWh q as the kernel
        prices it, than some later step of their stay) and what each could use now
        (``want_rows``: 0 for a forecast's phantom rows)."""
        self.waits = np.zeros(self._rows, dtype=bool)
        self.want_rows = np.zeros(self._rows)
        if not self._rows:
            return
        q = self.q
        later = np.where(np.arange(self.h)[None, :] < self.width[:, None], q, np.inf)
        later[:, 0] = np.inf
        cheapest_later = later.min(axis=1, initial=np.inf)
        self.waits = q[:, 0] > cheapest_later + 1e-9 * np.abs(cheapest_later)
        r = 0
        for st in sts:
            real = np.flatnonzero(st.charger >= 0) + r
            r += st.charger.size
            if real.size:
                self.want_rows[real] = setpoints_within(st, np.inf)[1]

    def want_with_plan(self) -> np.ndarray:
        """[stations] the most each would take now: what its EVs could use, except that an EV
        waiting for a cheaper step takes only its planned first step. This is what the
        coordinator may fill beyond the agreed shares (``admm.fill_now``): room is left idle
        now when later is cheaper, and taken when now is no dearer (with flat prices, every
        EV: the work-conserving rule)."""
        if not self._rows:
            return np.zeros(len(self.ids))
        if not self.h:
            return np.zeros(len(self.ids))
        planned = np.clip(self.xh[:, 0], 0.0, self.want_rows)
        return self.agg @ np.where(self.waits, planned, self.want_rows)

    def propose(
        self, targets: ConsensusTargets, *, optional: frozenset[str] = frozenset()
    ) -> PowerProposals:
        """One ADMM x-update for every EV of every targeted station (one compiled pass), and
        their duals when the targets say certify (a second one). In-process stations always
        answer, so ``optional`` changes nothing here."""
        everyone = targets.agent_ids == self.id_tuple
        if everyone:  # the common case: no index arrays, no gathers
            sel: slice | np.ndarray = slice(None)
        else:
            unknown = [a for a in targets.agent_ids if a not in self.index]
            if unknown:
                raise KeyError(f"targets for stations this pack does not host: {unknown}")
            sel = np.array([self.index[a] for a in targets.agent_ids], dtype=np.int64)
        # src[s]: the row of (shift, u) station s follows this round; −1: not targeted.
        src = np.ascontiguousarray(targets.agent_zone, dtype=np.int64)
        if not everyone:
            src = np.full(len(self.ids), -1, dtype=np.int64)
            src[sel] = targets.agent_zone
        u = targets.zone_u
        if targets.zone_shift is not None:  # zone rows: every EV of the zone moves alike
            shift = targets.zone_shift
        elif targets.round > 0 and targets.z_kw is not None:
            # One row per station (an edge node): z_v = x̂_v + shift, so the station's share
            # of its zone's correction is recovered from its aggregate target Z_i.
            shift = (targets.z_kw - self.xh_sum[sel]) / np.maximum(self.present[sel], 1.0)
        else:
            shift = np.zeros_like(u)
        # Round 0 relaxes towards each EV's warm start; the coordinator, which never sees an
        # EV, is told their sum (later rounds relax towards the z it sent).
        start = self.xh_sum[sel].copy() if targets.round == 0 else None
        # The plan sums go into a new array each round, which the answer owns (no copy).
        self.x_sum = np.empty_like(self.x_sum) if everyone else self.x_sum.copy()
        # Own, writable C arrays ([zones × H], cheap to copy): a read-only view of a decoded
        # message is another type to numba, and would be compiled inside the round's deadline.
        u = np.array(u, dtype=float, order="C")
        certify = targets.certify and self.wear > 0  # κ = 0: an LP, no dual from this search
        with threads_for(self.xh.size):
            admm_round(self.xh, self.mu, np.array(shift, dtype=float, order="C"), u, src,
                       self.row_ptr, self.unit, self.eta, self.value, float(self.dt_h),
                       self.upper, self.budget, self.width, float(targets.rho), float(self.wear),
                       float(targets.alpha), self.xh_sum, self.x_sum, self.cost)
            if certify:
                dual_round(u, src, self.row_ptr, self.unit, self.eta, self.value,
                           float(self.dt_h), self.upper, self.budget, self.width,
                           float(targets.rho), float(self.wear), self.mu, self.dual)
        self.want_now = self.want_with_plan()
        return PowerProposals(
            round=targets.round, horizon_start=targets.horizon_start,
            agent_ids=targets.agent_ids, plan_kw=self.x_sum[sel],
            participants=self.present[sel], objective=self.cost[sel] + self.const[sel],
            want_kw=self.want_now[sel], start_kw=start,
            dual_objective=self.dual[sel] + self.const[sel] if certify else None,
        )

    @property
    def q(self) -> np.ndarray:
        """[rows, H] each EV's linear cost per kW and step (Eq. 14–16 with the discounted
        unmet-energy penalty folded in), as the kernel forms it."""
        return self.dt_h * (self.unit[self.row_station] - self.eta[:, None] * self.value[None, :])

    def plans(self) -> dict[str, np.ndarray]:
        """Each station's current plan X_i [H] (sum of its EVs' profiles)."""
        return {s: self.x_sum[i].copy() for i, s in enumerate(self.ids)}

    def finish_period(
        self, agreed_kw: Mapping[str, float] | None = None,
        envelopes: Mapping[str, np.ndarray] | None = None,
        *, optional: frozenset[str] = frozenset(),
    ) -> Executed:
        """Remember plans for the warm start; return (charger indices, kW) per station.

        ``agreed_kw`` is each station's agreed power for the current step (default: its plan's
        first step), shared among its EVs by their plans (:func:`setpoints_following`), or by
        the pack's learned ``dispatch`` inside it.
        ``envelopes`` are for edge nodes (their fallback); a pack in this process needs none.
        """
        plans = self.plans()
        first = (np.clip(self.xh[:, 0], 0.0, self.upper[:, 0]) if self.h
                 else np.zeros(self._rows))
        for r, key in enumerate(self.keys):
            self._warm[key] = (self.states[self.ids[self.row_station[r]]].horizon_start,
                               np.clip(self.xh[r], 0.0, self.upper[r]))
        live = set(self.keys)
        self._warm = {k: v for k, v in self._warm.items() if k in live}
        rows = np.split(np.arange(self._rows), np.cumsum(self.counts)[:-1])
        agreed = {sid: (agreed_kw or {}).get(sid, float(plans[sid][0]) if self.h else 0.0)
                  for sid in self.ids}
        if self.dispatch is not None:
            return {sid: self.dispatch(self.states[sid], agreed[sid]) for sid in self.ids}
        return {
            sid: setpoints_following(self.states[sid], agreed[sid], first[rows[i]],
                                     self.waits[rows[i]])
            for i, sid in enumerate(self.ids)
        }


def real_rows(state: StationState) -> StationState:
    """``state`` without a forecast's phantom rows (charger < 0: no charger to set)."""
    real = state.charger >= 0
    if real.all():
        return state
    return replace(state, charger=state.charger[real], arrival_step=state.arrival_step[real],
                   departure_step=state.departure_step[real], upper_kw=state.upper_kw[real],
                   eta=state.eta[real], owed_kwh=state.owed_kwh[real])


def want_and_laxity(st: StationState) -> tuple[np.ndarray, np.ndarray]:
    """Each EV's most useful power now [kW] and its laxity [h] (slack before it must charge
    flat out to get what it is owed)."""
    want = np.minimum(st.upper_kw[:, 0], st.owed_kwh / np.maximum(st.eta * st.dt_h, 1e-12))
    rate = np.maximum(st.upper_kw[:, 0] * st.eta, 1e-12)
    laxity = (st.departure_step - st.horizon_start) * st.dt_h - st.owed_kwh / rate
    return want, laxity


def setpoints_within(state: StationState, budget_kw: float) -> tuple[np.ndarray, np.ndarray]:
    """(charger indices, kW) for the current step: least laxity first inside ``budget_kw``.

    What anyone executing on a station's behalf without its plan executes (a coordinator
    whose station vanished, an edge node that lost its link).
    """
    st = real_rows(state)
    if st.horizon == 0 or st.charger.size == 0:
        return st.charger, np.zeros(st.charger.size)
    want, laxity = want_and_laxity(st)
    return st.charger, llf_within(budget_kw, want, laxity)


def setpoints_following(state: StationState, budget_kw: float, planned_kw: np.ndarray,
                        waits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(charger indices, kW) for the current step inside ``budget_kw``, following the plan.

    Each EV first gets its planned first step (``planned_kw``, rows as in ``state``); a
    budget below their sum is shared least laxity first among them, and one above it goes,
    least laxity first, to EVs that can use more and are not waiting for a cheaper step
    (``waits``). Least laxity first alone would hand an EV's planned power to another that
    planned to charge later, and the first could leave without it.
    """
    st = real_rows(state)
    if st.horizon == 0 or st.charger.size == 0:
        return st.charger, np.zeros(st.charger.size)
    real = state.charger >= 0
    want, laxity = want_and_laxity(st)
    base = np.clip(planned_kw[real], 0.0, want)
    budget = max(budget_kw, 0.0)
    if budget <= base.sum():
        return st.charger, llf_within(budget, base, laxity)
    room = np.where(waits[real], 0.0, want - base)
    return st.charger, base + llf_within(budget - float(base.sum()), room, laxity)


class StationAgent(StationPack):
    """One facility's agent: a pack of one station (what an edge node runs)."""

    def __init__(
        self, station_id: str, grid_zone: str, max_power_kw: float,
        config: StationConfig | None = None, *, chargers: int = 0,
        dispatch: Dispatch | None = None,
    ) -> None:
        super().__init__([station_id], [grid_zone], [max_power_kw], config, chargers=[chargers],
                         dispatch=dispatch)
