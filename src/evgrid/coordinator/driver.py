"""One control period of ADMM, independent of how proposals travel (in-process, Ray, gRPC).

A *station transport* is anything that can hand targets to station agents and bring their
proposals back: a ``StationPack`` in this process, Ray actors, or gRPC streams to edge nodes.
The loop is the same for all three, which is what lets the tests hold them to one answer.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from evgrid.coordinator.admm import AdmmStats, PowerCoordinator
from evgrid.coordinator.messages import ConsensusTarget, PowerProposal, Registration


class StationTransport(Protocol):
    def registrations(self) -> list[Registration]: ...

    def begin_period(self, states: dict[str, Any]) -> None: ...

    def propose(self, targets: dict[str, ConsensusTarget]) -> dict[str, PowerProposal]:
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
        proposals = stations.propose({t.agent_id: t for t in targets})
        targets = coordinator.update(proposals)
        if not targets or targets[0].done:
            return coordinator.stats
