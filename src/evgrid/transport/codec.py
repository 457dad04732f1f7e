"""The one codec: dataclass ↔ protobuf for every agent message, and the checks on every
incoming one. The Ray path and the gRPC path both go through here, so a simulation and a
field deployment cannot drift apart.

Checks (each failure is a :class:`MessageError` with a gRPC-style status code name):
agent registered (UNAUTHENTICATED otherwise), round and horizon start current
(FAILED_PRECONDITION), arrays of the horizon's length with finite values, powers (plans, the
round-0 warm start, what it can use now) within [0, registered max_power_kw], participant
counts within [0, registered chargers], telemetry finite, non-negative and within the same
limits (INVALID_ARGUMENT). The registered terms are the coordinator's city file's, never the
station's (``check_claim``): a station can misstate nothing about itself but its answers, and
those are range-checked here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields

import numpy as np

from evgrid.coordinator.messages import (
    ConsensusTargets,
    PowerProposals,
    Registration,
    StationContext,
    StationState,
)
from evgrid.scenario.bounds import MAX_HORIZON_DAYS
from evgrid.transport.pb import coordinator_pb2 as pb

#: Relative slack on the registered power limit (float noise, not a violation).
LIMIT_RTOL = 1e-6
#: The most a kWh can be worth in a station's objective (the scenario schema's bound on
#: prices and penalties) and the most energy an EV can owe (its bound on batteries): a
#: station's objective and dual can be no larger in size than these allow for its rating and
#: chargers. A finite but absurd one (−1e12 for both) would make any gap look certified.
MAX_VALUE_PER_KWH = 1e4
MAX_OWED_KWH_PER_CHARGER = 2_000.0
#: Most charging points a station's context may claim (a site, not a city).
MAX_CHARGERS = 100_000


def objective_bound(reg: Registration, horizon: int, dt_h: float = 1.0) -> float:
    """The largest |objective| or |dual| station ``reg`` can report over ``horizon`` steps."""
    energy = reg.max_power_kw * horizon * dt_h + max(reg.chargers, 1) * MAX_OWED_KWH_PER_CHARGER
    return MAX_VALUE_PER_KWH * energy
#: Longest horizon a target batch may state [steps]: the longest run at the shortest control
#: period (1 min). A batch of no rows holds no values to bound it, and a stated H of 2**60 made
#: the decoder's reshape raise ValueError instead of refusing it (the protobuf fuzzer found it).
MAX_HORIZON_STEPS = MAX_HORIZON_DAYS * 24 * 60

#: Longest text of a refusal [characters]. The text travels back in the call's status (the
#: grpc-message trailer, percent-encoded: up to 12 bytes a character), and a client drops a
#: status whose metadata is over its limit (8 KiB soft, 16 KiB hard) and reports
#: RESOURCE_EXHAUSTED instead: a 100 kB grid_zone echoed in its refusal hid the refusal from the
#: station (the protobuf fuzzer found it), and every refusal was logged with all of it.
MAX_DETAIL_CHARS = 500

KINDS = {"station": pb.AGENT_KIND_STATION, "cohort": pb.AGENT_KIND_COHORT}


def clipped(text: str) -> str:
    """``text`` cut to ``MAX_DETAIL_CHARS`` (it may echo whatever the caller sent)."""
    if len(text) <= MAX_DETAIL_CHARS:
        return text
    return f"{text[:MAX_DETAIL_CHARS]}... ({len(text) - MAX_DETAIL_CHARS} more characters)"


class MessageError(ValueError):
    """An incoming message that must be refused; ``code`` names the gRPC status. The text is
    ``clipped``: it often quotes the message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(clipped(message))
        self.code = code


# -- registration -------------------------------------------------------------------------------
def registration_to_proto(reg: Registration) -> pb.RegisterRequest:
    return pb.RegisterRequest(agent_id=reg.agent_id, kind=KINDS[reg.kind], grid_zone=reg.grid_zone,
                              max_power_kw=reg.max_power_kw, slots=list(reg.slots),
                              chargers=reg.chargers)


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
        if not (np.isfinite(msg.max_power_kw) and msg.max_power_kw >= 0):  # 0: no charger yet
            raise MessageError("INVALID_ARGUMENT", f"max_power_kw {msg.max_power_kw} is not >= 0")
        if msg.chargers < 0:
            raise MessageError("INVALID_ARGUMENT", f"chargers {msg.chargers} is not >= 0")
    return Registration(agent_id=msg.agent_id, kind=kind, grid_zone=msg.grid_zone,
                        max_power_kw=msg.max_power_kw, slots=tuple(msg.slots),
                        chargers=int(msg.chargers))


