"""One station agent as an edge node runs it: a ``StationAgent`` (a pack of one) plus its fallback.

Pure numpy (no grpc): ``evgrid.transport.grpc_station`` feeds it the coordinator's messages.

Fallback rule (``evgrid.coordinator.fallback``, which the coordinator reserves exactly): a
station that cannot reach the coordinator keeps charging, least laxity first (or by its learned
policy, ``StationConfig.policy_dir``, never above the same budget), inside the *last
envelope it was sent* (the executable profile of its last finished period: with every other
station's envelope of that period it meets every zone and city limit), and past its end inside
its *safe share* (its rated power's share of its zone's and the city's limits), never above
either; at the step of a period it saw start but never finish, it draws nothing.
"""

from __future__ import annotations

import numpy as np

from evgrid.agents.station import (
    Dispatch,
    StationAgent,
    StationConfig,
    StationState,
    setpoints_within,
)
from evgrid.coordinator.fallback import Envelope, fallback_budget_kw
from evgrid.coordinator.messages import ConsensusTargets, PowerProposals, Registration


def fallback_schedule(
    state: StationState, envelope: Envelope, step: int, safe_kw: float = 0.0,
    dispatch: Dispatch = setpoints_within,
) -> tuple[np.ndarray, np.ndarray]:
    """The link-down schedule at ``step``: LLF (or the station's learned ``dispatch``) within
    the fallback budget (module docstring); ``safe_kw`` is the station's safe share at
    ``step``."""
    budget = float(fallback_budget_kw(envelope, np.array([safe_kw]), step)[0])
    return dispatch(state, budget)


class EdgeStation:
    """A single station agent driven by coordinator messages (see module docstring).

    It wraps a ``StationAgent`` (a ``StationPack`` of one), so its proposals are bit-for-bit
    those of the same station inside an in-process pack; it adds the memory of the last
    envelope that the fallback needs, and its safe share per simulation step
    (``safe_share_kw[step]``; 0 past its end, and everywhere when not given).
    """

    def __init__(
        self,
        station_id: str,
        grid_zone: str,
        max_power_kw: float,
        config: StationConfig | None = None,
        *,
        chargers: int = 0,
        safe_share_kw: np.ndarray | None = None,
    ) -> None:
        self.station_id = station_id
        self.pack = StationAgent(station_id, grid_zone, max_power_kw, config, chargers=chargers)
        self.envelope = Envelope.none()  # last agreed z [kW per step] and its start step
        self.safe_share_kw = np.zeros(0) if safe_share_kw is None else np.asarray(safe_share_kw)
        self.state: StationState | None = None  # this period's local state
        # The step of a period that started and was not finished (no done target): the
        # coordinator may have given this station's room at that step to others.
        self.pending_step = -1

    @property
    def registration(self) -> Registration:
        return self.pack.registrations()[0]

    def safe_kw(self, step: int) -> float:
        return float(self.safe_share_kw[step]) if 0 <= step < self.safe_share_kw.size else 0.0

    def on_period(self, state: StationState, target0: ConsensusTargets) -> PowerProposals:
        """Load a new period's state and answer its round-0 target (one message, not two)."""
        if state.station_id != self.station_id:
            raise ValueError(f"state for {state.station_id!r} sent to station {self.station_id!r}")
        self.state = state
        self.pending_step = state.horizon_start
        self.pack.begin_period({self.station_id: state})
        return self.pack.propose(target0)

    def on_target(self, targets: ConsensusTargets) -> PowerProposals:
        """One ADMM x-update against the coordinator's next target."""
        if self.state is None:
            raise RuntimeError("a target arrived before any period start")
        return self.pack.propose(targets)

    def on_done(self, targets: ConsensusTargets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Execute the agreement: (charger indices, kW, envelope z [kW per step]).

        The agreed power for this step is max(z[0], 0), as in ``CoordinatedPolicy``; z over
        the whole horizon becomes the fallback envelope.
        """
        if self.state is None or targets.z_kw is None:
            raise RuntimeError("a done target arrived before any period start")
        z = np.asarray(targets.z_kw[0], dtype=float).copy()
        agreed = max(float(z[0]), 0.0) if z.size else 0.0
        chargers, kw = self.pack.finish_period({self.station_id: agreed})[self.station_id]
        self.envelope = Envelope(targets.horizon_start, z)
        self.pending_step = -1
        return chargers, kw, z

    def fallback(
        self, step: int, state: StationState | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Link down: LLF at ``step`` within the fallback budget (default: last state). At the
        step of a period it saw start but never finish it draws nothing: the agreement it
        missed may have handed its room to others, and its old envelope is reserved for it only
        from the next period on."""
        st = state if state is not None else self.state
        if st is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        if step == self.pending_step:
            return st.charger, np.zeros(st.charger.size)
        return fallback_schedule(st, self.envelope, step, self.safe_kw(step),
                                 self.pack.dispatch or setpoints_within)
