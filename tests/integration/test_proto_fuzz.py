"""Every protobuf message the coordinator accepts, fuzzed: at the codec (each decoder, many
examples) and on a real server (Register, an Exchange stream's first and later messages).

Why: each incoming message is decoded and checked in ``evgrid.transport.codec``, and a refusal
there is a ``MessageError`` whose code the server sends as the call's status. Any other
exception slips past the handling meant for refusals: on the gRPC path it becomes UNKNOWN (or,
in a stream's reader, a silent hang-up), on the Ray path it fails the round instead of counting
one station missing, on the edge side it is no longer the "bad message: resync" it should be.
And what a decoder lets through is what ADMM computes with, so it must be finite and within the
registered limits, whatever a broken or hostile sender put on the wire.

Two kinds of input: messages built field by field from hypothesis strategies (extreme numbers,
NaN and infinities, subnormals, wrong lengths, odd byte counts, huge and odd strings), and
bytes (random, or a valid message's bytes damaged) parsed as the receiver parses them. Numpy
runs with ``errstate(all="raise")`` and warnings are errors inside the properties, so a silent
overflow or an invalid operation is found as well. Nothing of ours is mocked.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import grpc
import numpy as np
import pytest
from google.protobuf.message import DecodeError, Message
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from evgrid.agents.station import StationState
from evgrid.coordinator.messages import ConsensusTargets, PowerProposals, Registration
from evgrid.transport import codec
from evgrid.transport.codec import LIMIT_RTOL, MessageError
from evgrid.transport.grpc_server import create_server
from evgrid.transport.pb import coordinator_pb2 as pb
from tests.grpc_harness import MD, TOKEN, EdgeLoop, roster, wait_until

pytestmark = pytest.mark.grpc

T = TypeVar("T")
M = TypeVar("M", bound=Message)

REGISTER = "/evgrid.v1.CoordinatorService/Register"
EXCHANGE = "/evgrid.v1.CoordinatorService/Exchange"

#: Statuses a refusal may carry: each says what the caller did wrong. UNKNOWN and INTERNAL
#: say an exception escaped our code, OK in a MessageError would be a refusal that is not one.
REFUSALS = frozenset({
    "INVALID_ARGUMENT", "FAILED_PRECONDITION", "PERMISSION_DENIED", "UNAUTHENTICATED",
    "NOT_FOUND", "ALREADY_EXISTS", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "OUT_OF_RANGE",
})
assert set(grpc.StatusCode.__members__) >= REFUSALS
SERVER_OUTCOMES = frozenset({grpc.StatusCode.OK} | {grpc.StatusCode[n] for n in REFUSALS})


def top_kw(cap: float) -> float:
    """The most power the codec lets through for a rating (float noise is no violation)."""
    return cap * (1 + LIMIT_RTOL) + 1e-9


# -- the coordinator's side: a small city file --------------------------------------------------
ZONES = ["z1", "z2"]
REGISTRY: dict[str, Registration] = {
    "s1": Registration("s1", "station", "z1", 22.0, chargers=4),
    "s2": Registration("s2", "station", "z2", 350.0),  # chargers not stated: no EV bound
    "tiny": Registration("tiny", "station", "z1", 1e-3, chargers=1),
    "c1": Registration("c1", "cohort", slots=("mall/p1",)),  # no station: may not propose
}
STATIONS = [r for r in REGISTRY.values() if r.kind == "station"]
#: (round, horizon start, horizon) the coordinator is at; horizon 0 and round 0 (start_kw) too.
CONTEXTS = [(0, 40, 4), (3, 40, 4), (1, 7, 1), (0, 0, 0), (2, 96, 0)]


def _state(sid: str, n: int, h: int, start: int) -> StationState:
    """A fixed station state: n EVs over h steps, caps of 11 kW until they leave."""
    departure = start + 1 + np.arange(n) % max(h, 1)
    steps = np.arange(h)[None, :]
    return StationState(
        station_id=sid, horizon_start=start, dt_h=0.25, charger=np.arange(n) + 3,
        arrival_step=np.full(n, start - 2), departure_step=departure,
        upper_kw=np.where(steps < (departure - start)[:, None], 11.0, 0.0),
        eta=np.full(n, 0.95), owed_kwh=np.linspace(5.0, 30.0, n),
        price_per_kwh=np.linspace(0.1, 0.3, h), carbon_kg_per_kwh=np.full(h, 0.3))


#: The period states set-points are checked against: EVs, none, and a horizon of 0 steps.
STATES = [_state("s1", 3, 4, 40), _state("s2", 0, 4, 40), _state("s1", 2, 0, 12)]


# -- strategies ---------------------------------------------------------------------------------
SPECIAL_FLOATS = (
    math.nan, math.inf, -math.inf, sys.float_info.max, -sys.float_info.max, 1e308, -1e308,
    -0.0, 0.0, 5e-324, -5e-324, sys.float_info.min, 1e-9, -1e-9, -1e-12, 1.0, 11.0, 22.0,
    22.0 * (1 + 2e-6), 350.0, 1e12,
)
INT64_EDGES = (0, 1, -1, 2, 4, 40, 2**31 - 1, -(2**31), 2**31, 2**63 - 1, -(2**63))
INT32_EDGES = (0, 1, -1, 2, 3, 2**31 - 1, -(2**31))

special_floats = st.sampled_from(SPECIAL_FLOATS)
any_floats = st.one_of(special_floats, st.floats())
int64s = st.one_of(st.sampled_from(INT64_EDGES), st.integers(-(2**63), 2**63 - 1))
int32s = st.one_of(st.sampled_from(INT32_EDGES), st.integers(-(2**31), 2**31 - 1))
names = st.one_of(
    st.sampled_from(["", "s1", "s2", "tiny", "c1", "s9", "z1", "z2", " s1", "s1\x00", "é☃𝄞"]),
    st.text(max_size=12),
    st.sampled_from(["x" * 100_000, "𝄞" * 30_000]),  # 𝄞: 4 bytes of UTF-8, 12 percent-encoded
)


@functools.cache
def values(n: int, clean: st.SearchStrategy[Any], dirty: st.SearchStrategy[Any] = any_floats,
           ) -> st.SearchStrategy[list[Any]]:
    """n values, mostly of the right count and kind (so the deep checks are reached), else
    any count of anything."""
    return st.one_of(
        st.lists(clean, min_size=n, max_size=n),
        st.lists(st.one_of(clean, dirty), min_size=n, max_size=n),
        st.lists(dirty, max_size=2 * n + 3),
    )


@functools.cache
def le_bytes(n: int, clean: st.SearchStrategy[Any], dtype: str) -> st.SearchStrategy[bytes]:
    """A raw little-endian array field: n values, a wrong count, or bytes that are not whole
    values."""
    dirty = any_floats if dtype == "<f8" else int32s
    return st.one_of(
        values(n, clean, dirty).map(lambda v: np.asarray(v, dtype=dtype).tobytes()),
        st.binary(max_size=4 * n + 12),
    )


@functools.cache
def powers(cap: float) -> st.SearchStrategy[float]:
    return st.floats(0.0, cap)


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[bytes]) -> bytes:
    """A valid message's bytes, damaged a few times: what a broken encoder or a hostile one
    sends is mostly almost right, and random bytes rarely get past the wire format."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(("flip", "set", "cut", "insert", "delete", "append")))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and at < len(data):
            data[at] = draw(st.sampled_from((0x00, 0x01, 0x7F, 0x80, 0xFF)))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=10))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif op == "append":  # a second message on the end: protobuf merges the two
            data += draw(st.sampled_from(seeds))
    return bytes(data)


