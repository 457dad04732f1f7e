"""What each learning agent is paid for one step: the per-agent terms, and the reward sets.

Terms are measured per agent from the simulator's executed step (``StepOutcome``), never from
what the agent asked for. A reward set turns them into one number per agent with the weights
of the scenario's ``rewards`` section (``evgrid.scenario.schema.Rewards``). Add a set by adding
a function to :data:`REWARD_SETS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evgrid.scenario.schema import Rewards


@dataclass(frozen=True)
class StepTerms:
    """One step's terms, per station ([n_stations] arrays) and per cohort ([n_cohorts])."""

    energy_cost: np.ndarray  # price × grid energy of the station's chargers
    demand_charge: np.ndarray  # its share (by load) of each zone's peak rise × rate
    carbon_kg: np.ndarray
    unmet_kwh: np.ndarray  # owed to the EVs that left its chargers this step
    throughput_kwh: np.ndarray  # battery energy in (seed 001's SoC-cycling wear term)
    floor_short_kwh: np.ndarray  # energy below the departure floor of those EVs (range anxiety)
    utilisation: np.ndarray  # fraction of its chargers with an EV
    power_var_kw2: np.ndarray  # variance of its connected chargers' power (load balance)
    cohort_unmet_kwh: np.ndarray  # owed to its drivers who left without ever getting a charger
    cohort_floor_short_kwh: np.ndarray
    cohort_wait_min: np.ndarray  # minutes its drivers spent queued this step
    cohort_travel_km: np.ndarray  # km its drivers routed this step drive and walk


RewardSet = Callable[[StepTerms, Rewards, float, float], tuple[np.ndarray, np.ndarray]]


def objective_reward(t: StepTerms, w: Rewards, carbon_price: float,
                     penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """−objective, split by who caused each term (``kpis.objective_terms``): Σ over agents and
    the day is exactly −objective when ``wait_per_min`` and ``travel_per_km`` are 0."""
    station = -(t.energy_cost + t.demand_charge + carbon_price * t.carbon_kg
                + penalty * t.unmet_kwh)
    cohort = -(penalty * t.cohort_unmet_kwh + w.wait_per_min * t.cohort_wait_min
               + w.travel_per_km * t.cohort_travel_km)
    return station, cohort


def seed000_reward(t: StepTerms, w: Rewards, carbon_price: float,
                   penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 32 of 000_f74a305f822cf870.txt, Σ w_i R_i: R1 charging cost, R2 satisfaction (here
    −unmet kWh at departure), R3 movements (km driven to the space: cohorts), R4 resource
    utilisation, R5 load balance (−variance of charger power)."""
    station = (-w.w_cost * (t.energy_cost + t.demand_charge) - w.w_satisfaction * t.unmet_kwh
               + w.w_utilisation * t.utilisation - w.w_balance * t.power_var_kw2)
    cohort = (-w.w_satisfaction * t.cohort_unmet_kwh - w.w_movements * t.cohort_travel_km
              - w.wait_per_min * t.cohort_wait_min)
    return station, cohort


def seed001_reward(t: StepTerms, w: Rewards, carbon_price: float,
                   penalty: float) -> tuple[np.ndarray, np.ndarray]:
    """§3.1 of 001_e88dfec58fd7eed4.txt: W_cost·R_cost + W_emission·R_carbon + W_SOC·R_SOC +
    W_satisfaction·R_user, with R_SOC the energy cycled through the battery and R_user the
    range-anxiety penalty of departing below the floor."""
    station = -(w.w_cost_001 * (t.energy_cost + t.demand_charge) + w.w_emission * t.carbon_kg
                + w.w_soc * t.throughput_kwh
                + w.w_user * w.anxiety_per_kwh * t.floor_short_kwh)
    cohort = -(w.w_user * w.anxiety_per_kwh * t.cohort_floor_short_kwh
               + w.wait_per_min * t.cohort_wait_min + w.travel_per_km * t.cohort_travel_km)
    return station, cohort


REWARD_SETS: dict[str, RewardSet] = {
    "objective": objective_reward,
    "seed000": seed000_reward,
    "seed001": seed001_reward,
}
