"""What a dead or hung edge station costs a period, over real gRPC on loopback.

N edge stations (`run_station` tasks in a second process) serve a random N-station instance.
Periods are solved back to back in three phases of `--periods` each:

* clean: every station answers;
* dead: one station's process is gone (its stream closed): it is unreachable, dropped before
  round 0 with its fallback reserved, never waited for;
* hung: the same station is back as a process that connects and says Hello but never answers:
  its first period waits `drop_after` round timeouts and drops it; later periods wait for it
  only as long again as the others took (probation).

Prints one JSON object: per phase the median and max period wall [ms], rounds, certified
periods, and the ratio to the clean median. Target (issue 9): a period with a dead station costs
≤ 2× a clean one.
Usage: python benchmarks/dead_station.py [--n 20] [--periods 8] [--round-timeout-s 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import time
from dataclasses import replace
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import grpc
import numba
import numpy as np

from evgrid.agents.station import StationConfig
from evgrid.agents.synthetic import random_instance
from evgrid.coordinator import AdmmConfig, PowerCoordinator, solve_period
from evgrid.coordinator.messages import Registration
from evgrid.transport import codec
from evgrid.transport.grpc_server import create_server
from evgrid.transport.grpc_station import auth_metadata, run_station
from evgrid.transport.pb import coordinator_pb2 as pb

TOKEN = "bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=20, help="edge stations")
    ap.add_argument("--periods", type=int, default=8, help="periods per phase")
    ap.add_argument("--horizon", type=int, default=96)
    ap.add_argument("--round-timeout-s", type=float, default=1.0)
    args = ap.parse_args()
    numba.set_num_threads(1)
    inst = random_instance(args.n, args.horizon, seed=2)
    ids = list(inst.states)
    victim = ids[0]
    regs = [Registration(a, "station", z, c) for a, z, c in
            zip(ids, inst.grid_zones, inst.max_power_kw, strict=True)]
    server, port, hub = create_server("127.0.0.1:0", grid_zones=inst.zone_ids, dt_h=0.25,
                                      token=TOKEN, stations=regs,
                                      round_timeout_s=args.round_timeout_s)
    ctx = mp.get_context("spawn")
    commands = ctx.Queue()
    proc = ctx.Process(target=run_clients, args=(port, args.n, args.horizon, commands),
                       daemon=True)
    proc.start()
    hub.wait_for_stations(args.n, 120)
    coord = PowerCoordinator(inst.zone_ids, AdmmConfig())
    for reg in sorted(hub.registrations(), key=lambda r: ids.index(r.agent_id)):
        coord.register(reg)
    step = 0
    probation: frozenset[str] = frozenset()
    phases: dict[str, dict[str, Any]] = {}
    for phase in ("clean", "dead", "hung"):
        if phase == "dead":
            commands.put(("stop", victim))
            while victim in hub.connected():
                time.sleep(0.01)
        elif phase == "hung":
            commands.put(("mute", victim))
            while victim not in hub.connected():
                time.sleep(0.01)
        walls, rounds, certified = [], [], 0
        for _ in range(args.periods):
            t = time.perf_counter()  # the whole period: begin, rounds, done targets
            hub.begin_period({a: replace(st, horizon_start=step) for a, st in inst.states.items()},
                             optional=probation)
            stats = solve_period(coord, hub, horizon_start=step, zone_limit_kw=inst.zone_limit_kw,
                                 city_limit_kw=inst.city_limit_kw, optional=probation)
            probation = frozenset(stats.dropped)
            hub.finish_period(*coord.settle(), optional=probation)
            walls.append(1000 * (time.perf_counter() - t))
            rounds.append(stats.iterations)
            certified += int(stats.gap_bound <= coord.config.gap_tol)
            step += 1
        phases[phase] = {"period_ms_median": round(float(np.median(walls)), 1),
                         "period_ms_first": round(walls[0], 1),
                         "period_ms_max": round(max(walls), 1),
                         "rounds_median": float(np.median(rounds)),
                         "certified_periods": certified, "periods": args.periods}
    clean = phases["clean"]["period_ms_median"]
    for phase in ("dead", "hung"):
        phases[phase]["median_vs_clean"] = round(phases[phase]["period_ms_median"] / clean, 2)
    print(json.dumps({"benchmark": "dead_station", "stations": args.n,
                      "horizon_steps": args.horizon, "round_timeout_s": args.round_timeout_s,
                      **phases}), flush=True)
    commands.put(("quit", ""))
    proc.join(30)
    server.stop(grace_s=0.5)


def run_clients(port: int, n: int, horizon: int, commands: Any) -> None:
    """The edge side: every station's `run_station` task; on command, one stops ("stop") or
    is replaced by a client that never answers ("mute")."""
    numba.set_num_threads(1)
    inst = random_instance(n, horizon, seed=2)
    index = {a: i for i, a in enumerate(inst.states)}
    config = StationConfig()

    async def mute(sid: str) -> None:
        md = auth_metadata(TOKEN)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            reg = Registration(sid, "station", inst.grid_zones[index[sid]],
                               inst.max_power_kw[index[sid]])
            await channel.unary_unary("/evgrid.v1.CoordinatorService/Register")(
                codec.registration_to_proto(reg).SerializeToString(), metadata=md, timeout=10)
            call = channel.stream_stream("/evgrid.v1.CoordinatorService/Exchange")(metadata=md)
            await call.write(pb.ExchangeRequest(hello=pb.Hello(agent_id=sid)).SerializeToString())
            while await call.read() is not grpc.aio.EOF:
                pass

    async def serve() -> None:
        stops = {sid: asyncio.Event() for sid in inst.states}
        tasks: list[asyncio.Task[Any]] = [asyncio.create_task(run_station(
            f"127.0.0.1:{port}", token=TOKEN, station_id=sid, grid_zone=inst.grid_zones[i],
            max_power_kw=inst.max_power_kw[i], stop=stops[sid], config=config))
            for sid, i in index.items()]
        loop = asyncio.get_running_loop()
        while True:
            what, sid = await loop.run_in_executor(None, commands.get)
            if what == "stop":
                stops[sid].set()
            elif what == "mute":
                tasks.append(asyncio.create_task(mute(sid)))
            else:
                break
        for s in stops.values():
            s.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(serve())


if __name__ == "__main__":
    main()
