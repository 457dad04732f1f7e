"""The dispatch seam: a learned station policy served by station agents sees the features it
trained on, never exceeds the power it is given, whatever the network outputs, and keeps every
limit in a coordinated run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evgrid.agents.baselines import LeastLaxityFirst
from evgrid.agents.bundle import BundleError, BundleSpec
from evgrid.agents.coordinated import CoordinatedPolicy, station_config, station_specs
from evgrid.agents.dispatch import LearnedDispatch, state_rows
from evgrid.agents.edge import EdgeStation
from evgrid.agents.policies import check_policy_names
from evgrid.agents.station import station_contexts, station_states
from evgrid.coordinator.fallback import Envelope
from evgrid.envs import Simulator
from evgrid.envs.kpis import compute_kpis
from evgrid.envs.station_actions import Budget, Layout, budget_features
from evgrid.scenario import load_scenario
from evgrid.scenario.tariff import read_tariff
from evgrid.transport import codec
from evgrid.transport.codec import MessageError
from tests.bundles import Constant, Hostile, Squashed, write_bundle
from tests.conformance.test_controller_invariants import check_invariants

#: What a diverged network or a broken export could output (0.4: a sane one).
OUTPUTS = [float("nan"), float("inf"), -float("inf"), 7.0, -3.0, 0.4]


@pytest.fixture(scope="module")
def squashed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("squashed"), Squashed(seed=0))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(tmp_path_factory.mktemp("hostile"), Hostile())


def _busy_states(name: str, steps: list[int], **update: object):
    """(world, obs, states with contexts) at each of ``steps`` of an LLF day."""
    sc = load_scenario(name).model_copy(update=update)
    sim = Simulator(sc)
    sim.reset()
    llf = LeastLaxityFirst()
    for t in range(max(steps) + 1):
        obs = sim.observation
        if t in steps:
            yield sim.world, obs, station_states(obs, list(sim.world.facility_ids),
                                                 obs.price_per_kwh.size,
                                                 station_contexts(obs, sim.world))
        sim.step(llf.schedule(obs))


@pytest.mark.parametrize("name,update", [
    ("small", {"tariff": read_tariff("sce_tou_ev_4")}),  # demand charge: peak, rate features
    ("workplace", {}),
])
def test_a_station_computes_the_features_its_policy_trained_on(name, update) -> None:
    """No train/serve skew: the features a station builds from its own state and context are
    the training environment's, to float32."""
    busy = 0
    for world, obs, states in _busy_states(name, [30, 38, 45, 52], **update):
        ref = Budget(Layout.of(world)).features(obs, world)
        busy += int((ref[:, 0] > 0).sum())
        for i, sid in enumerate(world.facility_ids):
            st_ = states[sid]
            assert st_.context is not None
            got = budget_features(state_rows(st_, st_.context))[0]
            np.testing.assert_allclose(got, ref[i], rtol=1e-5, atol=1e-6, err_msg=f"{sid} {obs.t}")
    assert busy >= 4, "pick steps with EVs"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(budget=st.floats(-1e3, 1e4) | st.sampled_from([0.0, float("inf")]),
       row=st.integers(0, 4), out=st.sampled_from(OUTPUTS))
def test_whatever_the_network_outputs_no_charger_gets_more_than_the_budget(
        hostile_states, constant_dispatch, budget, row, out) -> None:
    st_ = hostile_states[row % len(hostile_states)]
    chargers, kw = constant_dispatch[out](st_, budget)
    assert np.isfinite(kw).all() and (kw >= 0).all()
    assert kw.sum() <= max(budget, 0.0) + 1e-9
    assert (kw <= st_.upper_kw[:, 0] + 1e-9).all()
    np.testing.assert_array_equal(chargers, st_.charger)


@pytest.fixture(scope="module")
def hostile_states():
    _, _, states = next(_busy_states("small", [40]))
    return [s for s in states.values() if s.charger.size]


@pytest.fixture(scope="module")
def constant_dispatch(tmp_path_factory: pytest.TempPathFactory):
    return {v: LearnedDispatch(write_bundle(tmp_path_factory.mktemp("c"), Constant(v)),
                               ["depot", "mall", "station"]) for v in OUTPUTS}


