"""OCPP 2.0.1 round trip on loopback: a set-point to ``SetChargingProfile`` accepted.

A station's CSMS (``evgrid.field.csms``) and a simulated charge point (``evgrid.field.
chargepoint_sim``) with ``--evses`` EVSEs, each with an EV; then ``--rounds`` rounds of
set-points to every EVSE (one charger: its profiles go one after another, as OCPP allows one
open call per link). Prints one JSON object: per set-point (one call, answered) and per
round, median, p95 and max in ms. Target (issue 12): a set-point accepted within 20 ms.

Usage: python benchmarks/ocpp_roundtrip.py [--evses 10] [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import numpy as np

from evgrid.field.chargepoint_sim import EvSession, SimClock, SimulatedChargePoint
from evgrid.field.csms import SiteCsms
from evgrid.field.site import Site, SiteFile


async def measure(evses: int, rounds: int) -> dict[str, object]:
    site = Site(SiteFile.model_validate({"station_id": "bench", "chargers": [
        {"id": "cp1", "evses": evses, "max_kw": 22.0}]}))
    clock = SimClock(t0_s=time.time(), speed=1.0)
    csms = SiteCsms(site, clock=clock.now)
    port = await csms.start()
    sessions = [EvSession(e, clock.t0_s, clock.t0_s + 86400, 60.0, 22.0)
                for e in range(1, evses + 1)]
    cp = SimulatedChargePoint("cp1", f"ws://127.0.0.1:{port}", sessions, clock, evses=evses,
                              max_kw=22.0, tick_s=1.0)
    stop = asyncio.Event()
    task = asyncio.create_task(cp.run(stop))
    while not all(e.transaction for e in site.evses):
        await asyncio.sleep(0.01)
    rng = np.random.default_rng(0)
    per_round, accepted = [], 0
    for _ in range(rounds):
        sp = {i: float(rng.uniform(0, 22)) for i in range(evses)}
        res = await csms.apply(sp, duration_s=1800)
        per_round.append(res.seconds * 1000)
        accepted += res.accepted
    stop.set()
    await task
    await csms.close()
    r = np.array(per_round)
    per_sp = r / evses

    def stats(x: np.ndarray) -> dict[str, float]:
        return {"median": float(np.median(x)), "p95": float(np.percentile(x, 95)),
                "max": float(x.max())}

    return {"benchmark": "ocpp_roundtrip", "evses": evses, "rounds": rounds,
            "set_points": evses * rounds, "accepted": accepted,
            "ms_per_set_point": stats(per_sp), "ms_per_round": stats(r),
            "target_ms_per_set_point": 20.0,
            "met": bool(np.percentile(per_sp, 95) <= 20.0 and accepted == evses * rounds)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--evses", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(measure(args.evses, args.rounds)), indent=2))


if __name__ == "__main__":
    main()
