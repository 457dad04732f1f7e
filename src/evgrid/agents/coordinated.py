"""The coordinated policy: station agents and the ADMM coordinator, as one controller.

Each control period (data flow steps 3–5 of DESIGN.md): every station states its profile over
the receding horizon, the coordinator runs ADMM until agreement or a deadline, each station
executes its agreed first step with least-laxity-first, and the simulator's safety projection
has the last word, so an unconverged round or a vanished agent never breaks a limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from evgrid.agents.station import StationConfig, StationPack, station_states
from evgrid.coordinator.admm import AdmmConfig, AdmmStats, PowerCoordinator
from evgrid.coordinator.driver import StationTransport, solve_period
from evgrid.envs.interface import Observation
from evgrid.envs.world import World


def station_specs(world: World) -> tuple[list[str], list[str], list[float]]:
    """(ids, grid zones, Σ charger ratings) of every facility of the world."""
    ids = list(world.facility_ids)
    zones = [world.scenario.facilities[i].grid_zone for i in range(len(ids))]
    cap = np.bincount(world.charger_facility, weights=world.charger_max_kw, minlength=len(ids))
    return ids, zones, [float(c) for c in cap]


def station_config(world: World, **overrides: float) -> StationConfig:
    sc = world.scenario
    return StationConfig(unmet_penalty_per_kwh=sc.unmet_penalty_per_kwh,
                         carbon_price_per_kg=sc.prices.carbon_price_per_kg, **overrides)


def in_process_stations(world: World, config: StationConfig) -> StationPack:
    ids, zones, cap = station_specs(world)
    return StationPack(ids, zones, cap, config)


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
    coordinator_factory: Callable[[list[str], AdmmConfig], PowerCoordinator] = PowerCoordinator
    name: str = "coordinated"
    history: list[AdmmStats] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.config = station_config(self.world)
        self.transport = self.stations(self.world, self.config)
        self.coordinator = self.coordinator_factory(list(self.world.grid_ids), self.admm)
        for reg in self.transport.registrations():
            self.coordinator.register(reg)
        day = round(24 / self.world.dt_h)
        self.h_max = self.horizon_steps or day

    def schedule(self, obs: Observation) -> np.ndarray:
        power = np.zeros(obs.connected.size)
        if not obs.connected.any():
            return power
        left = int((obs.ev_departure_step[obs.connected] - obs.t).max())
        h = max(1, min(self.h_max, left, obs.price_per_kwh.size))
        states = station_states(obs, list(self.world.facility_ids), h)
        self.transport.begin_period(states)
        stats = solve_period(self.coordinator, self.transport, horizon_start=obs.t,
                             zone_limit_kw=obs.zone_limit_kw[:h], city_limit_kw=obs.city_limit_kw[:h])
        self.history.append(stats)
        # Execute the consensus share z (feasible for every zone and the city by construction),
        # not the plan x, which may still exceed a limit by the ADMM tolerance; unused room
        # goes to stations that can use it now (PowerCoordinator.executable_now).
        agreed = self.coordinator.executable_now()
        for chargers, kw in self.transport.finish_period(agreed).values():
            power[chargers] = kw
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
        }
