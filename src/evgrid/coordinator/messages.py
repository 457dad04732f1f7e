"""The agent ↔ coordinator messages as plain dataclasses (the protobufs mirror these).

Pure Python: ``evgrid.transport.codec`` converts them to and from ``evgrid.v1`` protobufs and
validates every incoming one. Units are in the names; every power array is one value per
horizon step [kW], starting at step ``horizon_start`` of the simulation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import chain

import numpy as np

#: Id prefix of a forecast station (``forecast/<grid zone>``, ``evgrid.agents.forecast``): a
#: participant of the ADMM for the arrivals expected in a zone, hosted by the coordinator's
#: side, never at a charger. No facility may take such an id.
FORECAST_PREFIX = "forecast/"


def is_forecast(agent_id: str) -> bool:
    return agent_id.startswith(FORECAST_PREFIX)


@dataclass(frozen=True)
class Registration:
    """An agent introduces itself: who it is, where it hangs, what it can draw."""

    agent_id: str
    kind: str  # "station" or "cohort"
    grid_zone: str = ""  # stations: the grid zone id
    max_power_kw: float = 0.0  # stations: Σ charger ratings, the most it may ever ask for
    slots: tuple[str, ...] = ()  # cohorts: the facility zones it may claim
    chargers: int = 0  # stations: charging points (0: not stated); at most this many EVs


@dataclass(frozen=True)
class PowerProposals:
    """Stations' answers to one round, one row per station (a batch of one for an edge node).

    Batches keep the in-process and packed-actor paths vectorised; the gRPC path sends one
    row per message. All arrays are [M, H] or [M]. A station sends its plan x only: the
    over-relaxed x̂ = αx + (1−α)z that the z-update averages is linear in x, so the
    coordinator forms it from the z it sent (half the bytes on every link). In round 0 z is
    each EV's warm start, which only the station knows: it sends their sum, ``start_kw``.
    """

    round: int
    horizon_start: int
    agent_ids: tuple[str, ...]
    plan_kw: np.ndarray  # [M, H] the local minimiser x (what the station would execute)
    participants: np.ndarray  # [M, H] EVs plugged in at each step (the sharing ADMM's N_i)
    objective: np.ndarray  # [M] local objective at x [currency]
    want_kw: np.ndarray | None = None  # [M] most power each station can use right now [kW]
    start_kw: np.ndarray | None = None  # [M, H] round 0 only: the warm start x̂ relaxes from
    # [M] the station's dual function at the prices it was sent, min over its feasible plans of
    # objective + Σ_t y_t·p_t (y = max(ρ·u, 0)) [currency]; None when the targets did not ask
    # (certify), a station cannot (κ = 0, an older edge node), or a batch joined one without
    dual_objective: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.agent_ids)

    @property
    def want(self) -> np.ndarray:
        return self.want_kw if self.want_kw is not None else np.zeros(len(self.agent_ids))

    @property
    def start(self) -> np.ndarray:
        return self.start_kw if self.start_kw is not None else np.zeros_like(self.plan_kw)

    def take(self, rows: np.ndarray) -> PowerProposals:
        rows = np.asarray(rows, dtype=np.int64)
        return PowerProposals(self.round, self.horizon_start,
                              tuple(self.agent_ids[i] for i in rows), self.plan_kw[rows],
                              self.participants[rows], self.objective[rows], self.want[rows],
                              None if self.start_kw is None else self.start_kw[rows],
                              None if self.dual_objective is None else self.dual_objective[rows])

    @staticmethod
    def concat(parts: list[PowerProposals], *, round: int, horizon_start: int, horizon: int) -> PowerProposals:
        parts = [p for p in parts if len(p)]
        if not parts:
            z = np.zeros((0, horizon))
            return PowerProposals(round, horizon_start, (), z, z, np.zeros(0))
        return PowerProposals(
            round, horizon_start, tuple(chain.from_iterable(p.agent_ids for p in parts)),
            np.concatenate([p.plan_kw for p in parts]),
            np.concatenate([p.participants for p in parts]),
            np.concatenate([p.objective for p in parts]),
            np.concatenate([p.want for p in parts]),
            np.concatenate([p.start for p in parts]) if round == 0 else None,
            # A bound needs every station's dual: one part without it leaves the round without.
            None if any(p.dual_objective is None for p in parts)
            else np.concatenate([p.dual_objective for p in parts]),
        )


@dataclass(frozen=True)
class ConsensusTargets:
    """The coordinator's broadcast for the next round.

    Sharing ADMM moves every participant of a grid zone by the same correction (Boyd §7.3),
    so a station needs only its zone's rows: ``zone_shift`` (z_v − x̂_v for each of its EVs)
    and ``zone_u`` (the scaled dual). That is what a Ray pack receives, [zones × H] whatever
    the number of stations. ``z_kw``, each station's consensus share, is what an edge node
    receives (and keeps as its fallback envelope); it derives its shift from it.
    """

    round: int
    horizon_start: int
    agent_ids: tuple[str, ...]
    agent_zone: np.ndarray  # [M] row of zone_u / zone_shift that applies to each station
    zone_u: np.ndarray  # [K, H] scaled dual of a grid zone + the city (ρ-scaled price) [kW]
    rho: float  # ADMM penalty [currency/kW²]
    done: bool = False  # converged or out of time: execute the plan
    zone_shift: np.ndarray | None = None  # [K, H] z_v − x̂_v per participant [kW]
    z_kw: np.ndarray | None = None  # [M, H] each station's consensus share Z_i [kW]
    alpha: float = 1.0  # over-relaxation the coordinator applies to this round's answers
    certify: bool = False  # answer with the dual objective too (see PowerProposals)

    @staticmethod
    def per_station(round: int, horizon_start: int, agent_ids: tuple[str, ...], z_kw: np.ndarray,
                    u: np.ndarray, rho: float, done: bool = False,
                    alpha: float = 1.0, certify: bool = False) -> ConsensusTargets:
        """Targets as an edge node receives them: one z and u row per station, no zone rows."""
        return ConsensusTargets(round, horizon_start, agent_ids, np.arange(len(agent_ids)),
                                np.asarray(u, dtype=float), rho, done, None,
                                np.asarray(z_kw, dtype=float), alpha, certify)

    def __len__(self) -> int:
        return len(self.agent_ids)

    @property
    def horizon(self) -> int:
        return int(self.zone_u.shape[1])

    @property
    def u(self) -> np.ndarray:
        """[M, H] each station's scaled dual."""
        return self.zone_u[self.agent_zone]

    @property
    def price_signal(self) -> np.ndarray:
        """ρ·u: the unscaled dual, the marginal value of 1 kW of the shared budget [currency/kW]."""
        return self.rho * self.u

    def take(self, rows: np.ndarray | slice) -> ConsensusTargets:
        """The targets of some stations (a slice of them costs no copy)."""
        if isinstance(rows, slice):
            ids = self.agent_ids[rows]
        else:
            rows = np.asarray(rows, dtype=np.int64)
            ids = tuple(self.agent_ids[i] for i in rows)
        return replace(self, agent_ids=ids, agent_zone=self.agent_zone[rows],
                       z_kw=None if self.z_kw is None else self.z_kw[rows])

    def select(self, agent_ids: list[str]) -> ConsensusTargets:
        pos = {a: i for i, a in enumerate(self.agent_ids)}
        return self.take(np.array([pos[a] for a in agent_ids if a in pos], dtype=np.int64))