@functools.cache
def wire(seeds: tuple[bytes, ...]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=96), mutated(seeds))


@functools.cache
@st.composite
def register_requests(draw: st.DrawFn, city: tuple[Registration, ...]) -> pb.RegisterRequest:
    """A registration, mostly of a station of ``city`` and near its terms (each field mostly
    its term, so that whole claims reach the checks against the file)."""
    spec = draw(st.sampled_from(city))
    cap = spec.max_power_kw

    def mostly(term: Any, *others: Any, wild: st.SearchStrategy[Any]) -> Any:
        die = draw(st.integers(0, 7))
        return term if die < 5 else draw(st.sampled_from(others)) if die < 7 else draw(wild)

    return pb.RegisterRequest(
        agent_id=mostly(spec.agent_id, "s9", "", "c1", wild=names),
        kind=mostly(1, 0, 2, wild=int32s),
        grid_zone=mostly(spec.grid_zone, "z2", "", wild=names),
        max_power_kw=mostly(cap, cap * (1 + 5e-7), cap * (1 + 2e-6), wild=any_floats),
        slots=draw(st.lists(names, max_size=2)),
        chargers=mostly(spec.chargers, 0, 5, wild=int64s))


@functools.cache
@st.composite
def proposals(draw: st.DrawFn, ctx: tuple[int, int, int]) -> pb.Proposal:
    r, start, h = ctx
    agent = draw(st.one_of(st.sampled_from(list(REGISTRY)), names))
    cap = REGISTRY[agent].max_power_kw if agent in REGISTRY else 22.0
    msg = pb.Proposal(
        round=draw(st.one_of(st.just(r), int64s)), agent_id=agent,
        horizon_start=draw(st.one_of(st.just(start), int64s)),
        plan_kw=draw(values(h, powers(cap))),
        participants=draw(values(h, st.integers(0, 4), int64s)),
        objective=draw(st.one_of(st.floats(-1e6, 1e6), any_floats)),
        want_now_kw=draw(st.one_of(powers(cap), any_floats)),
        start_kw=draw(st.one_of(st.just([]), values(h, powers(cap)))),
    )
    if draw(st.booleans()):
        msg.dual_objective = draw(st.one_of(st.floats(-1e6, 1e6), any_floats))
    return msg