def test_a_state_without_context_is_dispatched_by_the_rule(squashed: Path, hostile_states) -> None:
    from evgrid.agents.station import setpoints_within

    d = LearnedDispatch(squashed, ["depot", "mall", "station"])
    bare = replace(hostile_states[0], context=None)
    np.testing.assert_array_equal(d(bare, 50.0)[1], setpoints_within(bare, 50.0)[1])
    assert d.blind == 1


def test_per_charger_and_foreign_bundles_are_one_line_errors(squashed: Path,
                                                             tmp_path: Path) -> None:
    spec = BundleSpec.load(squashed)
    spec.station_action = "fractions"
    spec.save(tmp_path / "f")
    (tmp_path / "f" / "station.pt").write_bytes((squashed / "station.pt").read_bytes())
    with pytest.raises(BundleError, match="station agents run 'budget' policies"):
        LearnedDispatch(tmp_path / "f", ["depot"])
    with pytest.raises(ValueError, match="coordinated stations run 'budget' policies"):
        check_policy_names([f"coordinated+learned:{tmp_path / 'f'}"])
    spec.station_action, spec.stations = "budget", {"station_depot": "station.pt"}
    spec.save(tmp_path / "f")
    with pytest.raises(BundleError, match="no station policy for station_mall"):
        LearnedDispatch(tmp_path / "f", ["depot", "mall"])


def test_the_context_travels_and_a_bad_one_is_refused(hostile_states) -> None:
    st_ = hostile_states[0]
    back = codec.state_from_proto(codec.state_to_proto(st_))
    assert back.context == st_.context
    for bad in ({"zone_limit_kw": float("nan")}, {"rated_kw": -1.0}, {"day_left": 2.0},
                {"chargers": 10**9}):
        msg = codec.state_to_proto(replace(st_, context=replace(st_.context, **bad)))
        with pytest.raises(MessageError, match="station context"):
            codec.state_from_proto(msg)


def test_an_edge_node_falls_back_by_its_policy_inside_the_fallback_budget(
        squashed: Path, hostile_states) -> None:
    st_ = hostile_states[0]
    config = replace(station_config(Simulator(load_scenario("small")).world),
                     policy_dir=str(squashed))
    edge = EdgeStation(st_.station_id, "z", 100.0, config, safe_share_kw=np.full(200, 7.0))
    edge.state = st_
    edge.envelope = Envelope(st_.horizon_start, np.array([30.0, 30.0]))
    for step, budget in ((st_.horizon_start, 30.0), (st_.horizon_start + 5, 7.0)):
        _, kw = edge.fallback(step)
        cap = edge.pack.dispatch.cap_kw(st_)  # type: ignore[union-attr]
        assert kw.sum() == pytest.approx(min(budget, cap, float(
            np.minimum(st_.upper_kw[:, 0], st_.owed_kwh / (st_.eta * st_.dt_h)).sum())))


@pytest.mark.parametrize("bundle", ["squashed", "hostile"])
def test_coordinated_learned_stations_keep_every_limit(bundle: str, request) -> None:
    """Coordinated, each station executing its agreed power by the policy: the simulator's
    projection never has to cut (the dispatch stays inside the agreement)."""
    folder = request.getfixturevalue(bundle)
    sim = Simulator(load_scenario("small").model_copy(update={"horizon_days": 0.5}))
    r = sim.run(CoordinatedPolicy(sim.world, station_policy=folder))
    check_invariants(r)
    k = compute_kpis(r)
    assert k["limit_violations"] == 0 and k["rate_cuts"] == 0
    assert (k["energy_delivered_kwh"] > 0) == (bundle == "squashed")  # NaN reads 0: nothing


def test_station_specs_rating_is_the_context_rating() -> None:
    world = Simulator(load_scenario("small")).world
    sim = Simulator(load_scenario("small"))
    sim.reset()
    ctx = station_contexts(sim.observation, world)
    assert [c.rated_kw for c in ctx] == pytest.approx(station_specs(world)[2])
