"""EdgeStation: the same answers as an in-process pack, and a fallback that keeps its word."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evgrid.agents.coordinated import station_config, station_safe_share, station_specs
from evgrid.agents.edge import EdgeStation, fallback_schedule
from evgrid.agents.station import StationPack, StationState, station_states
from evgrid.coordinator.admm import PowerCoordinator
from evgrid.coordinator.fallback import Envelope
from evgrid.coordinator.messages import ConsensusTargets
from tests.worlds import busy_period


def random_state(seed: int, n: int, h: int, start: int = 10) -> StationState:
    """A station with ``n`` EVs over ``h`` steps (dict-backed: no simulator needed)."""
    rng = np.random.default_rng(seed)
    departure = start + rng.integers(1, h + 3, n)
    rate = rng.choice([3.7, 7.4, 11.0, 22.0], n)
    steps = np.arange(h)[None, :]
    return StationState(
        station_id="s",
        horizon_start=start,
        dt_h=0.25,
        charger=rng.permutation(3 * n)[:n],
        arrival_step=np.full(n, start - 1),
        departure_step=departure,
        upper_kw=np.where(steps < (departure - start)[:, None], rate[:, None], 0.0),
        eta=rng.uniform(0.85, 1.0, n),
        owed_kwh=rng.uniform(0.0, 40.0, n),
        price_per_kwh=rng.uniform(0.1, 0.4, h),
        carbon_kg_per_kwh=rng.uniform(0.2, 0.5, h),
    )


def done_targets(z: np.ndarray, start: int) -> ConsensusTargets:
    return ConsensusTargets.per_station(9, start, ("s",), z[None, :], np.zeros((1, z.size)), 0.05,
                                        done=True)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 8),
    h=st.integers(1, 12),
    scale=st.floats(-20.0, 120.0),
    step_off=st.integers(-3, 15),
    safe=st.floats(0.0, 50.0),
)
def test_fallback_never_exceeds_its_envelope_or_its_safe_share(
    seed: int, n: int, h: int, scale: float, step_off: int, safe: float
) -> None:
    start = 10
    rng = np.random.default_rng(seed + 1)
    envelope = Envelope(start, scale * rng.uniform(-0.2, 1.0, h))  # z may dip below 0
    step = start + step_off
    st_now = random_state(seed + 2, n, h, step)  # the EVs the station sees then
    chargers, kw = fallback_schedule(st_now, envelope, step, safe)
    inside = 0 <= step_off < h
    budget = max(envelope.kw[step_off], 0.0) if inside else safe
    assert np.array_equal(chargers, st_now.charger)
    assert kw.sum() <= budget + 1e-9, "fallback drew more than its envelope / safe share"
    assert (kw >= 0).all() and (kw <= st_now.upper_kw[:, 0] + 1e-12).all()


def test_past_its_envelope_a_station_draws_its_safe_share() -> None:
    safe = np.full(50, 4.0)
    edge = EdgeStation("s", "g", 100.0, safe_share_kw=safe)
    state = random_state(3, 5, 6, start=10)
    assert 0 < edge.fallback(10, state)[1].sum() <= 4.0 + 1e-9, "no agreement yet: safe share"
    edge.on_period(state, ConsensusTargets.per_station(0, 10, ("s",), np.zeros((1, 6)), np.zeros((1, 6)), 0.05))
    _, _, env = edge.on_done(done_targets(np.full(6, 30.0), 10))
    assert np.array_equal(env, np.full(6, 30.0)) and edge.envelope.start == 10
    assert 4.0 < edge.fallback(15, random_state(4, 5, 6, start=15))[1].sum() <= 30.0 + 1e-9
    for step in (16, 17, 40, 9):
        assert edge.fallback(step, random_state(4, 5, 6, start=step))[1].sum() <= 4.0 + 1e-9
    assert edge.fallback(60, random_state(4, 5, 6, start=60))[1].sum() == 0.0, "past the world"


def test_safe_shares_of_all_stations_fit_every_limit() -> None:
    """Every station falling back on its safe share at once stays within every zone and the
    city limit, at every step (the reason a station may draw it without asking)."""
    sim, _ = busy_period()
    w = sim.world
    ids, zones, _ = station_specs(w)
    shares = np.stack([station_safe_share(w, i) for i in ids])  # [F, T]
    assert (shares.sum(0) <= w.city_limit_kw * (1 + 1e-12)).all()
    for g, z in enumerate(w.grid_ids):
        mine = np.array([zz == z for zz in zones])
        assert (shares[mine].sum(0) <= w.zone_limit_kw[:, g] * (1 + 1e-12)).all()


def test_done_schedule_is_the_fallback_at_the_envelope_start() -> None:
    """Executed and fallback schedules draw the same budget (only its source differs); the
    executed one shares it by the station's plan, the fallback (no plan) least laxity first."""
    edge = EdgeStation("s", "g", 100.0)
    state = random_state(7, 6, 8, start=10)
    edge.on_period(state, ConsensusTargets.per_station(0, 10, ("s",), np.zeros((1, 8)), np.zeros((1, 8)), 0.05))
    z = np.array([-1.0, 12.0, 5.0, 0, 0, 0, 0, 0])
    chargers, kw, _ = edge.on_done(done_targets(z, 10))
    assert kw.sum() == 0.0, "agreed = max(z[0], 0)"
    z[0] = 17.5
    chargers, kw, _ = edge.on_done(done_targets(z, 10))
    fb_chargers, fb_kw = edge.fallback(10)
    assert np.array_equal(chargers, fb_chargers) and kw.sum() == pytest.approx(fb_kw.sum())
    assert kw.sum() == pytest.approx(min(17.5, state.upper_kw[:, 0].sum()))


@pytest.fixture(scope="module")
def small_period():
    sim, obs = busy_period()
    ids, zones, caps = station_specs(sim.world)
    h = 32
    return sim.world, obs, (ids, zones, caps), station_states(obs, ids, h), h


def test_edge_answers_equal_the_in_process_pack(small_period) -> None:
    world, obs, (ids, zones, caps), states, h = small_period
    cfg = station_config(world)
    pack = StationPack(ids, zones, caps, cfg)
    edges = {i: EdgeStation(i, z, c, cfg) for i, z, c in zip(ids, zones, caps, strict=True)}
    coord = PowerCoordinator(world.grid_ids)
    for reg in pack.registrations():
        coord.register(reg)
    assert [e.registration for e in edges.values()] == pack.registrations()
    targets = coord.begin(obs.t, obs.zone_limit_kw[:h], obs.city_limit_kw[:h])
    pack.begin_period(states)
    for rnd in range(6):
        expect = pack.propose(targets)
        for row, sid in enumerate(ids):
            mine = targets.select([sid])
            got = (
                edges[sid].on_period(states[sid], mine) if rnd == 0 else edges[sid].on_target(mine)
            )
            want = expect.take(np.array([row]))
            assert got.agent_ids == (sid,) and got.round == targets.round
            for name in ("plan_kw", "participants", "objective"):
                np.testing.assert_allclose(
                    getattr(got, name),
                    getattr(want, name),
                    rtol=1e-12,
                    atol=1e-12,
                    err_msg=f"{sid} round {rnd}: {name}",
                )
        targets = coord.update(expect)