@functools.cache
@st.composite
def proposal_batches(draw: st.DrawFn, ctx: tuple[int, int, int]) -> pb.ProposalBatch:
    r, start, h = ctx
    ids = draw(st.lists(st.one_of(st.sampled_from(["s1", "s2", "tiny"]), names), max_size=3))
    m = len(ids)
    cap = min((REGISTRY[a].max_power_kw for a in ids if a in REGISTRY), default=22.0)
    return pb.ProposalBatch(
        round=draw(st.one_of(st.just(r), int64s)),
        horizon_start=draw(st.one_of(st.just(start), int64s)),
        horizon_steps=draw(st.one_of(st.just(h), int64s)), agent_ids=ids,
        plan_kw_f64=draw(le_bytes(m * h, powers(cap), "<f8")),
        participants_i32=draw(st.one_of(st.just(b""), le_bytes(m * h, st.integers(0, 1), "<i4"))),
        objective=draw(values(m, st.floats(-1e6, 1e6))),
        want_now_kw=draw(values(m, powers(cap))),
        start_kw_f64=draw(st.one_of(st.just(b""), le_bytes(m * h, powers(cap), "<f8"))),
        dual_objective=draw(st.one_of(st.just([]), values(m, st.floats(-1e6, 1e6)))))


@functools.cache
@st.composite
def setpoints(draw: st.DrawFn, which: int) -> pb.SetpointSchedule:
    """Set-points for ``STATES[which]``, mostly of its chargers and step."""
    state = STATES[which]
    n = state.charger.size
    return pb.SetpointSchedule(
        agent_id=draw(names), step=draw(st.one_of(st.just(state.horizon_start), int64s)),
        charger=draw(st.one_of(st.just(state.charger.tolist()), st.lists(int64s, max_size=4))),
        power_kw=draw(values(n, st.floats(0.0, 11.0))),
        agreed_kw=draw(any_floats), envelope_kw=draw(st.lists(any_floats, max_size=4)))


@functools.cache
@st.composite
def telemetries(draw: st.DrawFn, cap: float = 400.0) -> pb.Telemetry:
    return pb.Telemetry(
        agent_id=draw(names), step=draw(st.one_of(st.integers(-1, 100), int64s)),
        power_kw=draw(st.one_of(powers(cap), any_floats)),
        connected_evs=draw(st.one_of(st.integers(0, 5), int64s)),
        energy_owed_kwh=draw(st.one_of(st.floats(0.0, 1e3), any_floats)),
        fallback=draw(st.booleans()))


@st.composite
def target_batches(draw: st.DrawFn) -> pb.TargetBatch:
    m, k, h = draw(st.integers(0, 3)), draw(st.integers(0, 3)), draw(st.integers(0, 4))
    return pb.TargetBatch(
        round=draw(int64s), horizon_start=draw(int64s),
        horizon_steps=draw(st.one_of(st.just(h), st.sampled_from((2**59, 2**60)), int64s)),
        agent_ids=draw(st.lists(names, min_size=m, max_size=m)),
        agent_zone=draw(values(m, st.integers(0, max(k - 1, 0)), int32s)),
        zone_u_f64=draw(le_bytes(k * h, st.floats(-1e3, 1e3), "<f8")),
        zone_shift_f64=draw(le_bytes(k * h, st.floats(-1e3, 1e3), "<f8")),
        rho=draw(st.one_of(st.floats(0.0, 10.0), any_floats)), done=draw(st.booleans()),
        z_kw_f64=draw(st.one_of(st.just(b""), le_bytes(m * h, st.floats(-1e3, 1e3), "<f8"))),
        alpha=draw(st.one_of(st.floats(0.01, 1.99), any_floats)),
        participants_known=draw(st.booleans()), certify=draw(st.booleans()))


@functools.cache
@st.composite
def consensus_targets(draw: st.DrawFn, h: int) -> pb.ConsensusTarget:
    return pb.ConsensusTarget(
        round=draw(int64s), agent_id=draw(names), horizon_start=draw(int64s),
        z_kw=draw(values(h, st.floats(-1e3, 1e3))), u=draw(values(h, st.floats(-1e3, 1e3))),
        rho=draw(st.one_of(st.floats(0.0, 10.0), any_floats)),
        price_signal=draw(st.lists(any_floats, max_size=h + 1)), done=draw(st.booleans()),
        alpha=draw(st.one_of(st.floats(0.01, 1.99), any_floats)), certify=draw(st.booleans()))


@st.composite
def station_states(draw: st.DrawFn) -> pb.StationState:
    n, h = draw(st.integers(0, 3)), draw(st.integers(0, 4))
    steps = st.integers(0, 200)
    return pb.StationState(
        agent_id=draw(names), horizon_start=draw(st.one_of(st.just(40), int64s)),
        dt_h=draw(st.one_of(st.sampled_from((0.25, 1 / 60)), any_floats)),
        charger=draw(values(n, st.integers(0, 50), int64s)),
        arrival_step=draw(values(n, steps, int64s)), departure_step=draw(values(n, steps, int64s)),
        horizon_steps=draw(st.one_of(st.just(h), int64s)),
        upper_kw=draw(values(n * h, st.floats(0.0, 22.0))),
        eta=draw(values(n, st.floats(0.5, 1.0))), owed_kwh=draw(values(n, st.floats(0.0, 100.0))),
        price_per_kwh=draw(values(h, st.floats(-1.0, 1.0))),
        carbon_kg_per_kwh=draw(values(h, st.floats(0.0, 1.0))))


# -- valid messages, whose bytes the mutations start from ---------------------------------------
def _ser(*msgs: Message) -> tuple[bytes, ...]:
    return tuple(m.SerializeToString() for m in msgs)


