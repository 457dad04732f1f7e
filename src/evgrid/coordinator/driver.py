"""One control period of ADMM, independent of how proposals travel (in-process, Ray, gRPC).

A *station transport* is anything that can hand targets to station agents and bring their
proposals back: a ``StationPack`` in this process, Ray actors, or gRPC streams to edge nodes.
The loop is the same for all three, which is what lets the tests hold them to one answer.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from evgrid.coordinator.admm import AdmmStats, PowerCoordinator
from evgrid.coordinator.messages import ConsensusTargets, PowerProposals, Registration


class StationTransport(Protocol):
    def registrations(self) -> list[Registration]: ...

    def begin_period(self, states: dict[str, Any]) -> None: ...

    def propose(self, targets: ConsensusTargets) -> PowerProposals:
        """Proposals of the stations that answered in time (missing ones are allowed)."""
        ...

    def finish_period(
        self, agreed_kw: dict[str, float] | None = None
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]: ...


def solve_period(
    coordinator: PowerCoordinator,
    stations: StationTransport,
    *,
    horizon_start: int,
    zone_limit_kw: np.ndarray,
    city_limit_kw: np.ndarray,
) -> AdmmStats:
    """Run ADMM rounds until the coordinator says done; return its statistics."""
    targets = coordinator.begin(horizon_start, zone_limit_kw, city_limit_kw)
    while True:
        targets = coordinator.update(stations.propose(targets))
        if targets.done:
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

    def registrations(self) -> list[Registration]:
        return [r for part in self.parts for r in part.registrations()]

    def begin_period(self, states: dict[str, Any]) -> None:
        for i, part in enumerate(self.parts):
            part.begin_period({a: s for a, s in states.items() if self.owner.get(a) == i})

    def propose(self, targets: ConsensusTargets) -> PowerProposals:
        answers = []
        for i, part in enumerate(self.parts):
            mine = [a for a in targets.agent_ids if self.owner.get(a) == i]
            if mine:
                answers.append(part.propose(targets.select(mine)))
        return PowerProposals.concat(answers, round=targets.round,
                                     horizon_start=targets.horizon_start,
                                     horizon=targets.horizon)

    def finish_period(
        self, agreed_kw: dict[str, float] | None = None
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for i, part in enumerate(self.parts):
            mine = None if agreed_kw is None else {
                a: v for a, v in agreed_kw.items() if self.owner.get(a) == i}
            out.update(part.finish_period(mine))
        return out
