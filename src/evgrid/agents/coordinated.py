"""The coordinated policy: station agents and the ADMM coordinator, as one controller.

Each control period (data flow steps 3–5 of DESIGN.md): every station states its profile over
the receding horizon, the coordinator runs ADMM until agreement or a deadline, each station
executes its agreed first step with least-laxity-first, and the simulator's safety projection
has the last word, so an unconverged round or a vanished agent never breaks a limit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from evgrid.agents.horizon import RecedingHorizon, forecasts
from evgrid.agents.station import StationConfig, StationPack
from evgrid.coordinator.admm import AdmmConfig, AdmmStats, CoordinatorState, PowerCoordinator
from evgrid.coordinator.driver import (
    Coordinator,
    CoordinatorLost,
    MixedStations,
    StationTransport,
    TransportStats,
    WarmTable,
    solve_period,
)
from evgrid.coordinator.fallback import Envelope, rated_sums_kw, safe_share_kw
from evgrid.coordinator.messages import Registration
from evgrid.envs.interface import Observation
from evgrid.envs.world import World


def station_specs(world: World) -> tuple[list[str], list[str], list[float]]:
    """(ids, grid zones, Σ charger ratings) of every facility of the world."""
    ids = list(world.facility_ids)
    zones = [world.scenario.facilities[i].grid_zone for i in range(len(ids))]
    cap = np.bincount(world.charger_facility, weights=world.charger_max_kw, minlength=len(ids))
    return ids, zones, [float(c) for c in cap]


def station_chargers(world: World) -> list[int]:
    """Charging points of every facility of the world (at most this many EVs at a time)."""
    n = np.bincount(world.charger_facility, minlength=len(world.facility_ids))
    return [int(c) for c in n]


def station_registrations(world: World) -> list[Registration]:
    """Every facility's terms from the city file: what the coordinator checks claims against."""
    ids, zones, caps = station_specs(world)
    return [Registration(agent_id=i, kind="station", grid_zone=z, max_power_kw=c, chargers=n)
            for i, z, c, n in zip(ids, zones, caps, station_chargers(world), strict=True)]


def station_safe_share(world: World, station_id: str) -> np.ndarray:
    """[T] the station's safe share of its zone's and the city's limits at every step of the
    world: what it may draw on its own past its last envelope (``evgrid.coordinator.fallback``),
    computed exactly as the coordinator reserves it."""
    ids, zones, caps = station_specs(world)
    i = ids.index(station_id)
    zone_cap, city_cap = rated_sums_kw(zip(zones, caps, strict=True))
    g = world.grid_ids.index(zones[i])
    return safe_share_kw(caps[i], zone_cap[zones[i]], city_cap, world.zone_limit_kw[:, g],
                         world.city_limit_kw)


#: The urgency discount where arrivals are forecast [per h]: the forecast stands in for the
#: EVs to come, this only for what no forecast sees (an outage, an early departure). At 0
#: `small` (an outage at noon) lost 0.5 % of LLF's energy, at 0.02 none (design note 19).
URGENCY_WITH_FORECAST = 0.02


def station_config(world: World, *, forecast: bool | None = None,
                   **overrides: Any) -> StationConfig:
    """The stations' weights for ``world``. Where the planner forecasts arrivals (``forecast``,
    default ``agents.horizon.forecasts``) the urgency discount is 0: it stood in for the EVs
    to come that would compete for the feeder, which the forecast stations now are."""
    sc = world.scenario
    if forecasts(world) if forecast is None else forecast:
        overrides = {"urgency_per_h": URGENCY_WITH_FORECAST, **overrides}
    return replace(StationConfig(unmet_penalty_per_kwh=sc.unmet_penalty_per_kwh,
                                 carbon_price_per_kg=sc.prices.carbon_price_per_kg), **overrides)


def in_process_stations(world: World, config: StationConfig) -> StationPack:
    ids, zones, cap = station_specs(world)
    return StationPack(ids, zones, cap, config, chargers=station_chargers(world))


#: Times one period may lose its coordinator and be solved again on a restored one.
RECOVERIES = 3


