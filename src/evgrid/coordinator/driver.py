"""One control period of ADMM, independent of how proposals travel (in-process, Ray, gRPC).

A *station transport* is anything that can hand targets to station agents and bring their
proposals back: a ``StationPack`` in this process, Ray actors, or gRPC streams to edge nodes.
A *coordinator* is the ADMM side: ``PowerCoordinator`` in this process, or a proxy for one in
a Ray actor. The loop is the same for all of them, which is what lets the tests hold them to
one answer; the two protocols below say what each side must offer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from evgrid.coordinator.admm import AdmmConfig, AdmmStats, CoordinatorState
from evgrid.coordinator.demand import DemandCharge
from evgrid.coordinator.messages import ConsensusTargets, PowerProposals, Registration

#: Each station's executed set-points: station id -> (charger indices, kW per charger).
Executed = dict[str, tuple[np.ndarray, np.ndarray]]
#: Each EV's warm start: (station, charger, arrival step, departure step) -> (step planned at,
#: plan [kW per step from then on]).
WarmStarts = dict[tuple[str, int, int, int], tuple[int, np.ndarray]]


@dataclass(frozen=True)
class WarmTable:
    """Warm starts as a few arrays, the form they travel and are checkpointed in: a thousand
    small plans pickled one by one cost a Ray pack ≈15 ms a period, these ≈1 ms."""

    station: np.ndarray  # [n] str
    key: np.ndarray  # [n, 4] int64: charger, arrival step, departure step, step planned at
    plan_kw: np.ndarray  # every plan, one after the other [kW per step]
    length: np.ndarray  # [n] int64: steps of each plan

    @staticmethod
    def from_dict(warm: WarmStarts) -> WarmTable:
        keys = list(warm)
        plans = [warm[k][1] for k in keys]
        return WarmTable(
            station=np.array([k[0] for k in keys], dtype=str),
            key=np.array([[k[1], k[2], k[3], warm[k][0]] for k in keys],
                         dtype=np.int64).reshape(-1, 4),
            plan_kw=np.concatenate(plans).astype(float) if plans else np.zeros(0),
            length=np.array([p.size for p in plans], dtype=np.int64))

    def to_dict(self) -> WarmStarts:
        plans = np.split(self.plan_kw, np.cumsum(self.length)[:-1]) if self.length.size else []
        return {(str(s), int(c), int(a), int(d)): (int(t), kw)
                for s, (c, a, d, t), kw in zip(self.station, self.key, plans, strict=True)}

    @staticmethod
    def concat(tables: list[WarmTable]) -> WarmTable:
        tables = [t for t in tables if t.length.size]
        if not tables:
            return WarmTable.from_dict({})
        return WarmTable(*(np.concatenate([getattr(t, f) for t in tables])
                           for f in ("station", "key", "plan_kw", "length")))

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}{f}": getattr(self, f) for f in ("station", "key", "plan_kw", "length")}

    @staticmethod
    def from_arrays(arrays: Mapping[str, np.ndarray], prefix: str) -> WarmTable:
        return WarmTable(*(np.asarray(arrays[f"{prefix}{f}"])
                           for f in ("station", "key", "plan_kw", "length")))


class CoordinatorLost(RuntimeError):
    """The coordinator went away mid-period (a Ray actor died). Nothing of the period was
    executed yet: recover it (``Coordinator.recover``) and solve the period again."""


@dataclass
class TransportStats:
    """What a transport refused, missed or executed on a station's behalf (KPIs and logs)."""

    refused: dict[str, int] = field(default_factory=dict)  # status code -> messages refused
    late_proposals: int = 0  # answers that arrived after their round's deadline (dropped)
    fallbacks: int = 0  # station-periods executed on a silent station's behalf

    def refuse(self, code: str) -> None:
        self.refused[code] = self.refused.get(code, 0) + 1

    def merge(self, other: TransportStats) -> TransportStats:
        refused = dict(self.refused)
        for k, v in other.refused.items():
            refused[k] = refused.get(k, 0) + v
        return TransportStats(refused, self.late_proposals + other.late_proposals,
                              self.fallbacks + other.fallbacks)


class StationTransport(Protocol):
    """Station agents, wherever they run (module docstring)."""

    @property
    def stats(self) -> TransportStats: ...

    def registrations(self) -> list[Registration]: ...

    def begin_period(self, states: Mapping[str, Any], *,
                     optional: frozenset[str] = frozenset()) -> None:
        """Hand each station its period's state; ``optional`` stations (on probation) are
        waited for only ``probation_grace``."""
        ...

    def unreachable(self) -> set[str]:
        """Stations known to be gone for this period (no link, dead actor): not worth asking."""
        ...

    def propose(
        self, targets: ConsensusTargets, *, optional: frozenset[str] = frozenset()
    ) -> PowerProposals:
        """Proposals of the stations that answered in time (missing ones are allowed).
        Stations in ``optional`` are waited for only ``probation_grace``."""
        ...

    def finish_period(
        self, agreed_kw: Mapping[str, float] | None = None,
        envelopes: Mapping[str, np.ndarray] | None = None,
        *, optional: frozenset[str] = frozenset(),
    ) -> Executed:
        """Execute the agreed power of the first step; ``envelopes`` (executable over the
        horizon, agreed power first) is what an edge node keeps to fall back on. ``optional``
        stations (dropped this period) are waited for only ``probation_grace``."""
        ...

    def warm_starts(self) -> WarmTable:
        """The warm starts this side holds (for a checkpoint; edge nodes keep their own)."""
        ...

    def unconfirmed(self) -> set[str]:
        """Stations whose last done target went unanswered: they may hold either envelope."""
        ...

    def load_warm_starts(self, warm: WarmTable) -> None: ...


