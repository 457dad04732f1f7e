"""The one codec: dataclass ↔ protobuf for every agent message, and the checks on every
incoming one. The Ray path and the gRPC path both go through here, so a simulation and a
field deployment cannot drift apart.

Checks (each failure is a :class:`MessageError` with a gRPC-style status code name):
agent registered (UNAUTHENTICATED otherwise), round and horizon start current
(FAILED_PRECONDITION), arrays of the horizon's length with finite values, powers within
[0, registered max_power_kw] (INVALID_ARGUMENT).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from evgrid.agents.station import StationState
from evgrid.coordinator.messages import ConsensusTargets, PowerProposals, Registration
from evgrid.transport.pb import coordinator_pb2 as pb

#: Relative slack on the registered power limit (float noise, not a violation).
LIMIT_RTOL = 1e-6

KINDS = {"station": pb.AGENT_KIND_STATION, "cohort": pb.AGENT_KIND_COHORT}


class MessageError(ValueError):
    """An incoming message that must be refused; ``code`` names the gRPC status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# -- registration -------------------------------------------------------------------------------
def registration_to_proto(reg: Registration) -> pb.RegisterRequest:
    return pb.RegisterRequest(agent_id=reg.agent_id, kind=KINDS[reg.kind], grid_zone=reg.grid_zone,
                              max_power_kw=reg.max_power_kw, slots=list(reg.slots))


def registration_from_proto(msg: pb.RegisterRequest, grid_zones: list[str]) -> Registration:
    kind = {v: k for k, v in KINDS.items()}.get(msg.kind)
    if not msg.agent_id:
        raise MessageError("INVALID_ARGUMENT", "agent_id is empty")
    if kind is None:
        raise MessageError("INVALID_ARGUMENT", f"kind {msg.kind} is not STATION or COHORT")
    if kind == "station":
        if msg.grid_zone not in grid_zones:
            raise MessageError("INVALID_ARGUMENT",
                               f"grid_zone {msg.grid_zone!r} is not one of {grid_zones}")
        if not (np.isfinite(msg.max_power_kw) and msg.max_power_kw > 0):
            raise MessageError("INVALID_ARGUMENT", f"max_power_kw {msg.max_power_kw} is not > 0")
    return Registration(agent_id=msg.agent_id, kind=kind, grid_zone=msg.grid_zone,
                        max_power_kw=msg.max_power_kw, slots=tuple(msg.slots))


# -- proposals ----------------------------------------------------------------------------------
def proposal_to_proto(p: PowerProposals, i: int) -> pb.Proposal:
    return pb.Proposal(round=p.round, agent_id=p.agent_ids[i], horizon_start=p.horizon_start,
                       power_kw=p.power_kw[i].tolist(), plan_kw=p.plan_kw[i].tolist(),
                       participants=int(p.participants[i]), objective=float(p.objective[i]),
                       want_now_kw=float(p.want[i]))


def proposals_to_proto(p: PowerProposals) -> pb.ProposalBatch:
    return pb.ProposalBatch(round=p.round, horizon_start=p.horizon_start,
                            proposals=[proposal_to_proto(p, i) for i in range(len(p))])


