"""`make field-demo`: a field day on loopback, every piece its own process.

A coordinator in field mode (`evgrid coordinator --field`), one field station per facility of
the scenario (`evgrid station --site`, each the OCPP 2.0.1 CSMS of its chargers), and one
simulated charge point per station (`evgrid chargepoint-sim`, its EVSEs numbered as the city
file numbers the facility's chargers), all on one fast clock. One charge point drops its link
mid-day and reconnects. At the end it prints the coordinator's KPI table and each station's
and charge point's last word, and checks the targets (0 limit violations as metered, set-points
delivered to every connector with an EV each period, the reconnect survived); exit 1 if one is
missed.

Usage: python scripts/field_demo.py [--scenario small] [--speed 900] [--steps 96]
[--out runs/field-demo]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

TOKEN = "field-demo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default="small")
    ap.add_argument("--speed", type=float, default=900.0,
                    help="simulated seconds per real second (900: a 15-minute period a second)")
    ap.add_argument("--steps", type=int, default=96, help="periods to run (96: a day)")
    ap.add_argument("--out", type=Path, default=Path("runs/field-demo"))
    args = ap.parse_args()

    from evgrid.envs.world import build_world
    from evgrid.field.run import site_for
    from evgrid.scenario import load_scenario

    world = build_world(load_scenario(args.scenario))
    out = args.out
    (out / "sites").mkdir(parents=True, exist_ok=True)
    evgrid = [sys.executable, "-m", "evgrid.cli"]
    env = {**os.environ, "EVGRID_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    grpc_port = free_port()
    start_at = time.time() + 15.0  # time for every process to start and connect
    clock = ["--speed", str(args.speed), "--start-at", f"{start_at:.3f}"]
    procs: dict[str, subprocess.Popen[str]] = {}

    def spawn(name: str, argv: list[str]) -> None:
        log = (out / f"{name}.log").open("w")
        procs[name] = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       text=True)

    spawn("coordinator", [*evgrid, "coordinator", "--field", "--scenario", args.scenario,
                          "--port", str(grpc_port), "--expect-stations",
                          str(len(world.facility_ids)), "--wait-s", "60", "--steps",
                          str(args.steps), "--out", str(out / "coordinator"), "--overwrite",
                          *clock])
    for k, sid in enumerate(world.facility_ids):
        site = site_for(world, sid)
        path = out / "sites" / f"{sid}.yaml"
        path.write_text(yaml.safe_dump(site.model_dump(mode="json"), sort_keys=False))
        ocpp = free_port()
        spawn(f"station-{sid}", [*evgrid, "station", "--site", str(path), "--scenario",
                                 args.scenario, "--coordinator", f"127.0.0.1:{grpc_port}",
                                 "--ocpp-port", str(ocpp), *clock])
        for cp in site.chargers:
            kw = cp.max_kw if isinstance(cp.max_kw, list) else [cp.max_kw] * cp.evses
            drop = ["--drop-at-h", "6", "--drop-for-s", "2"] if k == 0 else []
            spawn(f"chargepoint-{cp.id}", [
                *evgrid, "chargepoint-sim", "--csms", f"ws://127.0.0.1:{ocpp}", "--id", cp.id,
                "--evses", str(cp.evses), "--max-kw", ",".join(f"{x:g}" for x in kw),
                "--seed", str(k), "--hours", str(args.steps * world.dt_h), "--tick-s", "0.1",
                *drop, *clock])
    print(f"field demo: {len(procs)} processes; logs in {out}/", flush=True)
    try:
        code = procs["coordinator"].wait(timeout=120 + args.steps * world.dt_h * 3600
                                         / args.speed * 3)
    finally:
        time.sleep(2.0)  # the stations stop by themselves on the coordinator's farewell
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
    print((out / "coordinator.log").read_text()[-4000:])
    missed = []
    if code != 0:
        missed.append(f"the coordinator exited {code}")
    else:
        res = json.loads((out / "coordinator" / "results.json").read_text())["kpis"]
        if res["zone_violations_metered"] or res["city_violations_metered"]:
            missed.append("limit violations as metered")
        if res["periods"] != args.steps:
            missed.append(f"{res['periods']} periods of {args.steps}")
    for name in procs:
        if name == "coordinator":
            continue
        text = (out / f"{name}.log").read_text()
        said = re.findall(r"^(?:station|charge point) \S+: \d+ (?:periods|connections).*$",
                          text, re.M)
        print(f"{name}: {said[-1] if said else '(nothing)'}")
        m = re.search(r"(\d+) periods of set-points, (\d+) delivered", text)
        # (more periods than the day's: it ran its fallback after the coordinator left)
        if name.startswith("station") and (not m or m.group(1) != m.group(2)
                                           or int(m.group(1)) < args.steps):
            missed.append(f"{name}: set-points not delivered every period")
        m = re.search(r"(\d+) connections", text)
        dropped = "--drop-at-h" in " ".join(str(a) for a in procs[name].args)
        if dropped and (not m or int(m.group(1)) < 2):
            missed.append(f"{name}: no reconnect")
    print("targets: " + ("all met" if not missed else "MISSED: " + "; ".join(missed)))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
