"""The gRPC test harness: real servers on loopback, real edge stations on an event loop of their
own, raw clients that misbehave. Shared by the gRPC test modules; nothing of ours is mocked."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from evgrid.agents.coordinated import station_config, station_registrations, station_specs
from evgrid.agents.edge import EdgeStation
from evgrid.agents.station import StationConfig, StationState, station_contexts, station_states
from evgrid.coordinator.admm import PowerCoordinator
from evgrid.coordinator.messages import Registration
from evgrid.transport.grpc_server import EdgeServer, GrpcStations, create_server
from evgrid.transport.grpc_station import (
    LinkState,
    auth_metadata,
    run_station,
)
from evgrid.transport.pb import coordinator_pb2 as pb
from evgrid.transport.pb import coordinator_pb2_grpc as pb_grpc
from tests.worlds import busy_period

TOKEN = "s3cret"
TLS = Path(__file__).parent / "data" / "tls"  # a self-signed test certificate, 100 years
MD = auth_metadata(TOKEN)


# -- harness ------------------------------------------------------------------------------------
@dataclass
class Edge:
    """A run_station task on the edge loop."""

    future: concurrent.futures.Future[EdgeStation]
    stop: asyncio.Event
    link: LinkState


class EdgeLoop:
    """The edge side's event loop, in its own thread (the test thread drives the hub)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.edges: list[Edge] = []

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def station(self, port: int, sid: str, zone: str, cap: float, **kw: Any) -> Edge:
        stop, link = asyncio.Event(), LinkState()
        host = kw.pop("host", "127.0.0.1")
        fut = self.submit(
            run_station(
                f"{host}:{port}",
                token=kw.pop("token", TOKEN),
                station_id=sid,
                grid_zone=zone,
                max_power_kw=cap,
                stop=stop,
                link=link,
                **kw,
            )
        )
        edge = Edge(fut, stop, link)
        self.edges.append(edge)
        return edge

    def halt(self, edge: Edge) -> EdgeStation:
        self.loop.call_soon_threadsafe(edge.stop.set)
        return edge.future.result(5)

    def close(self) -> None:
        for edge in self.edges:
            self.loop.call_soon_threadsafe(edge.stop.set)
        for edge in self.edges:
            with contextlib.suppress(Exception):  # a test may have expected it to fail
                edge.future.result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def edges() -> Iterator[EdgeLoop]:
    loop = EdgeLoop()
    yield loop
    loop.close()


#: The city file of the toy tests: station -> (grid zone, rated power [kW]).
ROSTER = {
    "s1": ("z1", 22.0), "s2": ("z1", 22.0), "s3": ("z1", 22.0), "good": ("z1", 33.0),
    "stale": ("z1", 20.0), "imposter": ("z1", 20.0), "nan": ("z1", 20.0),
    "short": ("z1", 20.0), "over": ("z1", 20.0), "warm": ("z1", 20.0), "tele": ("z1", 20.0),
    "depot": ("z1", 10.0), "mall": ("z1", 10.0),
}


def roster(spec: dict[str, tuple[str, float]] | None = None) -> list[Registration]:
    return [Registration(agent_id=a, kind="station", grid_zone=z, max_power_kw=c)
            for a, (z, c) in (spec or ROSTER).items()]


@pytest.fixture
def serve() -> Iterator[Callable[..., tuple[EdgeServer, int, GrpcStations]]]:
    servers: list[EdgeServer] = []

    def start(grid_zones: list[str], **kw: Any) -> tuple[EdgeServer, int, GrpcStations]:
        kw.setdefault("round_timeout_s", 3.0)
        kw.setdefault("dt_h", 0.25)
        kw.setdefault("stations", roster())
        if "auth" not in kw:
            kw.setdefault("token", TOKEN)
        server, port, hub = create_server(
            kw.pop("address", "127.0.0.1:0"), grid_zones=grid_zones, **kw
        )
        servers.append(server)
        return server, port, hub

    yield start
    for s in servers:
        s.stop(grace_s=0)


