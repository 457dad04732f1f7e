"""Field mode end to end on loopback: a coordinator with no simulator (``run_field_day``),
field stations that serve their chargers over OCPP 2.0.1 and claim their own state over gRPC,
and simulated charge points whose EVs follow the profiles. No limit is exceeded as metered;
a claim beyond a station's terms in the city file is refused, and the day goes on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from evgrid.agents.coordinated import station_config, station_registrations, station_specs
from evgrid.envs.world import build_world
from evgrid.field.chargepoint_sim import SimClock, SimulatedChargePoint, daily_sessions
from evgrid.field.csms import SiteCsms
from evgrid.field.run import FieldStation, run_field_day, site_for
from evgrid.field.site import Site
from evgrid.scenario import load_scenario
from evgrid.transport import codec
from evgrid.transport.codec import MessageError
from tests.grpc_harness import EdgeLoop, wait_until

pytestmark = pytest.mark.grpc

STEPS = 8
SPEED = 1200.0  # a 15-minute period in 0.75 s: the ADMM over gRPC takes 0.1-0.2 s of it


Field = tuple[FieldStation, SimulatedChargePoint, asyncio.Event, "asyncio.Task[None]"]


def _shutdown(edges: EdgeLoop, *fields: Field) -> None:
    """Stop the charge points, then close the CSMSs, before the edge loop goes."""
    async def close() -> None:
        for _, _, stop, _ in fields:
            stop.set()
        _, late = await asyncio.wait([task for *_, task in fields], timeout=5)
        for task in late:  # a loaded machine: cancel what has not ended, and let it unwind
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        for fs, *_ in fields:
            await fs.drain()
            await fs.csms.close()

    edges.submit(close()).result(15)


def _field(edges: EdgeLoop, world: Any, port: int, clock: SimClock, sid: str, k: int,
           lie: bool = False) -> Field:
    """One field station (its CSMS and its gRPC link) and its charge point, on the edge loop."""
    ids, zones, caps = station_specs(world)
    i = ids.index(sid)
    site_file = site_for(world, sid)

    async def start() -> Field:
        site = Site(site_file)
        csms = SiteCsms(site, clock=clock.now)
        ocpp = await csms.start()
        fs = FieldStation(site, csms, world, clock, caps[i])
        [spec] = site_file.chargers
        kw = spec.max_kw if isinstance(spec.max_kw, list) else [spec.max_kw] * spec.evses
        # EVs that are there from the start, so every period has some.
        sessions = daily_sessions(spec.evses, kw, clock.t0_s - 3600, hours=3, seed=k)
        cp = SimulatedChargePoint(spec.id, f"ws://127.0.0.1:{ocpp}", sessions, clock,
                                  evses=spec.evses, max_kw=kw, tick_s=0.02)
        stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(cp.run(stop, backoff_max_s=0.1))
        return fs, cp, stop, task

    fs, cp, stop, task = edges.submit(start()).result(10)
    read = fs.read_state
    if lie:  # claims twice the EV limit the city file allows the station
        def read(start: int, h: int) -> Any:
            st = fs.read_state(start, h)
            return replace(st, upper_kw=st.upper_kw * 0 + 2 * caps[i])
    edges.station(port, sid, zones[i], caps[i], config=station_config(world), read_state=read,
                  read_power=fs.read_power, on_setpoints=fs.setpoints,
                  step_s=world.dt_h * 3600 / SPEED)
    return fs, cp, stop, task


@pytest.fixture
def small_world() -> Any:
    return build_world(load_scenario("small"))


@pytest.fixture
def fields(edges: EdgeLoop) -> Iterator[list[Field]]:
    """The test's field stations, shut down even when it fails: a charge point left ticking
    and a CSMS left serving would load the next tests (and its gRPC threads any fork)."""
    started: list[Field] = []
    yield started
    with contextlib.suppress(Exception):
        _shutdown(edges, *started)


def _ready(*fields: Field) -> None:
    """Wait until every charge point has booted and reported its EVs to its CSMS: on a
    loaded machine a period that begins before that would have no EVs to charge."""
    wait_until(lambda: all(any(e.transaction for e in fs.site.evses) for fs, *_ in fields),
               timeout_s=15)


def test_a_field_day_keeps_every_limit_as_metered(serve, edges, fields, small_world) -> None:
    world = small_world
    _, port, hub = serve(list(world.grid_ids), dt_h=world.dt_h,
                         stations=station_registrations(world), round_timeout_s=2.0)
    clock = SimClock(t0_s=time.time() + 1.0, speed=SPEED, epoch_s=time.time() + 1.0)
    field = {sid: _field(edges, world, port, clock, sid, k)
             for k, sid in enumerate(["depot", "station"])}
    fields.extend(field.values())
    assert hub.wait_for_stations(2, 10) == 2
    _ready(*field.values())
    day = run_field_day(world, hub, clock, steps=STEPS)
    hub.farewell("the day is over", STEPS - 1)
    k = day.kpis(world)
    assert k["periods"] == STEPS and k["admm_missing_proposals"] == 0
    assert k["claims_refused"] == 0
    assert k["zone_violations_metered"] == 0 and k["city_violations_metered"] == 0
    assert k["energy_executed_kwh"] > 0 and k["energy_metered_kwh"] > 0
    for sid, (fs, cp, _, _) in field.items():
        edges.submit(fs.drain()).result(10)
        assert len(fs.applied) >= STEPS - 1, sid
        assert all(r.rejected == 0 for r in fs.applied), sid
        # What each station's chargers metered never exceeds what it executed (its share).
        ex, me = day.executed_kw[sid], day.metered_kw[sid]
        assert (me[:-1] <= ex[:-1] + 1e-3).all(), (sid, me, ex)
        assert cp.peak_over_kw <= 1e-6 and not any(e.ignoring for e in fs.site.evses)


def test_a_claim_beyond_the_city_file_is_refused(serve, edges, fields, small_world) -> None:
    world = small_world
    _, port, hub = serve(list(world.grid_ids), dt_h=world.dt_h,
                         stations=station_registrations(world), round_timeout_s=0.5)
    clock = SimClock(t0_s=time.time() + 1.0, speed=SPEED, epoch_s=time.time() + 1.0)
    honest = _field(edges, world, port, clock, "depot", 0)
    liar = _field(edges, world, port, clock, "station", 1, lie=True)
    fields.extend([honest, liar])
    assert hub.wait_for_stations(2, 10) == 2
    _ready(honest, liar)
    day = run_field_day(world, hub, clock, steps=3)
    assert day.claims_refused >= 1, day  # the liar's claim: refused, its stream ended
    assert day.executed_kw["depot"].sum() > 0, day  # the honest one went on
    assert day.zone_violations == 0


def test_claim_checks(small_world) -> None:
    """Each of a claim's terms is checked (codec.check_state_claim)."""
    from evgrid.coordinator.messages import StationState

    [reg] = [r for r in station_registrations(small_world) if r.agent_id == "depot"]
    h = 4
    ok = StationState("depot", 10, 0.25, np.array([0, 3]), np.array([8, 9]), np.array([20, 30]),
                      np.full((2, h), 11.0), np.array([0.95, 0.95]), np.array([10.0, 5.0]),
                      np.full(h, 0.2), np.zeros(h))
    codec.check_state_claim(codec.state_to_proto(ok), reg, horizon_start=10, horizon=h)
    bad = {
        "for step": replace(ok, horizon_start=11),
        "EVs on chargers": replace(ok, charger=np.array([0, 12])),
        "EVs on chargers ": replace(ok, charger=np.array([3, 3])),
        "EV limits": replace(ok, upper_kw=np.full((2, h), 1e4)),
        "efficiencies": replace(ok, eta=np.array([1.5, 0.9])),
        "energy owed": replace(ok, owed_kwh=np.array([1e9, 1.0])),
        "already left": replace(ok, departure_step=np.array([10, 30])),
        "on the stream of": replace(ok, station_id="mall"),
    }
    for says, st in bad.items():
        with pytest.raises(MessageError, match=says.strip()):
            codec.check_state_claim(codec.state_to_proto(st), reg, horizon_start=10,
                                    horizon=h)


def test_a_charger_ignoring_its_profile_is_paid_for_by_the_others(small_world) -> None:
    """Its draw above its set-point comes off the other EVs' set-points: the site as metered
    stays within what the station agreed."""
    site = Site(site_for(small_world, "depot"))
    for e in site.evses[:4]:
        e.transaction, e.online, e.status = f"t{e.index}", True, "Occupied"
    site.evses[0].ignoring, site.evses[0].power_kw = True, 7.4  # its rating, not its 1 kW
    fs = FieldStation(site, SiteCsms(site), small_world, SimClock(0.0), 168.8)
    sp = fs.site_setpoints(np.array([0, 1, 2]), np.array([1.0, 5.0, 5.0]))
    assert set(sp) == {0, 1, 2, 3} and sp[3] == 0.0  # an EV the state left out: 0
    assert sp[0] == 1.0 and sp[1] == sp[2] == pytest.approx(5.0 - 6.4 / 2)
    metered = site.evses[0].power_kw + sp[1] + sp[2] + sp[3]
    assert metered == pytest.approx(11.0)  # what the station agreed
