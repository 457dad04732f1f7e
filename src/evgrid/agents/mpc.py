"""``mpc``: the coordinated policy's receding-horizon problem, solved centrally each period.

What a user compares a distributed controller against (SustainGym ships an MPC baseline), and
what the coordinated policy must reproduce: the same :class:`~evgrid.agents.horizon.PeriodProblem`
(the stations' EVs, the forecast, the limits, the demand charge over the peak so far), solved
by one cvxpy call (``evgrid.agents.centralised``) instead of ADMM, and executed by the same
rule (:func:`evgrid.coordinator.admm.fill_now`: each station's planned first step, room
left offered to stations that can use it, never above the planned peak). So the two differ
only by the ADMM tolerance, which the coordinator certifies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from evgrid.agents.centralised import centralised_plan
from evgrid.agents.coordinated import station_config, station_specs
from evgrid.agents.horizon import RecedingHorizon
from evgrid.agents.station import StationPack
from evgrid.coordinator.admm import fill_now
from evgrid.envs.interface import Observation
from evgrid.envs.world import World


@dataclass
class MpcPolicy:
    """Central receding-horizon control (module docstring)."""

    world: World
    horizon_steps: int | None = None
    forecast: bool | None = None
    name: str = "mpc"
    objectives: list[float] = field(default_factory=list)  # each period's optimum

    def __post_init__(self) -> None:
        self.horizon = RecedingHorizon(self.world, horizon_steps=self.horizon_steps,
                                       forecast=self.forecast)
        self.config = station_config(self.world, forecast=self.horizon.forecaster is not None)
        ids, zones, caps = station_specs(self.world)
        forecasts = self.horizon.forecast_pack(self.config)
        if forecasts is not None:
            ids, zones, caps = ids + forecasts.ids, zones + forecasts.grid_zones, (
                caps + forecasts.max_power_kw)
        self.pack = StationPack(ids, zones, caps, self.config)
        self.zone_of = np.array([self.world.grid_ids.index(z) for z in zones], dtype=np.int64)

    def schedule(self, obs: Observation) -> np.ndarray:
        power = np.zeros(obs.connected.size)
        if not obs.connected.any():
            return power
        period = self.horizon.problem(obs)
        self.pack.begin_period(period.states)
        plan = centralised_plan(self.pack, self.zone_of, period.zone_limit_kw,
                                period.city_limit_kw, period.demand)
        self.objectives.append(plan.objective)
        self.pack.xh = np.clip(plan.row_plan_kw, 0.0, self.pack.upper)  # executed and warm start
        self.pack.want_now = self.pack.want_with_plan()
        zone_now = np.minimum(period.zone_limit_kw[0], plan.level_kw)
        agreed = fill_now(plan.plan_kw[:, 0], self.pack.want_now, self.zone_of, zone_now,
                          float(period.city_limit_kw[0]))
        executed = self.pack.finish_period(dict(zip(self.pack.ids, agreed.tolist(), strict=True)))
        for chargers, kw in executed.values():
            power[chargers] = kw
        return power