def wait_until(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def toy_state(sid: str, n: int = 3, h: int = 8, start: int = 40) -> StationState:
    """A hand-made station state (dict-backed, acnportal style): n EVs over h steps."""
    rng = np.random.default_rng(abs(hash(sid)) % 2**32)
    departure = start + rng.integers(2, h + 2, n)
    steps = np.arange(h)[None, :]
    return StationState(
        station_id=sid,
        horizon_start=start,
        dt_h=0.25,
        charger=np.arange(n) + 10 * len(sid),
        arrival_step=np.full(n, start - 2),
        departure_step=departure,
        upper_kw=np.where(steps < (departure - start)[:, None], 11.0, 0.0),
        eta=np.full(n, 0.95),
        owed_kwh=rng.uniform(5, 30, n),
        price_per_kwh=np.linspace(0.1, 0.3, h),
        carbon_kg_per_kwh=np.full(h, 0.3),
    )


def toy_coordinator(
    hub: GrpcStations,
    h: int = 8,
    limit_kw: float = 40.0,
) -> tuple[PowerCoordinator, np.ndarray, np.ndarray]:
    coord = PowerCoordinator(["z1"])
    for reg in sorted(hub.registrations(), key=lambda r: r.agent_id):
        coord.register(reg)
    return coord, np.full((h, 1), limit_kw), np.full(h, limit_kw)


def echo_proposal(sid: str, msg: pb.ExchangeResponse) -> pb.Proposal:
    """A well-formed answer to a target: zero power for every step."""
    t = msg.period.target if msg.WhichOneof("body") == "period" else msg.target
    h = len(t.z_kw)
    return pb.Proposal(
        round=t.round,
        agent_id=sid,
        horizon_start=t.horizon_start,
        plan_kw=[0.0] * h,
        participants=[0] * h,
        objective=0.0,
        start_kw=[0.0] * h if t.round == 0 else [],  # the warm start, round 0 only
    )


Script = Callable[[int, pb.ExchangeResponse], pb.Proposal]


async def rogue(port: int, sid: str, script: Script, cap: float = 20.0,
                extra: Callable[[int], pb.ExchangeRequest | None] | None = None) -> grpc.StatusCode:
    """A raw client: registers, says Hello, answers message k with ``script(k, msg)`` (and
    ``extra(k)`` after it, when that gives a message); returns the status the coordinator ends
    its stream with."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.CoordinatorServiceStub(channel)
        await stub.Register(
            pb.RegisterRequest(
                agent_id=sid, kind=pb.AGENT_KIND_STATION, grid_zone="z1", max_power_kw=cap
            ),
            metadata=MD,
            timeout=5,
        )
        call = stub.Exchange(metadata=MD, timeout=20)
        await call.write(pb.ExchangeRequest(hello=pb.Hello(agent_id=sid)))
        k = 0
        try:
            while True:
                msg = await call.read()
                if msg is grpc.aio.EOF:
                    return grpc.StatusCode.OK
                if msg.WhichOneof("body") == "welcome":  # the stream was accepted
                    continue
                await call.write(pb.ExchangeRequest(proposal=script(k, msg)))
                more = extra(k) if extra is not None else None
                if more is not None:
                    await call.write(more)
                k += 1
        except grpc.aio.AioRpcError as exc:
            return exc.code()


@pytest.fixture(scope="module")
def small() -> dict[str, Any]:
    """One control period of the bundled ``small`` city with EVs at every facility."""
    sim, obs = busy_period()
    sc = sim.scenario
    world = sim.world
    ids, zones, caps = station_specs(world)
    left = int((obs.ev_departure_step[obs.connected] - obs.t).max())
    h = max(1, min(round(24 / world.dt_h), left, obs.price_per_kwh.size))
    return dict(
        sc=sc,
        world=world,
        obs=obs,
        ids=ids,
        zones=zones,
        caps=caps,
        h=h,
        states=station_states(obs, ids, h, station_contexts(obs, world)),
        config=station_config(world),
    )


def start_small_edges(
    edges: EdgeLoop, port: int, small: dict[str, Any], config: StationConfig
) -> dict[str, Edge]:
    return {
        sid: edges.station(port, sid, z, c, config=config)
        for sid, z, c in zip(small["ids"], small["zones"], small["caps"], strict=True)
    }


def ordered_coordinator(hub: GrpcStations, small: dict[str, Any]) -> PowerCoordinator:
    coord = PowerCoordinator(small["world"].grid_ids)
    for reg in sorted(hub.registrations(), key=lambda r: small["ids"].index(r.agent_id)):
        coord.register(reg)
    return coord


def serve_small(serve: Callable[..., Any], small: dict[str, Any], **kw: Any) -> Any:
    """A server for the ``small`` city, its stations on the city file's terms."""
    return serve(small["world"].grid_ids, dt_h=small["world"].dt_h,
                 stations=station_registrations(small["world"]), **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