def check_claim(claim: Registration, spec: Registration) -> None:
    """Refuse a registration whose terms differ from the city file's (INVALID_ARGUMENT): a
    station in the wrong grid zone would be given another feeder's power, one that overstates
    its rating would be allowed to ask for more than its chargers can take."""
    wrong = []
    if claim.grid_zone != spec.grid_zone:
        wrong.append(f"grid zone {claim.grid_zone!r} (the city file: {spec.grid_zone!r})")
    if not np.isclose(claim.max_power_kw, spec.max_power_kw, rtol=LIMIT_RTOL, atol=1e-9):
        wrong.append(f"max_power_kw {claim.max_power_kw:g} (the city file: {spec.max_power_kw:g})")
    if claim.chargers and spec.chargers and claim.chargers != spec.chargers:
        wrong.append(f"chargers {claim.chargers} (the city file: {spec.chargers})")
    if wrong:
        raise MessageError("INVALID_ARGUMENT",
                           f"{claim.agent_id!r} registered with " + ", ".join(wrong))


def check_telemetry(msg: pb.Telemetry, reg: Registration) -> None:
    """Refuse telemetry that is not finite, negative, or beyond the station's registered power
    or chargers (INVALID_ARGUMENT)."""
    for name in ("power_kw", "energy_owed_kwh"):
        v = getattr(msg, name)
        if not (math.isfinite(v) and v >= 0):
            raise MessageError("INVALID_ARGUMENT", f"telemetry {name} {v} is not finite and >= 0")
    if msg.power_kw > reg.max_power_kw * (1 + LIMIT_RTOL) + 1e-9:
        raise MessageError("INVALID_ARGUMENT", f"telemetry power_kw {msg.power_kw:g} is above "
                           f"the registered {reg.max_power_kw:g} kW")
    if msg.connected_evs < 0 or (reg.chargers and msg.connected_evs > reg.chargers):
        raise MessageError("INVALID_ARGUMENT", f"telemetry connected_evs {msg.connected_evs} is "
                           f"outside [0, {reg.chargers or 'inf'}]")
    if msg.step < -1:
        raise MessageError("INVALID_ARGUMENT", f"telemetry step {msg.step} is < -1")


# -- proposals ----------------------------------------------------------------------------------
def proposal_to_proto(p: PowerProposals, i: int) -> pb.Proposal:
    """One station's proposal (what an edge node sends on its stream)."""
    return pb.Proposal(round=p.round, agent_id=p.agent_ids[i], horizon_start=p.horizon_start,
                       plan_kw=p.plan_kw[i].tolist(),
                       participants=p.participants[i].astype(np.int64).tolist(),
                       objective=float(p.objective[i]), want_now_kw=float(p.want[i]),
                       start_kw=[] if p.start_kw is None else p.start_kw[i].tolist(),
                       dual_objective=(None if p.dual_objective is None
                                       else float(p.dual_objective[i])))


def proposals_to_proto(p: PowerProposals, *, with_participants: bool = True) -> pb.ProposalBatch:
    """Many stations' proposals in columns (what a Ray pack sends). Participant counts are
    fixed for a period, so they are left out once the receiver has them (a third of the bytes)."""
    return pb.ProposalBatch(
        round=p.round, horizon_start=p.horizon_start, horizon_steps=p.plan_kw.shape[1],
        agent_ids=list(p.agent_ids), plan_kw_f64=_f64(p.plan_kw),
        participants_i32=(np.ascontiguousarray(p.participants, dtype="<i4").tobytes()
                          if with_participants else b""),
        objective=p.objective.tolist(), want_now_kw=p.want.tolist(),
        start_kw_f64=b"" if p.start_kw is None else _f64(p.start_kw),
        dual_objective=[] if p.dual_objective is None else p.dual_objective.tolist())


def _f64(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype="<f8").tobytes()