class Coordinator(Protocol):
    """The ADMM coordinator's side, as ``CoordinatedPolicy`` drives it."""

    grid_ids: list[str]
    config: AdmmConfig

    @property
    def stats(self) -> AdmmStats: ...

    def register(self, reg: Registration) -> None: ...

    def begin(
        self, horizon_start: int, zone_limit_kw: np.ndarray, city_limit_kw: np.ndarray,
        *, absent: Iterable[str] = (), demand: DemandCharge | None = None,
    ) -> ConsensusTargets: ...

    def update(self, proposals: PowerProposals) -> ConsensusTargets: ...

    def settle(self) -> tuple[dict[str, float], dict[str, np.ndarray]]: ...

    def unconfirmed(self, agent_ids: Iterable[str]) -> None: ...

    def state(self) -> CoordinatorState: ...

    def restore(self, state: CoordinatorState) -> None: ...


def probation_grace(elapsed_s: float) -> float:
    """How long stations on probation (dropped last period) are waited for once the others
    have answered: as long again as those took, at least 50 ms. A station that hangs then costs
    a round at most twice the others' time, instead of a round timeout every round; one that is
    merely slow still gets in (not waiting at all dropped every station on probation again)."""
    return max(elapsed_s, 0.05)


def solve_period(
    coordinator: Coordinator,
    stations: StationTransport,
    *,
    horizon_start: int,
    zone_limit_kw: np.ndarray,
    city_limit_kw: np.ndarray,
    optional: frozenset[str] = frozenset(),
    demand: DemandCharge | None = None,
) -> AdmmStats:
    """Run ADMM rounds until the coordinator says done; return its statistics.

    Stations the transport knows to be unreachable are dropped before round 0; ``optional``
    ones (dropped last period: on probation) are waited for only ``probation_grace`` once the
    others have answered, so a station that hangs costs its round timeouts once, not every
    period.
    """
    targets = coordinator.begin(horizon_start, zone_limit_kw, city_limit_kw,
                                absent=stations.unreachable(), demand=demand)
    while not targets.done:
        targets = coordinator.update(stations.propose(targets, optional=optional))
    return coordinator.stats


class MixedStations:
    """Several transports as one: e.g. Ray-actor stations plus gRPC edge stations.

    Each part hosts a disjoint set of stations; targets are split by agent id and the
    proposals concatenated, so the coordinator sees one population.
    """

    def __init__(self, parts: list[StationTransport]) -> None:
        self.parts = parts
        self.owner: dict[str, int] = {}
        for i, part in enumerate(parts):
            for reg in part.registrations():
                if reg.agent_id in self.owner:
                    raise ValueError(f"station {reg.agent_id!r} is hosted twice")
                self.owner[reg.agent_id] = i

    @property
    def stats(self) -> TransportStats:
        total = TransportStats()
        for part in self.parts:
            total = total.merge(part.stats)
        return total

    def registrations(self) -> list[Registration]:
        return [r for part in self.parts for r in part.registrations()]

    def begin_period(self, states: Mapping[str, Any], *,
                     optional: frozenset[str] = frozenset()) -> None:
        for i, part in enumerate(self.parts):
            part.begin_period({a: s for a, s in states.items() if self.owner.get(a) == i},
                              optional=optional)

    def unreachable(self) -> set[str]:
        return set().union(*(part.unreachable() for part in self.parts))

    def warm_starts(self) -> WarmTable:
        return WarmTable.concat([part.warm_starts() for part in self.parts])

    def unconfirmed(self) -> set[str]:
        return set().union(*(part.unconfirmed() for part in self.parts))

    def load_warm_starts(self, warm: WarmTable) -> None:
        for part in self.parts:
            part.load_warm_starts(warm)

    def propose(
        self, targets: ConsensusTargets, *, optional: frozenset[str] = frozenset()
    ) -> PowerProposals:
        answers = []
        for i, part in enumerate(self.parts):
            mine = [a for a in targets.agent_ids if self.owner.get(a) == i]
            if mine:
                answers.append(part.propose(targets.select(mine), optional=optional))
        return PowerProposals.concat(answers, round=targets.round,
                                     horizon_start=targets.horizon_start,
                                     horizon=targets.horizon)

    def finish_period(
        self, agreed_kw: Mapping[str, float] | None = None,
        envelopes: Mapping[str, np.ndarray] | None = None,
        *, optional: frozenset[str] = frozenset(),
    ) -> Executed:
        out: Executed = {}
        for i, part in enumerate(self.parts):
            def mine(d: Mapping[str, Any] | None, i: int = i) -> dict[str, Any] | None:
                return None if d is None else {a: v for a, v in d.items()
                                               if self.owner.get(a) == i}
            out.update(part.finish_period(mine(agreed_kw), mine(envelopes), optional=optional))
        return out
