"""The receding-horizon problem of one control period, as every planner sees it.

The coordinated policy solves it distributed (ADMM over station agents), ``mpc`` solves it
centrally; both start here, so they solve the same problem: the stations' EVs over the
horizon, the forecast stations' expected arrivals (``evgrid.agents.forecast``), the limits,
and the tariff's demand charge over each zone's peak so far.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evgrid.agents.forecast import (
    Forecaster,
    empty_forecast_states,
    forecast_id,
    forecast_states,
    make_forecaster,
)
from evgrid.agents.station import (
    StationConfig,
    StationPack,
    StationState,
    station_contexts,
    station_states,
)
from evgrid.coordinator.demand import DemandCharge, demand_over_horizon
from evgrid.envs.interface import Observation
from evgrid.envs.world import World


@dataclass(frozen=True)
class PeriodProblem:
    horizon: int  # steps planned
    states: dict[str, StationState]  # every station's and forecast station's local view
    demand: DemandCharge | None  # the demand charge over the horizon (None: none billed)
    zone_limit_kw: np.ndarray  # [H, G]
    city_limit_kw: np.ndarray  # [H]


def forecasts(world: World) -> bool:
    """Whether planners forecast arrivals in ``world`` by default: where a tariff bills a
    demand charge, where a peak is shared with EVs not yet here (without it the first EVs of
    the day are refused any peak). Measured where prices vary but no peak is billed (design
    note 19): on the issue's slack probe it closes 69–87 % of LLF's gap to the optimum where
    the stations' own urgency closes 33 %, but on the congested cities it is slower (94
    rounds a period against 27, some uncertified) and no better, so it is not on there."""
    return bool(world.demand_rate_per_kw.any())


class RecedingHorizon:
    """Builds each period's :class:`PeriodProblem` for a world.

    ``forecast`` (default :func:`forecasts`) adds one forecast station per grid zone and plans
    to the end of ``horizon_steps`` (default a day); without it the horizon ends with the last
    departure of the EVs present.
    """

    def __init__(self, world: World, *, horizon_steps: int | None = None,
                 forecast: bool | None = None) -> None:
        self.world = world
        self.h_max = horizon_steps or round(24 / world.dt_h)
        on = forecasts(world) if forecast is None else forecast
        self.forecaster: Forecaster | None = make_forecaster(world) if on else None

    def forecast_pack(self, config: StationConfig) -> StationPack | None:
        """The forecast stations, hosted with the coordinator (None without a forecast)."""
        if self.forecaster is None:
            return None
        w = self.world
        rating = np.bincount(w.charger_grid, weights=w.charger_max_kw, minlength=w.n_grid)
        ids = [forecast_id(g) for g in w.grid_ids]
        return StationPack(ids, list(w.grid_ids), [float(r) for r in rating], config,
                           chargers=[0] * len(ids))

    def state_dict(self) -> dict[str, np.ndarray]:
        """The sessions the forecast has seen (for a checkpoint): without them a resumed run
        would forecast from nothing and decide otherwise."""
        if self.forecaster is None:
            return {}
        seen = self.forecaster.empirical
        return {"forecast_rows": np.array(seen.rows, dtype=float).reshape(-1, 5),
                "forecast_seen": np.array(sorted(seen.seen), dtype=np.int64).reshape(-1, 2)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        if self.forecaster is None or "forecast_rows" not in state:
            return
        seen = self.forecaster.empirical
        seen.rows = [(int(r[0]), int(r[1]), float(r[2]), float(r[3]), float(r[4]))
                     for r in np.asarray(state["forecast_rows"]).reshape(-1, 5)]
        seen.seen = {(int(c), int(a)) for c, a in np.asarray(state["forecast_seen"])
                     .reshape(-1, 2)}

    def problem(self, obs: Observation) -> PeriodProblem:
        """This period's problem (``obs`` must have an EV connected)."""
        w = self.world
        fc = self.forecaster.forecast(obs) if self.forecaster is not None else None
        left = int((obs.ev_departure_step[obs.connected] - obs.t).max())
        if self.forecaster is not None:  # the expected arrivals reach to the horizon's end
            left = obs.price_per_kwh.size
        h = max(1, min(self.h_max, left, obs.price_per_kwh.size))
        states = station_states(obs, list(w.facility_ids), h, station_contexts(obs, w))
        if self.forecaster is not None:
            states.update(forecast_states(fc, w, obs, h) if fc is not None
                          else empty_forecast_states(w, obs, h))
        demand = demand_over_horizon(obs.demand_rate_per_kw[:h], obs.billing_window[:h],
                                     obs.zone_peak_kw)
        return PeriodProblem(h, states, demand, obs.zone_limit_kw[:h], obs.city_limit_kw[:h])
