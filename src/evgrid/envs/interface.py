"""What a controller sees and returns: the plant/controller boundary (acnportal's lesson).

Controllers never touch the simulator. Each step they receive an :class:`Observation` and
return one power set-point per charger [kW]; the same controller can therefore run against the
simulator, a replay, or real chargers behind an edge node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Observation:
    """The state at the start of step ``t``, as arrays over the C chargers.

    Entries for a charger with no EV connected are 0 (energies, rates) or -1 (steps).
    Forecast arrays run from ``t`` to the end of the horizon.
    """

    t: int
    dt_h: float
    connected: np.ndarray  # [C] bool: an EV is plugged in and the charger is online
    charger_max_kw: np.ndarray  # [C] rating [kW] (0 while offline)
    charger_eta: np.ndarray  # [C] grid-to-battery efficiency
    charger_grid: np.ndarray  # [C] grid-zone index
    charger_facility: np.ndarray  # [C] facility index
    ev_remaining_kwh: np.ndarray  # [C] energy still owed to the EV's request [kWh]
    ev_headroom_kwh: np.ndarray  # [C] room left in the battery [kWh]
    ev_max_kw: np.ndarray  # [C] EV's on-board limit [kW]
    ev_arrival_step: np.ndarray  # [C] int
    ev_departure_step: np.ndarray  # [C] int: first step the EV is gone
    zone_limit_kw: np.ndarray  # [T - t, G] grid-zone limits, now and ahead
    city_limit_kw: np.ndarray  # [T - t]
    price_per_kwh: np.ndarray  # [T - t]
    carbon_kg_per_kwh: np.ndarray  # [T - t]
    #: [T - t] demand charge of each step's billing window [currency/kW of a zone's peak]
    demand_rate_per_kw: np.ndarray = field(default_factory=lambda: np.zeros(0))
    billing_window: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: [G] each zone's executed peak so far in the current billing window (a peak already
    #: paid for costs nothing to reach again)
    zone_peak_kw: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def _per_step_kw(self, energy_kwh: np.ndarray) -> np.ndarray:
        return energy_kwh / (self.charger_eta * self.dt_h)

    @property
    def power_cap_kw(self) -> np.ndarray:
        """Most power a charger may execute: its rating, the EV's limit, the battery's room.

        The simulator's safety projection enforces exactly this (Eq. 12, 15 of 000).
        """
        cap = np.minimum(
            np.minimum(self.charger_max_kw, self.ev_max_kw), self._per_step_kw(self.ev_headroom_kwh)
        )
        return np.where(self.connected, np.maximum(cap, 0.0), 0.0)

    @property
    def rate_cap_kw(self) -> np.ndarray:
        """Highest useful power this step: :attr:`power_cap_kw` and the energy still owed."""
        return np.minimum(self.power_cap_kw, self._per_step_kw(self.ev_remaining_kwh))

    @property
    def steps_left(self) -> np.ndarray:
        """Whole steps until departure (0 where no EV)."""
        return np.where(self.connected, self.ev_departure_step - self.t, 0)


@runtime_checkable
class Stateful(Protocol):
    """A controller with state worth a checkpoint (``evgrid.evaluation.checkpoint``): named
    arrays out, the same arrays back in to continue as if uninterrupted."""

    def state_dict(self) -> dict[str, np.ndarray]: ...

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None: ...


@runtime_checkable
class Controller(Protocol):
    """A charging policy: one call per step, returning kW per charger (positive = charging)."""

    name: str

    def schedule(self, obs: Observation) -> np.ndarray: ...