def _array(raw: bytes, dtype: str, name: str) -> np.ndarray:
    """A little-endian array field; a byte count that is not whole values is refused."""
    size = np.dtype(dtype).itemsize
    if len(raw) % size:
        raise MessageError("INVALID_ARGUMENT", f"{name} has {len(raw)} bytes, not whole {dtype}")
    return np.frombuffer(raw, dtype=dtype)


def _check_sender(
    agent_ids: list[str], msg_round: int, msg_start: int, *, registry: Mapping[str, Registration],
    round: int, horizon_start: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Registered stations (UNAUTHENTICATED) answering the current round (FAILED_PRECONDITION);
    returns their registered power limits [kW] and charger counts (inf where not stated)."""
    caps = np.empty(len(agent_ids))
    chargers = np.empty(len(agent_ids))
    for k, a in enumerate(agent_ids):
        reg = registry.get(a)
        if reg is None or reg.kind != "station":
            raise MessageError("UNAUTHENTICATED", f"agent {a!r} is not a registered station")
        caps[k] = reg.max_power_kw
        chargers[k] = reg.chargers or np.inf
    if msg_round != round or msg_start != horizon_start:
        raise MessageError(
            "FAILED_PRECONDITION",
            f"proposal for round {msg_round} at step {msg_start} is stale: the "
            f"coordinator is at round {round}, step {horizon_start}",
        )
    return caps, chargers


def _decode_proposals(
    agent_ids: tuple[str, ...], limits: tuple[np.ndarray, np.ndarray], *, round: int,
    horizon_start: int, horizon: int, plan: np.ndarray, participants: np.ndarray,
    objective: Sequence[float], want: Sequence[float], start: np.ndarray,
    held: np.ndarray | None = None, dual: Sequence[float] = (),
) -> PowerProposals:
    """Check the values of M proposals at once (INVALID_ARGUMENT) and decode them. ``held``:
    the participant counts the receiver already holds (and checked) for these stations, used
    when the message leaves them out. ``dual`` (dual objectives) is optional: empty or M."""
    m = len(agent_ids)
    caps, chargers = limits
    cols: dict[str, np.ndarray] = {}
    fields: list[tuple[str, Sequence[float] | np.ndarray, bool]] = [("plan_kw", plan, True), ("objective", objective, False),
              ("want_now_kw", want, False)]
    if len(dual):
        fields.append(("dual_objective", dual, False))
    use_held = held is not None and not len(participants)
    if not use_held:
        fields.append(("participants", participants, True))
    # Round 0 answers carry the warm start they relaxed from; later rounds must not.
    if round == 0:
        fields.append(("start_kw", start, True))
    elif len(start):
        raise MessageError("INVALID_ARGUMENT", "start_kw is sent in round 0 only")
    for name, raw, per_step in fields:
        size = m * horizon if per_step else m
        values = np.asarray(raw, dtype=float)
        if values.size != size:
            raise MessageError("INVALID_ARGUMENT",
                               f"{name} has {values.size} values, {m} station(s) over a "
                               f"horizon of {horizon} need {size}")
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) // (horizon if per_step else 1)
            raise MessageError("INVALID_ARGUMENT",
                               f"{name} of {agent_ids[row]!r} holds NaN or infinite values")
        cols[name] = values.reshape(m, horizon) if per_step else values
    top = caps * (1 + LIMIT_RTOL) + 1e-9
    # A plan, and the warm start it relaxes from, are sums of EV profiles each within its
    # charger: never negative, never above the station's rating at any step (a 1e12 start_kw
    # was finite, and wrecked ρ and the duals for the rest of a day).
    for name in ("plan_kw", "start_kw"):
        if name not in cols:
            continue
        a = cols[name]
        out = (a.min(axis=1, initial=0.0) < -1e-9) | (a.max(axis=1, initial=0.0) > top)
        if out.any():
            k = int(np.flatnonzero(out)[0])
            raise MessageError(
                "INVALID_ARGUMENT",
                f"{name} spans [{a[k].min():.3f}, {a[k].max():.3f}] kW, outside the "
                f"registered [0, {caps[k]:g}] kW of {agent_ids[k]!r}",
            )
    plan_kw = cols["plan_kw"]
    if held is not None and use_held:
        if held.shape != (m, horizon):
            raise MessageError("INVALID_ARGUMENT", "participants held for another batch shape")
        cols["participants"] = held
    else:
        n = cols["participants"]
        bad = (n < 0).any(axis=1) | (n > chargers[:, None]).any(axis=1)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise MessageError("INVALID_ARGUMENT",
                               f"participants of {agent_ids[k]!r} are outside [0, "
                               f"{chargers[k]:g}] (its chargers)")
    for name in ("objective", "dual_objective"):
        if name in cols:
            n = np.where(np.isfinite(chargers), np.maximum(chargers, 1), 1)
            bound = MAX_VALUE_PER_KWH * (caps * horizon + n * MAX_OWED_KWH_PER_CHARGER)
            out = np.abs(cols[name]) > bound
            if out.any():
                k = int(np.flatnonzero(out)[0])
                raise MessageError("INVALID_ARGUMENT",
                                   f"{name} {cols[name][k]:g} of {agent_ids[k]!r} is beyond what "
                                   f"its rating and chargers allow (|x| <= {bound[k]:g})")
    want_kw = cols["want_now_kw"]
    out = (want_kw < 0) | (want_kw > top)
    if out.any():
        k = int(np.flatnonzero(out)[0])
        raise MessageError("INVALID_ARGUMENT",
                           f"want_now_kw {want_kw[k]} is outside [0, {caps[k]:g}] kW")
    return PowerProposals(
        round=round, horizon_start=horizon_start, agent_ids=agent_ids, plan_kw=plan_kw,
        participants=cols["participants"], objective=cols["objective"], want_kw=want_kw,
        start_kw=cols.get("start_kw"), dual_objective=cols.get("dual_objective"),
    )


def check_proposal(
    msg: pb.Proposal, *, registry: Mapping[str, Registration], round: int, horizon_start: int,
    horizon: int,
) -> PowerProposals:
    """Refuse a proposal that is unregistered, stale, malformed or beyond the agent's limit;
    return it decoded (one row).

    The same checks as a batch's (``_decode_proposals``), written for one row: an edge node's
    proposal arrives alone, a thousand of them a round, and the batch path's thirty small numpy
    calls cost the coordinator 0.26 ms each (0.07 ms here)."""
    sid = msg.agent_id
    reg = registry.get(sid)
    if reg is None or reg.kind != "station":
        raise MessageError("UNAUTHENTICATED", f"agent {sid!r} is not a registered station")
    if msg.round != round or msg.horizon_start != horizon_start:
        raise MessageError(
            "FAILED_PRECONDITION",
            f"proposal for round {msg.round} at step {msg.horizon_start} is stale: the "
            f"coordinator is at round {round}, step {horizon_start}")
    top = reg.max_power_kw * (1 + LIMIT_RTOL) + 1e-9
    if round != 0 and len(msg.start_kw):
        raise MessageError("INVALID_ARGUMENT", "start_kw is sent in round 0 only")
    per_step = {"plan_kw": msg.plan_kw, "participants": msg.participants}
    if round == 0:
        per_step["start_kw"] = msg.start_kw
    cols: dict[str, np.ndarray] = {}
    for name, raw in per_step.items():
        if len(raw) != horizon:
            raise MessageError("INVALID_ARGUMENT",
                               f"{name} has {len(raw)} values, 1 station(s) over a horizon of "
                               f"{horizon} need {horizon}")
        a = np.asarray(raw, dtype=float)
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if not (math.isfinite(lo) and math.isfinite(hi)):  # NaN propagates into min/max
            raise MessageError("INVALID_ARGUMENT", f"{name} of {sid!r} holds NaN or infinite "
                               "values")
        if name == "participants":
            chargers = reg.chargers or math.inf
            if lo < 0 or hi > chargers:
                raise MessageError("INVALID_ARGUMENT", f"participants of {sid!r} are outside "
                                   f"[0, {chargers:g}] (its chargers)")
        elif lo < -1e-9 or hi > top:
            raise MessageError("INVALID_ARGUMENT",
                               f"{name} spans [{lo:.3f}, {hi:.3f}] kW, outside the registered "
                               f"[0, {reg.max_power_kw:g}] kW of {sid!r}")
        cols[name] = a.reshape(1, horizon)
    scalars = [("objective", msg.objective), ("want_now_kw", msg.want_now_kw)]
    dual = msg.dual_objective if msg.HasField("dual_objective") else None
    if dual is not None:
        scalars.append(("dual_objective", dual))
    bound = objective_bound(reg, horizon)
    for name, v in scalars:
        if not math.isfinite(v):
            raise MessageError("INVALID_ARGUMENT", f"{name} of {sid!r} holds NaN or infinite "
                               "values")
        if name != "want_now_kw" and abs(v) > bound:
            raise MessageError("INVALID_ARGUMENT", f"{name} {v:g} of {sid!r} is beyond what "
                               f"its rating and chargers allow (|x| <= {bound:g})")
    if not 0 <= msg.want_now_kw <= top:
        raise MessageError("INVALID_ARGUMENT", f"want_now_kw {msg.want_now_kw} is outside "
                           f"[0, {reg.max_power_kw:g}] kW")
    return PowerProposals(
        round=round, horizon_start=horizon_start, agent_ids=(sid,), plan_kw=cols["plan_kw"],
        participants=cols["participants"], objective=np.array([msg.objective]),
        want_kw=np.array([msg.want_now_kw]), start_kw=cols.get("start_kw"),
        dual_objective=None if dual is None else np.array([dual]))


def proposals_from_proto(
    batch: pb.ProposalBatch, *, registry: Mapping[str, Registration], round: int,
    horizon_start: int, horizon: int, participants: np.ndarray | None = None,
) -> PowerProposals:
    """Decode and check a batch of proposals (the first bad station raises). A batch sent
    without participant counts takes ``participants`` (the receiver's copy from earlier in the
    period); without either it is refused like any short field."""
    ids = tuple(batch.agent_ids)
    limits = _check_sender(list(ids), batch.round, batch.horizon_start, registry=registry,
                           round=round, horizon_start=horizon_start)
    if len(set(ids)) != len(ids):
        raise MessageError("INVALID_ARGUMENT", "a station appears twice in one batch")
    return _decode_proposals(
        ids, limits, round=round, horizon_start=horizon_start, horizon=horizon,
        plan=_array(batch.plan_kw_f64, "<f8", "plan_kw"),
        participants=_array(batch.participants_i32, "<i4", "participants"), held=participants,
        objective=batch.objective, want=batch.want_now_kw,
        start=_array(batch.start_kw_f64, "<f8", "start_kw"), dual=batch.dual_objective)


# -- targets ------------------------------------------------------------------------------------
def target_to_proto(t: ConsensusTargets, i: int) -> pb.ConsensusTarget:
    """One station's target (what an edge node receives): its share z and its zone's u."""
    if t.z_kw is None:
        raise ValueError("these targets carry no per-station z (encode them with with_z=True)")
    u = t.zone_u[t.agent_zone[i]]
    return pb.ConsensusTarget(round=t.round, agent_id=t.agent_ids[i], horizon_start=t.horizon_start,
                              z_kw=t.z_kw[i].tolist(), u=u.tolist(), rho=t.rho,
                              price_signal=(t.rho * u).tolist(), done=t.done, alpha=t.alpha,
                              certify=t.certify)


def targets_to_proto(
    t: ConsensusTargets, *, with_z: bool = False, participants_known: bool = False
) -> pb.TargetBatch:
    """Many stations' targets: zone rows only, plus every z when ``with_z``;
    ``participants_known`` asks for answers without participant counts."""
    if t.zone_shift is None or (with_z and t.z_kw is None):
        raise ValueError("a target batch needs zone rows (and z_kw when with_z)")
    return pb.TargetBatch(
        round=t.round, horizon_start=t.horizon_start, horizon_steps=t.horizon,
        agent_ids=list(t.agent_ids), agent_zone=t.agent_zone.tolist(),
        zone_u_f64=_f64(t.zone_u), zone_shift_f64=_f64(t.zone_shift), rho=t.rho, done=t.done,
        alpha=t.alpha, participants_known=participants_known, certify=t.certify,
        z_kw_f64=_f64(t.z_kw) if with_z and t.z_kw is not None else b"")


def targets_from_proto(batch: pb.TargetBatch | list[pb.ConsensusTarget]) -> ConsensusTargets:
    """Decode targets (from the trusted coordinator: shapes checked, values finite)."""
    if isinstance(batch, list):  # an edge node's own target(s)
        if not batch:
            raise MessageError("INVALID_ARGUMENT", "empty target batch")
        first, ids, h = batch[0], tuple(m.agent_id for m in batch), len(batch[0].z_kw)
        # Each target's own rows (equal totals once let rows of 2, 3 and 1 steps through,
        # shuffled across stations), a finite penalty, and H = 0 a valid (empty) horizon.
        if any(len(m.z_kw) != h or len(m.u) != h for m in batch):
            raise MessageError("INVALID_ARGUMENT", "targets of unequal length")
        z = np.array([m.z_kw for m in batch], dtype=float).reshape(len(ids), h)
        u = np.array([m.u for m in batch], dtype=float).reshape(len(ids), h)
        if (not np.isfinite(z).all() or not np.isfinite(u).all()
                or not _penalty(first.rho) or not 0 < first.alpha < 2):
            raise MessageError("INVALID_ARGUMENT", "targets of unequal length, not finite, "
                               "with rho not finite and >= 0 or alpha outside (0, 2)")
        return ConsensusTargets.per_station(first.round, first.horizon_start, ids, z, u,
                                            first.rho, first.done, first.alpha, first.certify)
    return _targets_from_batch(batch)


def _targets_from_batch(batch: pb.TargetBatch) -> ConsensusTargets:
    ids, h = tuple(batch.agent_ids), int(batch.horizon_steps)
    zone = np.asarray(batch.agent_zone, dtype=np.int64)
    u = _array(batch.zone_u_f64, "<f8", "zone_u")
    shift = _array(batch.zone_shift_f64, "<f8", "zone_shift")
    z = _array(batch.z_kw_f64, "<f8", "z_kw") if batch.z_kw_f64 else None
    rows = u.size // h if h > 0 else 0
    # No station at all is a valid batch: every station was dropped from the period.
    if (h <= 0 or h > MAX_HORIZON_STEPS or zone.size != len(ids) or u.size != rows * h
            or shift.size != u.size or not _penalty(batch.rho) or not 0 < batch.alpha < 2
            or (zone.size and (zone.min() < 0 or zone.max() >= rows))
            or (z is not None and z.size != len(ids) * h)
            or not all(np.isfinite(a).all() for a in (u, shift, z) if a is not None)):
        raise MessageError("INVALID_ARGUMENT", "target batch of inconsistent shape or not finite")
    return ConsensusTargets(round=batch.round, horizon_start=batch.horizon_start, agent_ids=ids,
                            agent_zone=zone, zone_u=u.reshape(rows, h), rho=batch.rho,
                            done=batch.done, zone_shift=shift.reshape(rows, h),
                            z_kw=None if z is None else z.reshape(len(ids), h), alpha=batch.alpha,
                            certify=batch.certify)


def _penalty(rho: float) -> bool:
    """An ADMM penalty a station can solve with: finite and >= 0 (0 in a done target)."""
    return math.isfinite(rho) and rho >= 0


# -- station state (sim-in-the-loop) ------------------------------------------------------------
def state_to_proto(s: StationState) -> pb.StationState:
    return pb.StationState(
        agent_id=s.station_id, horizon_start=s.horizon_start, dt_h=s.dt_h,
        charger=s.charger.tolist(), arrival_step=s.arrival_step.tolist(),
        departure_step=s.departure_step.tolist(), horizon_steps=s.horizon,
        upper_kw=s.upper_kw.ravel().tolist(), eta=s.eta.tolist(), owed_kwh=s.owed_kwh.tolist(),
        price_per_kwh=s.price_per_kwh.tolist(), carbon_kg_per_kwh=s.carbon_kg_per_kwh.tolist(),
        context=None if s.context is None else pb.StationContext(**asdict(s.context)),
    )


def _context_from_proto(m: pb.StationContext) -> StationContext:
    """A learned policy's context: finite, sizes and limits not negative, shares in range (a
    NaN here would reach the network; the dispatch cleans its output, not its input)."""
    ctx = StationContext(**{f.name: getattr(m, f.name) for f in fields(StationContext)})
    values = [float(v) for v in asdict(ctx).values()]
    if (not all(map(math.isfinite, values)) or min(values) < 0 or ctx.chargers > MAX_CHARGERS
            or ctx.demand_share > 1 or ctx.day_left > 1):
        raise MessageError("INVALID_ARGUMENT", "station context not finite, negative, or with "
                           "a share outside [0, 1] or absurd charger count")
    return ctx


def state_from_proto(m: pb.StationState) -> StationState:
    """Decode a period's state (from the trusted coordinator: shapes checked, values finite,
    dt > 0). Every per-EV array has a row per charger entry and every per-step one H values:
    a single ``eta`` for two EVs was once broadcast over both, a short ``departure_step`` failed
    in the solve, and a NaN cap came back as a NaN plan (the protobuf fuzzer found them)."""
    n, h = len(m.charger), int(m.horizon_steps)
    upper = np.asarray(m.upper_kw, dtype=float)
    per_ev = (m.arrival_step, m.departure_step, m.eta, m.owed_kwh)
    if (upper.size != n * h or len(m.price_per_kwh) != h or len(m.carbon_kg_per_kwh) != h
            or any(len(a) != n for a in per_ev)):
        raise MessageError("INVALID_ARGUMENT", f"station state arrays do not match n={n}, H={h}")
    floats = (m.upper_kw, m.eta, m.owed_kwh, m.price_per_kwh, m.carbon_kg_per_kwh)
    if not (math.isfinite(m.dt_h) and m.dt_h > 0) or not all(map(_finite, floats)):
        raise MessageError("INVALID_ARGUMENT", "station state with dt_h not finite and > 0, "
                           "or values that are not finite")
    return StationState(
        station_id=m.agent_id, horizon_start=int(m.horizon_start), dt_h=m.dt_h,
        charger=np.asarray(m.charger, dtype=np.int64),
        arrival_step=np.asarray(m.arrival_step, dtype=np.int64),
        departure_step=np.asarray(m.departure_step, dtype=np.int64),
        upper_kw=upper.reshape(n, h), eta=np.asarray(m.eta, dtype=float),
        owed_kwh=np.asarray(m.owed_kwh, dtype=float),
        price_per_kwh=np.asarray(m.price_per_kwh, dtype=float),
        carbon_kg_per_kwh=np.asarray(m.carbon_kg_per_kwh, dtype=float),
        context=_context_from_proto(m.context) if m.HasField("context") else None,
    )


def check_state_claim(msg: pb.StationState, reg: Registration, *, horizon_start: int,
                      horizon: int) -> StationState:
    """A field station's claimed state, checked against its terms in the city file: for this
    period and horizon, no more EVs than it has chargers, each on one of them once, none
    able to draw more than the station's registered power, efficiencies in (0, 1], owed
    energy within what a battery holds, departures after the start (INVALID_ARGUMENT)."""
    st = state_from_proto(msg)
    n = st.charger.size
    why = ""
    if msg.agent_id != reg.agent_id:
        why = f"a claim for {msg.agent_id!r} on the stream of {reg.agent_id!r}"
    elif st.horizon_start != horizon_start or st.horizon != horizon:
        why = (f"a claim for step {st.horizon_start} over {st.horizon} steps; this period is "
               f"step {horizon_start} over {horizon}")
    elif n > max(reg.chargers, 0) or np.unique(st.charger).size != n or (
            n and (st.charger.min() < 0 or st.charger.max() >= reg.chargers)):
        why = f"{n} EVs on chargers {st.charger.tolist()[:10]}; it has {reg.chargers}"
    elif n and (st.upper_kw.min() < 0
                or st.upper_kw.max() > reg.max_power_kw * (1 + LIMIT_RTOL) + 1e-9):
        why = f"EV limits outside [0, the registered {reg.max_power_kw:g} kW]"
    elif n and not ((st.eta > 0).all() and (st.eta <= 1).all()):
        why = "charger efficiencies outside (0, 1]"
    elif n and not ((st.owed_kwh >= 0).all()
                    and (st.owed_kwh <= MAX_OWED_KWH_PER_CHARGER).all()):
        why = f"energy owed outside [0, {MAX_OWED_KWH_PER_CHARGER:g}] kWh per EV"
    elif n and (st.departure_step <= st.horizon_start).any():
        why = "an EV that has already left"
    if why:
        raise MessageError("INVALID_ARGUMENT", f"station state claim refused: {why}")
    return st


def _finite(values: object) -> bool:
    return bool(np.isfinite(np.asarray(values, dtype=float)).all())


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