def check_proposal(
    msg: pb.Proposal, *, registry: Mapping[str, Registration], round: int, horizon_start: int,
    horizon: int,
) -> None:
    """Refuse a proposal that is unregistered, stale, malformed or beyond the agent's limit."""
    reg = registry.get(msg.agent_id)
    if reg is None or reg.kind != "station":
        raise MessageError("UNAUTHENTICATED", f"agent {msg.agent_id!r} is not a registered station")
    if msg.round != round or msg.horizon_start != horizon_start:
        raise MessageError(
            "FAILED_PRECONDITION",
            f"proposal for round {msg.round} at step {msg.horizon_start} is stale: the "
            f"coordinator is at round {round}, step {horizon_start}",
        )
    for name in ("power_kw", "plan_kw"):
        values = np.asarray(getattr(msg, name), dtype=float)
        if values.size != horizon:
            raise MessageError("INVALID_ARGUMENT",
                               f"{name} has {values.size} values, the horizon has {horizon}")
        if not np.isfinite(values).all():
            raise MessageError("INVALID_ARGUMENT", f"{name} holds NaN or infinite values")
        if name == "plan_kw":  # x̂ is a relaxation and may leave the box; x may not
            top = reg.max_power_kw * (1 + LIMIT_RTOL) + 1e-9
            if values.min(initial=0.0) < -1e-9 or values.max(initial=0.0) > top:
                raise MessageError(
                    "INVALID_ARGUMENT",
                    f"{name} spans [{values.min():.3f}, {values.max():.3f}] kW, outside the "
                    f"registered [0, {reg.max_power_kw:g}] kW of {msg.agent_id!r}",
                )
    if msg.participants < 0 or not np.isfinite(msg.objective):
        raise MessageError("INVALID_ARGUMENT", "participants < 0 or objective not finite")
    if not (np.isfinite(msg.want_now_kw) and 0 <= msg.want_now_kw
            <= reg.max_power_kw * (1 + LIMIT_RTOL) + 1e-9):
        raise MessageError(
            "INVALID_ARGUMENT",
            f"want_now_kw {msg.want_now_kw} is outside [0, {reg.max_power_kw:g}] kW",
        )


def proposals_from_proto(
    batch: pb.ProposalBatch, *, registry: Mapping[str, Registration], round: int,
    horizon_start: int, horizon: int,
) -> PowerProposals:
    """Decode and check every proposal of a batch (the first bad one raises)."""
    for msg in batch.proposals:
        check_proposal(msg, registry=registry, round=round, horizon_start=horizon_start,
                       horizon=horizon)
    msgs = list(batch.proposals)
    shape = (len(msgs), horizon)
    return PowerProposals(
        round=round, horizon_start=horizon_start, agent_ids=tuple(m.agent_id for m in msgs),
        power_kw=np.array([m.power_kw for m in msgs], dtype=float).reshape(shape),
        plan_kw=np.array([m.plan_kw for m in msgs], dtype=float).reshape(shape),
        participants=np.array([m.participants for m in msgs], dtype=np.int64),
        objective=np.array([m.objective for m in msgs], dtype=float),
        want_kw=np.array([m.want_now_kw for m in msgs], dtype=float),
    )


# -- targets ------------------------------------------------------------------------------------
def target_to_proto(t: ConsensusTargets, i: int) -> pb.ConsensusTarget:
    return pb.ConsensusTarget(round=t.round, agent_id=t.agent_ids[i], horizon_start=t.horizon_start,
                              z_kw=t.z_kw[i].tolist(), u=t.u[i].tolist(), rho=t.rho,
                              price_signal=(t.rho * t.u[i]).tolist(), done=t.done)


def targets_to_proto(t: ConsensusTargets) -> pb.TargetBatch:
    return pb.TargetBatch(round=t.round, horizon_start=t.horizon_start,
                          targets=[target_to_proto(t, i) for i in range(len(t))])


def targets_from_proto(batch: pb.TargetBatch | list[pb.ConsensusTarget]) -> ConsensusTargets:
    """Decode targets (from the trusted coordinator: shapes checked, values finite)."""
    msgs = list(batch.targets) if isinstance(batch, pb.TargetBatch) else list(batch)
    if not msgs:
        raise MessageError("INVALID_ARGUMENT", "empty target batch")
    h = len(msgs[0].z_kw)
    z = np.array([m.z_kw for m in msgs], dtype=float)
    u = np.array([m.u for m in msgs], dtype=float)
    if z.shape != (len(msgs), h) or u.shape != z.shape or not np.isfinite(z).all() or not np.isfinite(u).all():
        raise MessageError("INVALID_ARGUMENT", "targets of unequal length or not finite")
    first = msgs[0]
    return ConsensusTargets(round=first.round, horizon_start=first.horizon_start,
                            agent_ids=tuple(m.agent_id for m in msgs), z_kw=z, u=u, rho=first.rho,
                            done=first.done)


