"""The agent ↔ coordinator messages as plain dataclasses (the protobufs mirror these).

Pure Python: ``evgrid.transport.codec`` converts them to and from ``evgrid.v1`` protobufs and
validates every incoming one. Units are in the names; every power array is one value per
horizon step [kW], starting at step ``horizon_start`` of the simulation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Registration:
    """An agent introduces itself: who it is, where it hangs, what it can draw."""

    agent_id: str
    kind: str  # "station" or "cohort"
    grid_zone: str = ""  # stations: the grid zone id
    max_power_kw: float = 0.0  # stations: Σ charger ratings, the most it may ever ask for
    slots: tuple[str, ...] = ()  # cohorts: the facility zones it may claim


@dataclass(frozen=True)
class PowerProposal:
    """A station's answer to a round: its relaxed and plain power profiles."""

    round: int
    agent_id: str
    horizon_start: int
    power_kw: np.ndarray  # [H] over-relaxed profile x̂ (what the coordinator averages)
    plan_kw: np.ndarray  # [H] the local minimiser x (what the station would execute)
    participants: int  # EV rows behind the profile (the sharing ADMM's N for this agent)
    objective: float  # local objective at x [currency]


@dataclass(frozen=True)
class ConsensusTarget:
    """The coordinator's broadcast to one station for the next round."""

    round: int
    agent_id: str
    horizon_start: int
    z_kw: np.ndarray  # [H] the station's consensus share Z_i of the coupled resource
    u: np.ndarray  # [H] scaled dual of its grid zone (+ city), ρ-scaled price [kW]
    rho: float
    price_signal: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [H] ρ·u [currency/kW]
    done: bool = False  # the round converged (or hit its deadline): execute the plan


@dataclass(frozen=True)
class ClaimProposal:
    """A cohort's claims on facility-zone capacity [expected vehicles parked at once]."""

    round: int
    agent_id: str
    claims: np.ndarray  # [S] relaxed claims per slot
    plan: np.ndarray  # [S] plain claims
    objective: float


@dataclass(frozen=True)
class ClaimTarget:
    round: int
    agent_id: str
    z: np.ndarray  # [S]
    u: np.ndarray  # [S] scaled dual per slot
    rho: float
    done: bool = False
