"""One ADMM round over gRPC with N edge stations on loopback.

The N edge stations run as asyncio tasks of `run_station` in one background event loop (N
processes would not fit a 2-core machine), each with its own channel and bidirectional
stream to a real `CoordinatorService` server on 127.0.0.1. Prints one JSON line in the
`benchmarks/admm.py` layout (transport "grpc"). Target (issue #3): ≤ 50 ms per round at N=100.
Usage: python benchmarks/grpc_round.py [--n 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from evgrid.agents.station import StationConfig
from evgrid.agents.synthetic import random_instance
from evgrid.coordinator import AdmmConfig, MixedStations, PowerCoordinator, solve_period
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
    server, port, hub = create_server("127.0.0.1:0", grid_zones=inst.zone_ids, dt_h=0.25,
                                      token=TOKEN, round_timeout_s=10.0)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    stops = []
    for sid, zone, cap in zip(inst.states, inst.grid_zones, inst.max_power_kw, strict=True):
        stop = asyncio.Event()
        stops.append(stop)
        asyncio.run_coroutine_threadsafe(run_station(
            f"127.0.0.1:{port}", token=TOKEN, station_id=sid, grid_zone=zone, max_power_kw=cap,
            stop=stop, config=StationConfig(alpha=cfg.alpha)), loop)
    t = time.perf_counter()
    joined = hub.wait_for_stations(args.n, 60)
    connect_s = time.perf_counter() - t
    coord = PowerCoordinator(inst.zone_ids, cfg)
    for reg in sorted(hub.registrations(), key=lambda r: list(inst.states).index(r.agent_id)):
        coord.register(reg)
    hub.attach(coord)
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
        "missing_proposals": stats.missing, "coupling_violation_rel": stats.violation_rel,
        "wall_ms": round(1000 * wall, 1),
        "ms_per_round": round(1000 * wall / max(stats.iterations, 1), 2),
    }), flush=True)
    for stop in stops:
        loop.call_soon_threadsafe(stop.set)
    server.stop(grace_s=0)


if __name__ == "__main__":
    main()