VALID_PROPOSALS = _ser(
    pb.Proposal(round=0, agent_id="s1", horizon_start=40, plan_kw=[1.0, 2.0, 0.0, 3.0],
                participants=[1, 2, 0, 1], objective=-3.5, want_now_kw=11.0,
                start_kw=[0.0, 1.0, 2.0, 3.0]),
    pb.Proposal(round=3, agent_id="s2", horizon_start=40, plan_kw=[100.0, 0.0, 50.0, 349.0],
                participants=[9, 0, 3, 30], objective=12.0, want_now_kw=0.0, dual_objective=1.0),
    pb.Proposal(round=2, agent_id="s1", horizon_start=96, objective=1.0),
)
VALID_BATCHES = _ser(
    pb.ProposalBatch(round=3, horizon_start=40, horizon_steps=4, agent_ids=["s1", "s2"],
                     plan_kw_f64=np.arange(8.0).tobytes(),
                     participants_i32=np.ones(8, dtype="<i4").tobytes(),
                     objective=[1.0, 2.0], want_now_kw=[3.0, 4.0]),
    pb.ProposalBatch(round=0, horizon_start=40, horizon_steps=4, agent_ids=["s1"],
                     plan_kw_f64=np.ones(4).tobytes(), objective=[0.0], want_now_kw=[0.0],
                     start_kw_f64=np.zeros(4).tobytes(), dual_objective=[2.0]),
)
VALID_SETPOINTS = _ser(
    pb.SetpointSchedule(agent_id="s1", step=40, charger=[3, 4, 5], power_kw=[1.0, 2.0, 3.0],
                        agreed_kw=6.0, envelope_kw=[6.0, 5.0, 4.0, 3.0]),
    pb.SetpointSchedule(agent_id="s2", step=40, agreed_kw=0.0, envelope_kw=[0.0] * 4),
)
VALID_TELEMETRY = _ser(
    pb.Telemetry(agent_id="s1", step=40, power_kw=10.0, connected_evs=3, energy_owed_kwh=20.0),
    pb.Telemetry(agent_id="s2", step=-1, power_kw=0.0, fallback=True),
)
VALID_TARGET_BATCHES = _ser(
    pb.TargetBatch(round=1, horizon_start=40, horizon_steps=4, agent_ids=["s1", "s2"],
                   agent_zone=[0, 1], zone_u_f64=np.arange(8.0).tobytes(),
                   zone_shift_f64=np.zeros(8).tobytes(), rho=0.5, alpha=1.6,
                   z_kw_f64=np.ones(8).tobytes()),
    pb.TargetBatch(round=0, horizon_start=0, horizon_steps=2, rho=1.0, alpha=1.0),
)
VALID_TARGETS = _ser(
    pb.ConsensusTarget(round=1, agent_id="s1", horizon_start=40, z_kw=[1.0, 2.0, 3.0],
                       u=[0.1, 0.2, 0.3], rho=0.5, price_signal=[0.05, 0.1, 0.15], alpha=1.0),
    pb.ConsensusTarget(round=4, agent_id="s1", horizon_start=40, z_kw=[5.0, 0.0, 0.0],
                       u=[0.0, 0.0, 0.0], rho=0.0, done=True, alpha=1.0),
)
VALID_STATES = _ser(
    codec.state_to_proto(STATES[0]), codec.state_to_proto(STATES[1]),
    codec.state_to_proto(STATES[2]),
)
VALID_REGISTERS = _ser(
    pb.RegisterRequest(agent_id="s1", kind=pb.AGENT_KIND_STATION, grid_zone="z1",
                       max_power_kw=22.0, chargers=4),
    pb.RegisterRequest(agent_id="good", kind=pb.AGENT_KIND_STATION, grid_zone="z1",
                       max_power_kw=33.0),
    pb.RegisterRequest(agent_id="c1", kind=pb.AGENT_KIND_COHORT, slots=["mall/p1"]),
)


# -- the property -------------------------------------------------------------------------------
def decoded(fn: Callable[[], T]) -> T | None:
    """What ``fn`` returns, or None where it refuses with a MessageError whose code is a
    status the server may send. Anything else, a numpy overflow or invalid operation and any
    warning included, escapes and fails the example."""
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        try:
            return fn()
        except MessageError as exc:
            assert exc.code in REFUSALS, f"refused with {exc.code!r}, not a refusal status"
            # Its text travels back in the call's status, which has a size limit (codec).
            assert len(str(exc)) <= codec.MAX_DETAIL_CHARS + 40, f"{len(str(exc))} characters"
            return None


def accepts(fn: Callable[[], object]) -> bool:
    """Whether a check that returns nothing lets its message through (see ``decoded``)."""
    return decoded(lambda: fn() or True) is not None


def parsed(cls: type[M], raw: bytes) -> M | None:
    """The message the receiver parses from ``raw``, or None for undecodable bytes (refused
    before any check of ours runs: INVALID_ARGUMENT on the server)."""
    try:
        return cls.FromString(raw)
    except DecodeError:
        return None


def finite(*arrays: object) -> bool:
    return all(bool(np.isfinite(np.asarray(a, dtype=float)).all()) for a in arrays)