@dataclass
class CoordinatedPolicy:
    """ADMM-coordinated station agents (see module docstring).

    ``stations`` builds the transport (default: one in-process pack); ``horizon_steps`` caps
    the receding horizon (default a day).
    """

    world: World
    admm: AdmmConfig = field(default_factory=AdmmConfig)
    horizon_steps: int | None = None
    stations: Callable[[World, StationConfig], StationTransport] = in_process_stations
    coordinator_factory: Callable[[list[str], AdmmConfig], Coordinator] = PowerCoordinator
    name: str = "coordinated"
    history: list[AdmmStats] = field(default_factory=list)
    #: Stations dropped last period: asked again, but not waited for (driver.solve_period).
    probation: frozenset[str] = frozenset()
    #: Times the coordinator was lost mid-period and restored from the last period's state.
    recoveries: int = 0
    #: Transport figures of the run this one resumed (refusals, late answers, fallbacks).
    stats_before: TransportStats = field(default_factory=TransportStats)
    #: Plan for the arrivals expected (agents.horizon.RecedingHorizon; default: where a
    #: tariff bills a demand charge).
    forecast: bool | None = None
    #: A learned station policy (exported bundle folder) that executes each station's agreed
    #: power (``evgrid.agents.dispatch``); None: the stations follow their plans.
    station_policy: Path | None = None

    def __post_init__(self) -> None:
        self.horizon = RecedingHorizon(self.world, horizon_steps=self.horizon_steps,
                                       forecast=self.forecast)
        self.config = station_config(self.world, forecast=self.horizon.forecaster is not None)
        #: The stations' own transport (Ray actors, gRPC edge nodes, a pack in this process).
        self.station_transport = self.stations(self.world, replace(
            self.config, policy_dir=None if self.station_policy is None
            else str(self.station_policy)))
        self.transport: StationTransport = self.station_transport
        forecasts = self.horizon.forecast_pack(self.config)  # plans only: nothing to dispatch
        if forecasts is not None:  # hosted here, beside the coordinator
            self.transport = MixedStations([self.station_transport, forecasts])
        self.coordinator = self.coordinator_factory(list(self.world.grid_ids), self.admm)
        for reg in self.transport.registrations():
            self.coordinator.register(reg)
        self.coordinator_state = self.coordinator.state()

    def schedule(self, obs: Observation) -> np.ndarray:
        power = np.zeros(obs.connected.size)
        if not obs.connected.any():
            return power
        period = self.horizon.problem(obs)
        for attempt in range(1, RECOVERIES + 2):
            self.transport.begin_period(period.states, optional=self.probation)
            try:
                stats = solve_period(
                    self.coordinator, self.transport, horizon_start=obs.t,
                    zone_limit_kw=period.zone_limit_kw, city_limit_kw=period.city_limit_kw,
                    optional=self.probation, demand=period.demand)
                # Execute the consensus share z (feasible for every zone and the city by
                # construction), not the plan x, which may still exceed a limit by the ADMM
                # tolerance; unused room goes to stations that can use it now
                # (PowerCoordinator.executable_now), and a dropped station gets exactly the
                # fallback draw that was reserved for it.
                agreed, envelopes = self.coordinator.settle()
                break
            except CoordinatorLost:
                # Nothing of this period was executed: solve it again on a restored coordinator.
                if attempt > RECOVERIES:
                    raise
                self.coordinator.restore(self.coordinator_state)
                self.recoveries += 1
        self.probation = frozenset(stats.dropped)
        self.history.append(stats)
        for chargers, kw in self.transport.finish_period(
                agreed, envelopes, optional=self.probation).values():
            power[chargers] = kw
        # A station that did not confirm its new envelope may still hold its old one.
        self.coordinator.unconfirmed(self.transport.unconfirmed())
        self.coordinator_state = self.coordinator.state()
        return power

    def summary(self) -> dict[str, float]:
        """ADMM figures over the run: iterations per period, final residuals, convergence."""
        if not self.history:
            return {}
        it = np.array([s.iterations for s in self.history])
        gaps = np.array([s.gap_bound for s in self.history])
        certified = np.isfinite(gaps) & (gaps <= self.admm.gap_tol)
        return {
            "admm_periods": len(self.history),
            "admm_iterations_mean": float(it.mean()),
            "admm_iterations_max": int(it.max()),
            "admm_converged_pct": 100.0 * float(np.mean([s.converged for s in self.history])),
            "admm_primal_residual_last": float(self.history[-1].primal_residual),
            "admm_violation_rel_max": float(max(s.violation_rel for s in self.history)),
            # Certified gap (plans' objective − dual bound) / |bound| of the certified periods.
            "admm_gap_bound_max_pct": 100.0 * float(gaps[certified].max(initial=0.0)),
            "admm_uncertified_periods": int((~certified).sum()),
            "admm_wall_ms_mean": 1000.0 * float(np.mean([s.wall_s for s in self.history])),
            "admm_missing_proposals": int(sum(s.missing for s in self.history)),
            # Station-periods a silent station was dropped from (its fallback reserved).
            "admm_dropped_station_periods": int(sum(len(s.dropped) for s in self.history)),
            "coordinator_recoveries": self.recoveries,
            **self.transport_summary(),
        }

    # -- checkpoints (evgrid.evaluation.checkpoint) ---------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """What a resumed run needs, between two periods, as named arrays: the coordinator's
        state (ρ, duals, envelopes), probation, the ADMM history the KPIs summarise, and the
        warm starts of the stations hosted on this side (edge nodes keep their own)."""
        st = self.coordinator_state
        env_ids = sorted(st.envelopes)
        meta = {
            "rho": st.rho, "start": st.start, "probation": sorted(self.probation),
            "recoveries": self.recoveries, "history": [_stats_dict(h) for h in self.history],
            "env_ids": env_ids, "env_start": [st.envelopes[a].start for a in env_ids],
            "transport": asdict(self._transport_stats()),
        }
        env_kw, env_len = _ragged([st.envelopes[a].kw for a in env_ids])
        return {"meta": np.array(json.dumps(meta)), "u": st.u, "env_kw": env_kw,
                "env_len": env_len, **self.transport.warm_starts().arrays("warm_"),
                **self.horizon.state_dict()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Continue from a ``state_dict``: the next period warm-starts as if uninterrupted."""
        meta = json.loads(str(state["meta"]))
        envs = _unragged(state["env_kw"], state["env_len"])
        self.coordinator_state = CoordinatorState(
            rho=float(meta["rho"]), u=np.asarray(state["u"], dtype=float), start=int(meta["start"]),
            envelopes={a: Envelope(int(s), kw) for a, s, kw in
                       zip(meta["env_ids"], meta["env_start"], envs, strict=True)})
        self.coordinator.restore(self.coordinator_state)
        self.probation = frozenset(meta["probation"])
        self.recoveries = int(meta["recoveries"])
        self.history = [AdmmStats(**{**h, "dropped": tuple(h["dropped"])})
                        for h in meta["history"]]
        self.stats_before = TransportStats(**meta["transport"])
        self.transport.load_warm_starts(WarmTable.from_arrays(state, "warm_"))
        self.horizon.load_state_dict(state)

    def _transport_stats(self) -> TransportStats:
        """This run's transport figures, with those of the run it resumed (if any)."""
        return self.stats_before.merge(self.transport.stats)

    def transport_summary(self) -> dict[str, float]:
        """Messages refused (by status code), late answers, and station-periods executed on a
        silent station's behalf: the same numbers the coordinator's log line prints."""
        st = self._transport_stats()
        out: dict[str, float] = {
            "refused_messages": int(sum(st.refused.values())),
            "late_proposals": st.late_proposals,
            "fallback_schedules": st.fallbacks,
        }
        out.update({f"refused_{code.lower()}": n for code, n in sorted(st.refused.items())})
        return out


def _stats_dict(stats: AdmmStats) -> dict[str, object]:
    """``asdict`` without its deep copies (it cost 6 ms a period once the history was long)."""
    return {f.name: getattr(stats, f.name) for f in fields(AdmmStats)}


def _ragged(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of different lengths as one flat float array and their lengths."""
    lengths = np.array([r.size for r in rows], dtype=np.int64)
    flat = np.concatenate(rows).astype(float) if rows else np.zeros(0)
    return flat, lengths


def _unragged(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return np.split(np.asarray(flat, dtype=float), np.cumsum(lengths)[:-1]) if lengths.size else []
