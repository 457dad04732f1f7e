"""Load on the coordinator's gRPC service: N edge stations × R ADMM rounds on loopback.

N real `run_station` edge agents (asyncio tasks, spread over `--client-procs` processes so the
server keeps a core) register, open their streams and answer real ADMM rounds of a random
N-station instance (`evgrid.agents.synthetic`), period after period until R rounds have run.
Each round's wall time is the server's: targets out to every station until the last proposal
is in. Before the rounds, `--flood` unauthenticated 3 MiB calls hit the server (they must be
refused unread: the server's memory should not move).

Prints one JSON object: round time p50 / p95 / max [ms], lost (targets never answered, done
targets never acknowledged), late (answers after their round's deadline), duplicates (answers
to a round already answered: refused), refused messages, and the coordinator's RSS (now and its
high-water mark) before and after the flood and at the end.

Target (issue 9): 1,000 clients × 100 rounds on 2 cores, 0 lost, p95 ≤ 250 ms.
Usage: python benchmarks/grpc_load.py [--n 1000] [--rounds 100] [--client-procs 1] [--flood 40]
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
from evgrid.coordinator import AdmmConfig, PowerCoordinator
from evgrid.coordinator.messages import Registration
from evgrid.transport.grpc_server import create_server
from evgrid.transport.grpc_station import Backoff, run_station

TOKEN = "bench"


def rss_mb() -> dict[str, float]:
    """This process's resident memory now and at its peak [MB] (Linux /proc)."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="edge stations")
    ap.add_argument("--rounds", type=int, default=100, help="ADMM rounds to time")
    ap.add_argument("--horizon", type=int, default=96, help="steps per horizon")
    ap.add_argument("--client-procs", type=int, default=1, help="processes hosting the stations")
    ap.add_argument("--flood", type=int, default=40,
                    help="unauthenticated 3 MiB calls sent before the rounds (0: none)")
    ap.add_argument("--round-timeout-s", type=float, default=10.0)
    args = ap.parse_args()
    numba.set_num_threads(1)
    inst = random_instance(args.n, args.horizon, seed=1)
    ids = list(inst.states)
    regs = [Registration(a, "station", z, c, chargers=int(inst.states[a].charger.size))
            for a, z, c in zip(ids, inst.grid_zones, inst.max_power_kw, strict=True)]
    server, port, hub = create_server("127.0.0.1:0", grid_zones=inst.zone_ids, dt_h=0.25,
                                      token=TOKEN, stations=regs,
                                      round_timeout_s=args.round_timeout_s)
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    groups = [ids[k::args.client_procs] for k in range(args.client_procs)]
    procs = [ctx.Process(target=run_clients, args=(port, g, args.n, args.horizon, stop),
                         daemon=True) for g in groups]
    for p in procs:
        p.start()
    t = time.perf_counter()
    joined = hub.wait_for_stations(args.n, 600)
    connect_s = time.perf_counter() - t
    memory: dict[str, Any] = {"connected": rss_mb()}
    if args.flood:  # from another process, so only the server's memory is measured here
        with ctx.Pool(1) as pool:
            codes = pool.apply(flood, (port, args.flood))
        memory["after_flood"] = rss_mb()
        memory["flood_codes"] = sorted(set(codes))

    coord = PowerCoordinator(inst.zone_ids, AdmmConfig(max_iter=1000, deadline_s=600))
    for reg in sorted(hub.registrations(), key=lambda r: ids.index(r.agent_id)):
        coord.register(reg)
    round_ms: list[float] = []
    missing = periods = fallbacks = 0
    while len(round_ms) < args.rounds:
        # The same stations period after period, one step later each time.
        hub.begin_period({a: replace(st, horizon_start=periods) for a, st in inst.states.items()})
        targets = coord.begin(periods, inst.zone_limit_kw, inst.city_limit_kw,
                              absent=hub.unreachable())
        while not targets.done:
            t = time.perf_counter()
            props = hub.propose(targets)
            round_ms.append(1000 * (time.perf_counter() - t))
            targets = coord.update(props)
        missing += coord.stats.missing
        agreed, envelopes = coord.settle()
        fallbacks_before = hub.stats.fallbacks
        hub.finish_period(agreed, envelopes)
        fallbacks += hub.stats.fallbacks - fallbacks_before
        periods += 1
    stats = hub.stats
    memory["end"] = rss_mb()
    r = np.array(round_ms)
    print(json.dumps({
        "benchmark": "grpc_load", "clients": args.n, "client_processes": args.client_procs,
        "connected": joined, "connect_s": round(connect_s, 1), "horizon_steps": args.horizon,
        "rounds": int(r.size), "periods": periods,
        "round_ms": {"p50": round(float(np.percentile(r, 50)), 1),
                     "p95": round(float(np.percentile(r, 95)), 1),
                     "max": round(float(r.max()), 1)},
        "lost": {"proposals": missing, "executed": fallbacks},
        "late": stats.late_proposals,
        "duplicates_refused": stats.refused.get("FAILED_PRECONDITION", 0),
        "refused": stats.refused,
        "coordinator_rss_mb": memory,
    }), flush=True)
    stop.set()
    for p in procs:
        p.join(60)
    server.stop(grace_s=1.0)


def flood(port: int, calls: int) -> list[str]:
    """Unauthenticated 3 MiB Register calls, all at once; their status codes."""
    payload = b"\x00" * (3 << 20)
    with grpc.insecure_channel(f"127.0.0.1:{port}",
                               options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        call = ch.unary_unary("/evgrid.v1.CoordinatorService/Register")
        futures = [call.future(payload, timeout=30) for _ in range(calls)]
        return [f.exception().code().name if f.exception() else "OK"
                for f in futures]


def run_clients(port: int, ids: list[str], n: int, horizon: int, stop_flag: Any) -> None:
    """The edge side: `run_station` tasks in this process's event loop, one kernel thread."""
    numba.set_num_threads(1)
    inst = random_instance(n, horizon, seed=1)
    index = {a: i for i, a in enumerate(inst.states)}
    config = StationConfig()

    async def serve() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(run_station(
            f"127.0.0.1:{port}", token=TOKEN, station_id=sid,
            grid_zone=inst.grid_zones[index[sid]], max_power_kw=inst.max_power_kw[index[sid]],
            stop=stop, config=config, backoff=Backoff(max_s=2.0),
            call_timeout_s=60.0)) for sid in ids]
        while not stop_flag.is_set():
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(serve())


if __name__ == "__main__":
    main()
