"""The columnar batches (Ray packs) and the per-station path (edge nodes) carry one ADMM.

A batch must decode to exactly what was sent, refuse what the codec promises to refuse with
the status it names, and a station fed per-station targets (its share z) must make the same
move as one fed its zone's rows.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from evgrid.agents.station import StationConfig, StationPack
from evgrid.agents.synthetic import SharingInstance, random_instance
from evgrid.coordinator import AdmmConfig, PowerCoordinator
from evgrid.coordinator.messages import ConsensusTargets, PowerProposals
from evgrid.transport import codec
from evgrid.transport.pb import coordinator_pb2 as pb


def wired_round(n: int = 6, rounds: int = 3) -> tuple[
        SharingInstance, StationPack, PowerCoordinator, PowerProposals, ConsensusTargets]:
    """A random 24-step instance after ``rounds`` in-process ADMM rounds."""
    inst = random_instance(n, 24, seed=3, dt_h=1.0)
    pack = StationPack(list(inst.states), inst.grid_zones, inst.max_power_kw, StationConfig())
    pack.begin_period(inst.states)
    coord = PowerCoordinator(inst.zone_ids, AdmmConfig())
    for reg in pack.registrations():
        coord.register(reg)
    targets = coord.begin(5, inst.zone_limit_kw, inst.city_limit_kw)
    for _ in range(rounds):
        props = pack.propose(targets)
        targets = coord.update(props)
    return inst, pack, coord, props, targets


def test_batches_round_trip_exactly() -> None:
    _, _, coord, props, targets = wired_round()
    back = codec.proposals_from_proto(
        pb.ProposalBatch.FromString(codec.proposals_to_proto(props).SerializeToString()),
        registry=coord.registry, round=props.round, horizon_start=5, horizon=24)
    assert back.agent_ids == props.agent_ids
    for name in ("plan_kw", "participants", "objective", "want"):
        np.testing.assert_array_equal(getattr(back, name), getattr(props, name))
    assert back.start_kw is None and props.start_kw is None  # round 0 only
    for with_z in (False, True):
        raw = codec.targets_to_proto(targets, with_z=with_z).SerializeToString()
        t = codec.targets_from_proto(pb.TargetBatch.FromString(raw))
        assert (t.round, t.agent_ids, t.rho, t.alpha, t.done) == (
            targets.round, targets.agent_ids, targets.rho, targets.alpha, targets.done)
        np.testing.assert_array_equal(t.u, targets.u)
        np.testing.assert_array_equal(t.zone_shift, targets.zone_shift)
        assert (t.z_kw is None) is not with_z
    # Zone rows, not station rows: the batch does not grow with the stations it addresses.
    assert len(codec.targets_to_proto(targets).zone_u_f64) == 8 * targets.zone_u.size


def test_participants_travel_once_a_period() -> None:
    """After a pack's first answer the targets say participants_known, the answer leaves them
    out (a third of its bytes), and the receiver fills in its own copy; without one, or with
    one for another batch, the answer is refused."""
    _, _, coord, props, targets = wired_round()
    raw = codec.targets_to_proto(targets, participants_known=True).SerializeToString()
    assert pb.TargetBatch.FromString(raw).participants_known
    full = codec.proposals_to_proto(props)
    short = codec.proposals_to_proto(props, with_participants=False)
    assert not short.participants_i32 and short.ByteSize() < 0.75 * full.ByteSize()
    kw: dict[str, Any] = dict(registry=coord.registry, round=props.round, horizon_start=5,
                              horizon=24)
    back = codec.proposals_from_proto(short, participants=props.participants, **kw)
    np.testing.assert_array_equal(back.participants, props.participants)
    np.testing.assert_array_equal(back.plan_kw, props.plan_kw)
    for held in (None, props.participants[:-1]):
        with pytest.raises(codec.MessageError) as err:
            codec.proposals_from_proto(short, participants=held, **kw)
        assert err.value.code == "INVALID_ARGUMENT"
    # A full answer is taken as sent, whatever the receiver holds.
    again = codec.proposals_from_proto(full, participants=props.participants * 0, **kw)
    np.testing.assert_array_equal(again.participants, props.participants)


def corrupt(batch: pb.ProposalBatch, how: str) -> pb.ProposalBatch:
    b = pb.ProposalBatch()
    b.CopyFrom(batch)
    plan = np.frombuffer(b.plan_kw_f64, "<f8").copy()
    if how == "nan":
        plan[30] = np.nan
    elif how == "beyond":
        plan[0] = 1e6
    elif how == "short":
        plan = plan[:-1]
    elif how == "ragged":
        b.plan_kw_f64 = b.plan_kw_f64[:-3]
        return b
    elif how == "twice":
        b.agent_ids[1] = b.agent_ids[0]
    elif how == "want":
        b.want_now_kw[2] = -1.0
    elif how == "stranger":
        b.agent_ids[0] = "nobody"
    elif how == "stale":
        b.round -= 1
    b.plan_kw_f64 = plan.astype("<f8").tobytes()
    return b


@pytest.mark.parametrize(("how", "code", "words"), [
    ("nan", "INVALID_ARGUMENT", "plan_kw of 's0001' holds NaN"),
    ("beyond", "INVALID_ARGUMENT", "outside the registered"),
    ("short", "INVALID_ARGUMENT", "plan_kw has 143 values"),
    ("ragged", "INVALID_ARGUMENT", "not whole <f8"),
    ("twice", "INVALID_ARGUMENT", "appears twice"),
    ("want", "INVALID_ARGUMENT", "want_now_kw -1.0"),
    ("stranger", "UNAUTHENTICATED", "'nobody' is not a registered station"),
    ("stale", "FAILED_PRECONDITION", "is stale"),
])
def test_a_bad_batch_is_refused_with_its_status(how: str, code: str, words: str) -> None:
    _, _, coord, props, _ = wired_round()
    batch = corrupt(codec.proposals_to_proto(props), how)
    with pytest.raises(codec.MessageError, match=words) as info:
        codec.proposals_from_proto(batch, registry=coord.registry, round=props.round,
                                   horizon_start=5, horizon=24)
    assert info.value.code == code


def test_dual_objectives_travel_when_asked() -> None:
    """Near the end of a solve targets say certify; the answers then carry each station's dual
    objective, on both paths, and a non-finite one is refused like any other number."""
    _, pack, coord, _, targets = wired_round()
    assert not targets.certify and pack.propose(targets).dual_objective is None
    asked = replace(targets, certify=True)
    raw = codec.targets_to_proto(asked).SerializeToString()
    assert codec.targets_from_proto(pb.TargetBatch.FromString(raw)).certify
    props = pack.propose(asked)
    assert props.dual_objective is not None and np.isfinite(props.dual_objective).all()
    kw: dict[str, Any] = dict(registry=coord.registry, round=props.round, horizon_start=5,
                              horizon=24)
    back = codec.proposals_from_proto(codec.proposals_to_proto(props), **kw)
    np.testing.assert_array_equal(back.dual_objective, props.dual_objective)
    one = codec.check_proposal(codec.proposal_to_proto(props, 1), **kw)
    assert one.dual_objective is not None and one.dual_objective[0] == props.dual_objective[1]
    assert codec.check_proposal(codec.proposal_to_proto(
        replace(props, dual_objective=None), 1), **kw).dual_objective is None
    bad = codec.proposal_to_proto(props, 1)
    bad.dual_objective = float("nan")
    with pytest.raises(codec.MessageError, match=r"dual_objective of .* holds NaN"):
        codec.check_proposal(bad, **kw)


def test_the_warm_start_travels_in_round_0_only() -> None:
    """Round 0 relaxes from each EV's warm start, which only the station knows: its sum must
    come with round 0 (the coordinator forms x̂ from it) and with no later round."""
    inst, pack, coord, props, _ = wired_round()
    late = codec.proposals_to_proto(props)
    late.start_kw_f64 = np.zeros(props.plan_kw.size).tobytes()
    with pytest.raises(codec.MessageError, match="round 0 only"):
        codec.proposals_from_proto(late, registry=coord.registry, round=props.round,
                                   horizon_start=5, horizon=24)
    pack.begin_period(inst.states)
    first = pack.propose(coord.begin(5, inst.zone_limit_kw, inst.city_limit_kw))
    assert first.start_kw is not None
    bare = codec.proposals_to_proto(first)
    bare.start_kw_f64 = b""
    with pytest.raises(codec.MessageError, match="start_kw has 0 values"):
        codec.proposals_from_proto(bare, registry=coord.registry, round=0, horizon_start=5,
                                   horizon=24)


def test_a_malformed_target_batch_is_refused() -> None:
    *_, targets = wired_round()
    for field, value in (("alpha", 2.5), ("horizon_steps", 23)):
        b = codec.targets_to_proto(targets)
        setattr(b, field, value)
        with pytest.raises(codec.MessageError):
            codec.targets_from_proto(b)
    b = codec.targets_to_proto(targets)
    b.agent_zone[0] = 99  # a zone row the batch does not carry
    with pytest.raises(codec.MessageError):
        codec.targets_from_proto(b)


def test_decoded_messages_need_no_new_compilation() -> None:
    """A decoded batch is a read-only view; the pack must not hand it to the kernel as is, or
    numba compiles another specialisation inside the first round's deadline (seen: a fresh
    machine's first `make run` period ran out of time)."""
    from evgrid.agents.local_qp import admm_round

    _, pack, _, _, targets = wired_round()
    before = list(admm_round.signatures)
    for with_z in (False, True):
        raw = codec.targets_to_proto(targets, with_z=with_z).SerializeToString()
        pack.propose(codec.targets_from_proto(pb.TargetBatch.FromString(raw)))
    pack.propose(codec.targets_from_proto([codec.target_to_proto(targets, i)
                                           for i in range(len(targets))]))
    assert admm_round.signatures == before


def test_per_station_targets_move_a_station_like_zone_rows() -> None:
    """An edge node derives its zone's shift from its share z; a pack gets the shift itself.
    Both must make the same x-update, and the x̂ the coordinator forms must be the station's."""
    inst, pack, coord, *_ = wired_round(rounds=1)
    twin = StationPack(list(inst.states), inst.grid_zones, inst.max_power_kw, StationConfig())
    twin.begin_period(inst.states)
    pack.begin_period(inst.states)  # both from the same start, rounds 0-4
    replay = coord.begin(5, inst.zone_limit_kw, inst.city_limit_kw)
    for _ in range(5):
        mine = pack.propose(replay)
        assert replay.z_kw is not None
        edge = ConsensusTargets.per_station(replay.round, replay.horizon_start, replay.agent_ids,
                                            replay.z_kw, replay.u, replay.rho, replay.done,
                                            replay.alpha)
        theirs = twin.propose(edge)
        np.testing.assert_allclose(theirs.plan_kw, mine.plan_kw, rtol=1e-9, atol=1e-9)
        replay = coord.update(mine)
        assert coord._p is not None
        np.testing.assert_allclose(coord._p.xh, pack.xh_sum, rtol=1e-9, atol=1e-9)