def assert_proposals_fit(p: PowerProposals, ctx: tuple[int, int, int]) -> None:
    """A decoded batch: current, from registered stations, every value finite and within the
    station's registered power and chargers."""
    r, start, h = ctx
    m = len(p.agent_ids)
    assert (p.round, p.horizon_start) == (r, start)
    assert len(set(p.agent_ids)) == m
    regs = [REGISTRY[a] for a in p.agent_ids]
    assert all(reg.kind == "station" for reg in regs)
    assert p.plan_kw.shape == p.participants.shape == (m, h)
    assert p.objective.shape == p.want.shape == (m,)
    assert finite(p.plan_kw, p.participants, p.objective, p.want)
    for k, reg in enumerate(regs):
        for row in (p.plan_kw[k], *(() if p.start_kw is None else (p.start_kw[k],))):
            assert (row >= -1e-9).all() and (row <= top_kw(reg.max_power_kw)).all()
        assert 0 <= p.want[k] <= top_kw(reg.max_power_kw)
        assert (p.participants[k] >= 0).all()
        assert not reg.chargers or (p.participants[k] <= reg.chargers).all()
    if r == 0:
        assert p.start_kw is not None and p.start_kw.shape == (m, h) and finite(p.start_kw)
    else:
        assert p.start_kw is None
    if p.dual_objective is not None:
        assert p.dual_objective.shape == (m,) and finite(p.dual_objective)


def assert_targets_fit(t: ConsensusTargets) -> None:
    """Decoded targets: consistent shapes, finite values, an over-relaxation in (0, 2) and a
    penalty that is a penalty (a station solves with them as they are)."""
    m, (k, h) = len(t.agent_ids), t.zone_u.shape
    assert t.agent_zone.shape == (m,) and ((t.agent_zone >= 0) & (t.agent_zone < k)).all()
    assert t.zone_shift is None or t.zone_shift.shape == (k, h)
    assert t.z_kw is None or t.z_kw.shape == (m, h)
    assert finite(t.zone_u, *(a for a in (t.zone_shift, t.z_kw) if a is not None))
    assert 0 < t.alpha < 2
    assert math.isfinite(t.rho) and t.rho >= 0