# -- station state (sim-in-the-loop) ------------------------------------------------------------
def state_to_proto(s: StationState) -> pb.StationState:
    return pb.StationState(
        agent_id=s.station_id, horizon_start=s.horizon_start, dt_h=s.dt_h,
        charger=s.charger.tolist(), arrival_step=s.arrival_step.tolist(),
        departure_step=s.departure_step.tolist(), horizon_steps=s.horizon,
        upper_kw=s.upper_kw.ravel().tolist(), eta=s.eta.tolist(), owed_kwh=s.owed_kwh.tolist(),
        price_per_kwh=s.price_per_kwh.tolist(), carbon_kg_per_kwh=s.carbon_kg_per_kwh.tolist(),
    )


def state_from_proto(m: pb.StationState) -> StationState:
    n, h = len(m.charger), int(m.horizon_steps)
    upper = np.asarray(m.upper_kw, dtype=float)
    if upper.size != n * h or len(m.price_per_kwh) != h or len(m.owed_kwh) != n:
        raise MessageError("INVALID_ARGUMENT", f"station state arrays do not match n={n}, H={h}")
    return StationState(
        station_id=m.agent_id, horizon_start=int(m.horizon_start), dt_h=m.dt_h,
        charger=np.asarray(m.charger, dtype=np.int64),
        arrival_step=np.asarray(m.arrival_step, dtype=np.int64),
        departure_step=np.asarray(m.departure_step, dtype=np.int64),
        upper_kw=upper.reshape(n, h), eta=np.asarray(m.eta, dtype=float),
        owed_kwh=np.asarray(m.owed_kwh, dtype=float),
        price_per_kwh=np.asarray(m.price_per_kwh, dtype=float),
        carbon_kg_per_kwh=np.asarray(m.carbon_kg_per_kwh, dtype=float),
    )


# -- executed set-points (edge -> coordinator) --------------------------------------------------
def executed_to_proto(
    agent_id: str, step: int, charger: np.ndarray, power_kw: np.ndarray, envelope_kw: np.ndarray
) -> pb.SetpointSchedule:
    """What a station executed at ``step``; ``envelope_kw`` echoes the z it agreed (its fallback)."""
    agreed = max(float(envelope_kw[0]), 0.0) if len(envelope_kw) else 0.0
    return pb.SetpointSchedule(agent_id=agent_id, step=step, charger=np.asarray(charger).tolist(),
                               power_kw=np.asarray(power_kw, dtype=float).tolist(),
                               agreed_kw=agreed, envelope_kw=np.asarray(envelope_kw).tolist())


def check_executed(msg: pb.SetpointSchedule, *, state: StationState, agreed_kw: float) -> np.ndarray:
    """Refuse set-points for other chargers or another step, or beyond the EV caps or the
    agreed power; return them as an array [kW] in the order of ``state.charger``."""
    if msg.step != state.horizon_start:
        raise MessageError("FAILED_PRECONDITION",
                           f"set-points for step {msg.step}, the period is at {state.horizon_start}")
    if list(msg.charger) != state.charger.tolist():
        raise MessageError("INVALID_ARGUMENT",
                           f"set-points for chargers {list(msg.charger)}, the station has "
                           f"{state.charger.tolist()} this period")
    kw = np.asarray(msg.power_kw, dtype=float)
    if kw.size != state.charger.size or not np.isfinite(kw).all():
        raise MessageError("INVALID_ARGUMENT", "power_kw has the wrong length or is not finite")
    cap = state.upper_kw[:, 0] if state.horizon else np.zeros(kw.size)
    if (kw < -1e-9).any() or (kw > cap * (1 + LIMIT_RTOL) + 1e-9).any():
        raise MessageError("INVALID_ARGUMENT", "a set-point is negative or above its EV's cap")
    if kw.sum() > max(agreed_kw, 0.0) * (1 + LIMIT_RTOL) + 1e-6:
        raise MessageError("INVALID_ARGUMENT",
                           f"set-points sum to {kw.sum():.3f} kW, above the agreed {agreed_kw:.3f} kW")
    return kw