@dataclass(frozen=True)
class StationContext:
    """What a station's learned policy sees beyond its own EVs (``evgrid.agents.dispatch``):
    its size, and the city's signals at the period's start that no charger reports. The
    coordinator sends it with the state; in the optimisation it changes nothing."""

    chargers: int  # charging points of the station
    rated_kw: float  # Σ of its charger ratings [kW]
    price_scale: float  # the day's largest |price|
    demand_share: float  # demand charge now / the day's largest [0, 1]
    zone_peak_kw: float  # its zone's executed peak so far in the billing window [kW]
    zone_limit_kw: float  # its zone's limit now [kW]
    city_share: float  # city limit now / the city's Σ charger ratings
    day_left: float  # share of the day still to come [0, 1]


@dataclass(frozen=True)
class StationState:
    """One station's EVs over the horizon (rows = plugged-in EVs): what a period start tells a
    station (it travels in ``PeriodStart``, so it lives with the other messages)."""

    station_id: str
    horizon_start: int
    dt_h: float
    charger: np.ndarray  # [n] charger index each EV is on; < 0: a forecast's expected arrivals
    arrival_step: np.ndarray  # [n]
    departure_step: np.ndarray  # [n]
    upper_kw: np.ndarray  # [n, H] rate cap while plugged in, 0 after departure
    eta: np.ndarray  # [n]
    owed_kwh: np.ndarray  # [n]
    price_per_kwh: np.ndarray  # [H]
    carbon_kg_per_kwh: np.ndarray  # [H]
    context: StationContext | None = None  # for a learned policy (``evgrid.agents.dispatch``)

    @property
    def horizon(self) -> int:
        return int(self.price_per_kwh.size)