def fuzz(n: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return settings(max_examples=n, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- codec level --------------------------------------------------------------------------------
@fuzz(300)
@given(msg=st.one_of(register_requests(tuple(REGISTRY.values())), wire(VALID_REGISTERS)))
def test_registrations(msg: pb.RegisterRequest | bytes) -> None:
    """A registration decodes to a station with a zone of the city, a finite rating ≥ 0
    and a charger count, or is refused; checked against each city-file entry (``check_claim``),
    an accepted claim is that entry's terms."""
    req = parsed(pb.RegisterRequest, msg) if isinstance(msg, bytes) else msg
    if req is None:
        return
    reg = decoded(lambda: codec.registration_from_proto(req, ZONES))
    if reg is None:
        return
    assert reg.agent_id == req.agent_id and reg.kind in ("station", "cohort")
    if reg.kind != "station":
        return
    # 0 is a facility with no charger yet (it may register; it is given nothing)
    assert reg.grid_zone in ZONES and math.isfinite(reg.max_power_kw) and reg.max_power_kw >= 0
    assert reg.chargers >= 0
    for spec in STATIONS:
        if accepts(functools.partial(codec.check_claim, reg, spec)):
            assert reg.grid_zone == spec.grid_zone, (reg, spec)
            assert abs(reg.max_power_kw - spec.max_power_kw) <= 1e-9 + LIMIT_RTOL * spec.max_power_kw
            assert not reg.chargers or not spec.chargers or reg.chargers == spec.chargers


@fuzz(300)
@given(ctx=st.sampled_from(CONTEXTS), data=st.data())
def test_proposals(ctx: tuple[int, int, int], data: st.DataObject) -> None:
    """One station's proposal (the gRPC path): refused, or one current row from a registered
    station within its rating and chargers, the values as sent."""
    msg: pb.Proposal | bytes = data.draw(st.one_of(proposals(ctx), wire(VALID_PROPOSALS)))
    prop = parsed(pb.Proposal, msg) if isinstance(msg, bytes) else msg
    if prop is None:
        return
    r, start, h = ctx
    p = decoded(lambda: codec.check_proposal(prop, registry=REGISTRY, round=r,
                                             horizon_start=start, horizon=h))
    if p is None:
        return
    assert p.agent_ids == (prop.agent_id,)
    assert_proposals_fit(p, ctx)
    assert p.plan_kw.ravel().tolist() == list(prop.plan_kw)
    assert p.want.tolist() == [prop.want_now_kw]


@fuzz(300)
@given(ctx=st.sampled_from(CONTEXTS), data=st.data())
def test_proposal_batches(ctx: tuple[int, int, int], data: st.DataObject) -> None:
    """A Ray pack's batch, raw little-endian columns included, with or without the
    participants the receiver holds: refused, or rows as ``test_proposals`` demands."""
    msg: pb.ProposalBatch | bytes = data.draw(
        st.one_of(proposal_batches(ctx), wire(VALID_BATCHES)))
    batch = parsed(pb.ProposalBatch, msg) if isinstance(msg, bytes) else msg
    if batch is None:
        return
    r, start, h = ctx
    m = len(batch.agent_ids)
    held = data.draw(st.one_of(
        st.none(),
        st.lists(st.integers(0, 1), min_size=m * h, max_size=m * h).map(
            lambda v: np.asarray(v, dtype=float).reshape(m, h)),
        st.just(np.zeros((m + 1, h)))))
    p = decoded(lambda: codec.proposals_from_proto(batch, registry=REGISTRY, round=r,
                                                   horizon_start=start, horizon=h,
                                                   participants=held))
    if p is None:
        return
    assert p.agent_ids == tuple(batch.agent_ids)
    assert_proposals_fit(p, ctx)
    assert p.plan_kw.tobytes() == np.frombuffer(batch.plan_kw_f64, "<f8").tobytes()


@fuzz(250)
@given(which=st.sampled_from(range(len(STATES))),
       agreed=st.one_of(st.floats(0.0, 40.0), st.floats(-5, 0)), data=st.data())
def test_executed_setpoints(which: int, agreed: float, data: st.DataObject) -> None:
    """A station's executed set-points: refused, or one finite value per EV of the period
    within its EV's cap, summing to at most the agreed power."""
    msg: pb.SetpointSchedule | bytes = data.draw(
        st.one_of(setpoints(which), wire(VALID_SETPOINTS)))
    state = STATES[which]
    sp = parsed(pb.SetpointSchedule, msg) if isinstance(msg, bytes) else msg
    if sp is None:
        return
    kw = decoded(lambda: codec.check_executed(sp, state=state, agreed_kw=agreed))
    if kw is None:
        return
    assert sp.step == state.horizon_start and list(sp.charger) == state.charger.tolist()
    assert kw.shape == state.charger.shape and finite(kw)
    cap = state.upper_kw[:, 0] if state.horizon else np.zeros(kw.size)
    assert (kw >= -1e-9).all() and (kw <= cap * (1 + LIMIT_RTOL) + 1e-9).all()
    assert kw.sum() <= max(agreed, 0.0) * (1 + LIMIT_RTOL) + 1e-6
    assert kw.tolist() == list(sp.power_kw)


@fuzz(250)
@given(reg=st.sampled_from(STATIONS), msg=st.one_of(telemetries(), wire(VALID_TELEMETRY)))
def test_telemetry(reg: Registration, msg: pb.Telemetry | bytes) -> None:
    """Telemetry is taken only finite, non-negative and within the registered power and
    chargers (what the operator's view and the KPIs show)."""
    tel = parsed(pb.Telemetry, msg) if isinstance(msg, bytes) else msg
    if tel is None:
        return
    assert accepts(lambda: codec.check_telemetry(tel, reg)) == _telemetry_fits(tel, reg), (
        f"{tel} for {reg}")


def _telemetry_fits(tel: pb.Telemetry, reg: Registration) -> bool:
    return (math.isfinite(tel.power_kw) and 0 <= tel.power_kw <= top_kw(reg.max_power_kw)
            and math.isfinite(tel.energy_owed_kwh) and tel.energy_owed_kwh >= 0
            and 0 <= tel.connected_evs <= (reg.chargers or 2**63) and tel.step >= -1)


@fuzz(300)
@given(msg=st.one_of(target_batches(), wire(VALID_TARGET_BATCHES)))
# Found here: a stated H of 2**60 over no rows raised ValueError in reshape; a NaN rho passed.
@example(msg=pb.TargetBatch(horizon_steps=2**60, alpha=1.0))
@example(msg=pb.TargetBatch(horizon_steps=1, rho=math.nan, alpha=1.0))
def test_target_batches(msg: pb.TargetBatch | bytes) -> None:
    """What a Ray pack accepts from the coordinator: refused, or zone rows, station rows and
    shares of one horizon, all finite."""
    batch = parsed(pb.TargetBatch, msg) if isinstance(msg, bytes) else msg
    if batch is None:
        return
    t = decoded(lambda: codec.targets_from_proto(batch))
    if t is None:
        return
    assert_targets_fit(t)
    assert t.agent_ids == tuple(batch.agent_ids) and t.horizon == batch.horizon_steps > 0


def _targets(*lengths: int, rho: float = 1.0) -> list[pb.ConsensusTarget]:
    return [pb.ConsensusTarget(agent_id=f"s{k}", z_kw=[1.0] * h, u=[0.0] * h, rho=rho, alpha=1.0)
            for k, h in enumerate(lengths)]


@fuzz(300)
@given(items=st.integers(0, 4).flatmap(lambda h: st.lists(
    st.one_of(consensus_targets(h), wire(VALID_TARGETS)), max_size=3)))
# Found here: a target of no steps raised ValueError (reshape(-1, 0)); a NaN rho passed.
# Rows of 2, 3 and 1 steps passed as three rows of 2 (only the totals were compared).
@example(items=_targets(0))
@example(items=_targets(1, rho=math.nan))
@example(items=_targets(2, 3, 1))
def test_station_targets(items: list[pb.ConsensusTarget | bytes]) -> None:
    """What an edge station accepts on its stream (its own target, or a few): refused, or
    each station's row exactly as sent, all of one horizon."""
    msgs = [parsed(pb.ConsensusTarget, x) if isinstance(x, bytes) else x for x in items]
    if any(m is None for m in msgs):
        return
    targets = [m for m in msgs if m is not None]
    t = decoded(lambda: codec.targets_from_proto(targets))
    if t is None:
        return
    assert_targets_fit(t)
    assert t.z_kw is not None and t.agent_ids == tuple(m.agent_id for m in targets)
    for k, m in enumerate(targets):
        assert t.z_kw[k].tolist() == list(m.z_kw) and t.u[k].tolist() == list(m.u)


def _state_msg(**change: Any) -> pb.StationState:
    msg = codec.state_to_proto(STATES[0])
    for name, value in change.items():
        field = getattr(msg, name)
        if isinstance(value, list):
            del field[:]
            field.extend(value)
        else:
            setattr(msg, name, value)
    return msg


@fuzz(300)
@given(msg=st.one_of(station_states(), wire(VALID_STATES)))
# Found here: dt_h 0 passed. Short per-EV arrays passed and were broadcast (one eta for all
# EVs) or failed in the solve (departure_step: ValueError from zip); a NaN cap came back as a
# NaN plan, and the coordinator then dropped the station for its proposal.
@example(msg=_state_msg(dt_h=0.0))
@example(msg=_state_msg(eta=[0.95]))
@example(msg=_state_msg(departure_step=[42]))
@example(msg=_state_msg(carbon_kg_per_kwh=[0.3]))
@example(msg=_state_msg(upper_kw=[11.0] * 11 + [math.nan]))
def test_station_states(msg: pb.StationState | bytes) -> None:
    """The period state an edge station solves with (sim-in-the-loop): refused, or one row
    per EV in every per-EV array, H steps in every per-step one, all finite, dt > 0."""
    m = parsed(pb.StationState, msg) if isinstance(msg, bytes) else msg
    if m is None:
        return
    s = decoded(lambda: codec.state_from_proto(m))
    if s is None:
        return
    n, h = s.charger.size, s.horizon
    assert s.horizon == m.horizon_steps
    for a in (s.arrival_step, s.departure_step, s.eta, s.owed_kwh):
        assert a.shape == (n,)
    assert s.upper_kw.shape == (n, h) and s.carbon_kg_per_kwh.shape == (h,)
    assert finite(s.upper_kw, s.eta, s.owed_kwh, s.price_per_kwh, s.carbon_kg_per_kwh)
    assert math.isfinite(s.dt_h) and s.dt_h > 0


# -- server level -------------------------------------------------------------------------------
#: The roster station the later-messages fuzz speaks for (registered before it starts).
STREAM = "tele"


def hello(sid: str) -> bytes:
    return pb.ExchangeRequest(hello=pb.Hello(agent_id=sid)).SerializeToString()


@st.composite
def exchange_requests(draw: st.DrawFn, sid: str) -> bytes:
    """A structured message of the stream, for this station or another."""
    who = draw(st.sampled_from([sid, sid, "s1", ""]))
    kind = draw(st.sampled_from(("proposal", "telemetry", "executed", "hello", "empty")))
    if kind == "proposal":
        body = draw(proposals(draw(st.sampled_from([(-1, -1, 0), *CONTEXTS]))))
        body.agent_id = who
        msg = pb.ExchangeRequest(proposal=body)
    elif kind == "telemetry":
        tel = draw(telemetries(20.0))
        tel.agent_id = who
        msg = pb.ExchangeRequest(telemetry=tel)
    elif kind == "executed":
        sp = draw(setpoints(draw(st.sampled_from(range(len(STATES))))))
        sp.agent_id = who
        msg = pb.ExchangeRequest(executed=sp)
    elif kind == "hello":
        msg = pb.ExchangeRequest(hello=pb.Hello(agent_id=who))
    else:
        msg = pb.ExchangeRequest()
    return msg.SerializeToString()


def firsts(city: tuple[Registration, ...]) -> st.SearchStrategy[bytes]:
    """Hello for a station of the city (registered or not), another, or none."""
    ids = st.one_of(st.sampled_from([STREAM, *(r.agent_id for r in city)]), names)
    return ids.map(hello)


def _valid_later(sid: str) -> tuple[bytes, ...]:
    """Messages a stream takes without a word before any period: telemetry within the
    station's rating, and set-points for the step of its last done target (none yet: -1)."""
    return _ser(
        pb.ExchangeRequest(telemetry=pb.Telemetry(agent_id=sid, step=40, power_kw=5.0,
                                                  connected_evs=0)),
        pb.ExchangeRequest(executed=pb.SetpointSchedule(agent_id=sid, step=-1)),
    )


def _exchange_seeds(sid: str) -> tuple[bytes, ...]:
    wrap = [pb.ExchangeRequest(proposal=pb.Proposal.FromString(b)) for b in VALID_PROPOSALS]
    for w in wrap:
        w.proposal.agent_id = sid
    return (
        hello(sid), hello("s9"), *_ser(*wrap),
        *_ser(pb.ExchangeRequest(proposal=pb.Proposal(round=-1, agent_id=sid, horizon_start=-1,
                                                      objective=0.0))),
        *_valid_later(sid),
        *_ser(pb.ExchangeRequest(executed=pb.SetpointSchedule(agent_id=sid, step=40, charger=[3],
                                                              power_kw=[1.0]))),
    )


def _status(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def _assert_served(outcome: tuple[grpc.StatusCode, str], what: str,
                   seen: Counter[grpc.StatusCode]) -> None:
    code, details = outcome
    seen[code] += 1
    assert code in SERVER_OUTCOMES, f"{what}: {code.name} {details!r}"
    # A refusal that does not reach the caller is no refusal: a client drops a status whose
    # text is over its metadata limit and reports RESOURCE_EXHAUSTED, without the reason.
    assert "metadata size exceeds" not in details, f"{what}: the refusal was lost: {details!r}"
    # The server's own DEADLINE_EXCEEDED says "no Hello"; the client's deadline is a hang.
    assert code != grpc.StatusCode.DEADLINE_EXCEEDED or "no Hello" in details, (
        f"{what}: the server did not answer in time ({details!r})")


def _drain(replies: Iterator[Any]) -> None:
    for _ in replies:
        pass


def test_the_server_answers_every_payload_with_a_status(caplog: pytest.LogCaptureFixture,
                                                        ) -> None:
    """Fuzzed Register calls, first messages and later messages of Exchange streams, on one
    real server: each call ends OK or with a refusal (never UNKNOWN or INTERNAL, which mean an
    exception escaped our code), no stream ends on an exception of ours (the reader turns one
    into a quiet hang-up, so the status alone would not show it), and afterwards the server
    still serves a real edge station."""
    caplog.set_level(logging.INFO, logger="evgrid.transport.grpc_server")
    server, port, hub = create_server("127.0.0.1:0", grid_zones=["z1"], dt_h=0.25,
                                      stations=roster(), token=TOKEN, round_timeout_s=1.0,
                                      hello_timeout_s=0.5)
    edges = EdgeLoop()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            register = ch.unary_unary(REGISTER)
            exchange = ch.stream_stream(EXCHANGE)
            register(pb.RegisterRequest(agent_id=STREAM, kind=pb.AGENT_KIND_STATION,
                                        grid_zone="z1", max_power_kw=20.0).SerializeToString(),
                     metadata=MD, timeout=3)

            city = tuple(roster())
            seen: dict[str, Counter[grpc.StatusCode]] = defaultdict(Counter)

            @fuzz(40)
            @given(raw=st.one_of(wire(VALID_REGISTERS),
                                 register_requests(city).map(lambda m: m.SerializeToString())))
            def fuzz_register(raw: bytes) -> None:
                _assert_served(_status(lambda: register(raw, metadata=MD, timeout=3)),
                               f"Register({raw[:80]!r})", seen["register"])

            seeds = _exchange_seeds(STREAM)

            @fuzz(40)
            @given(raw=st.one_of(wire(seeds), exchange_requests(STREAM), firsts(city)))
            def fuzz_first(raw: bytes) -> None:
                outcome = _status(lambda: _drain(exchange(iter([raw]), metadata=MD, timeout=3)))
                _assert_served(outcome, f"Exchange first message {raw[:80]!r}", seen["first"])

            # Explicit examples: a served stream, a refusal of each kind and a field-mode claim
            # outside a field period, whatever the generated ones come to on a loaded machine.
            @fuzz(40)
            @given(later=st.lists(st.one_of(wire(seeds), exchange_requests(STREAM),
                                            st.sampled_from(_valid_later(STREAM))),
                                  min_size=1, max_size=4))
            @example(later=[_valid_later(STREAM)[0]])
            @example(later=_ser(pb.ExchangeRequest(telemetry=pb.Telemetry(
                agent_id=STREAM, step=1, power_kw=-1.0))))
            @example(later=_ser(pb.ExchangeRequest(telemetry=pb.Telemetry(agent_id="s1"))))
            @example(later=_ser(pb.ExchangeRequest(claim=pb.StationState(agent_id=STREAM))))
            def fuzz_later(later: list[bytes]) -> None:
                msgs = [hello(STREAM), *later]
                outcome = _status(lambda: _drain(exchange(iter(msgs), metadata=MD, timeout=3)))
                _assert_served(outcome, f"Exchange after Hello: {later!r:.300}", seen["later"])
                # The stream is gone once its status is sent: the next example may say Hello.
                wait_until(lambda: STREAM not in hub.connected(), 3.0)

            fuzz_register()
            fuzz_first()
            fuzz_later()
        # Not vacuous: calls got past the wire format to the checks, and some were served.
        ok, bad = grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT
        assert all(seen[p][ok] and len(seen[p]) >= 3 for p in ("register", "first")), {
            p: {c.name: n for c, n in v.items()} for p, v in seen.items()}
        assert seen["later"][ok] and seen["later"][bad] and len(seen["later"]) >= 3, seen

        broken = [r for r in caplog.records if "stream ended" in r.msg]
        assert not broken, [r.getMessage() for r in broken]
        # Still serving: a real edge station registers, says Hello and is listed.
        edges.station(port, "good", "z1", 33.0)
        wait_until(lambda: "good" in hub.connected(), 5.0)
    finally:
        edges.close()
        server.stop(grace_s=0)
