"""One ADMM round over gRPC with N edge stations on loopback.

The N edge stations run as asyncio tasks of `run_station` in one separate process (N
processes would not fit a 2-core machine; one process keeps the server and the clients on
different cores), each with its own channel and bidirectional stream to a real
`CoordinatorService` server on 127.0.0.1. Prints one JSON line in the
`benchmarks/admm.py` layout (transport "grpc"). Target (issue #3): ≤ 50 ms per round at N=100.
Usage: python benchmarks/grpc_round.py [--n 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import time
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numba

from evgrid.agents.station import StationConfig
from evgrid.agents.synthetic import random_instance
from evgrid.coordinator import AdmmConfig, MixedStations, PowerCoordinator, solve_period
from evgrid.coordinator.messages import Registration
from evgrid.transport.grpc_server import create_server
from evgrid.transport.grpc_station import run_station

TOKEN = "bench"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--horizon", type=int, default=96)
    args = ap.parse_args()
    cfg = AdmmConfig()
    inst = random_instance(args.n, args.horizon, seed=1)
    regs = [Registration(a, "station", z, c) for a, z, c in
            zip(inst.states, inst.grid_zones, inst.max_power_kw, strict=True)]
    server, port, hub = create_server("127.0.0.1:0", grid_zones=inst.zone_ids, dt_h=0.25,
                                      token=TOKEN, stations=regs, round_timeout_s=10.0)
    stop_clients = mp.get_context("spawn").Event()
    clients = mp.get_context("spawn").Process(
        target=run_clients, args=(port, args.n, args.horizon, stop_clients), daemon=True)
    clients.start()
    t = time.perf_counter()
    joined = hub.wait_for_stations(args.n, 120)
    connect_s = time.perf_counter() - t
    coord = PowerCoordinator(inst.zone_ids, cfg)
    for reg in sorted(hub.registrations(), key=lambda r: list(inst.states).index(r.agent_id)):
        coord.register(reg)
    transport = MixedStations([hub])
    transport.begin_period(inst.states)
    t = time.perf_counter()
    stats = solve_period(coord, transport, horizon_start=0, zone_limit_kw=inst.zone_limit_kw,
                         city_limit_kw=inst.city_limit_kw)
    wall = time.perf_counter() - t
    print(json.dumps({
        "benchmark": "admm", "n_stations": args.n, "horizon_steps": args.horizon,
        "transport": "grpc", "edge_clients": joined, "connect_s": round(connect_s, 2),
        "iterations": stats.iterations, "converged": bool(stats.converged),
        "gap_bound": stats.gap_bound if math.isfinite(stats.gap_bound) else None,
        "missing_proposals": stats.missing, "coupling_violation_rel": stats.violation_rel,
        "wall_ms": round(1000 * wall, 1),
        "ms_per_round": round(1000 * wall / max(stats.iterations, 1), 2),
    }), flush=True)
    stop_clients.set()
    clients.join(30)
    server.stop(grace_s=1.0)


def run_clients(port: int, n: int, horizon: int, stop_flag: Any) -> None:
    """The edge side: N `run_station` tasks in this process's event loop, on one kernel
    thread as N edge nodes would each have."""
    numba.set_num_threads(1)
    inst = random_instance(n, horizon, seed=1)
    config = StationConfig()

    async def serve() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(run_station(
            f"127.0.0.1:{port}", token=TOKEN, station_id=sid, grid_zone=zone, max_power_kw=cap,
            stop=stop, config=config))
            for sid, zone, cap in zip(inst.states, inst.grid_zones, inst.max_power_kw, strict=True)]
        while not stop_flag.is_set():
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(serve())

if __name__ == "__main__":
    main()
