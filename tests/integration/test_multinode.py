"""A real two-node Ray cluster on this machine (`ray start --head`, then `ray start --address`
with a resource of its own): the coordinated `small` run places every station actor on the
second node and gives the in-process answer.

Both nodes run as `ray start --block` children of the test, so stopping them stops only this
cluster (a `ray stop` would also stop the session's own Ray). The driver is a process of its
own: this one already holds the session's Ray.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.grpc_harness import free_port

pytestmark = pytest.mark.ray

RAY = str(Path(sys.executable).parent / "ray")

DRIVER = r"""
import json, sys, time
import numpy as np
import ray
from evgrid.agents.coordinated import CoordinatedPolicy
from evgrid.envs import Simulator
from evgrid.scenario import load_scenario
from evgrid.transport.ray_actors import ensure_ray, ray_coordinated_policy

ensure_ray(sys.argv[1])
deadline = time.monotonic() + 60
while sum(n["Alive"] for n in ray.nodes()) < 2 and time.monotonic() < deadline:
    time.sleep(0.2)  # the second node joins
sim = Simulator(load_scenario("small").model_copy(update={"horizon_days": 0.25}))
ref = sim.run(CoordinatedPolicy(sim.world))
policy = ray_coordinated_policy(sim.world, stations_per_actor=1,
                                station_resource="evgrid_stations")
got = sim.run(policy)
nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
print(json.dumps({
    "max_abs_diff": float(np.abs(got.power_kw - ref.power_kw).max()),
    "energy_kwh": float(got.delivered_kwh.sum()),
    "pack_nodes": policy.station_transport.node_ids(),
    "driver_node": ray.get_runtime_context().get_node_id(),
    "station_nodes": [k for k, r in nodes.items() if "evgrid_stations" in r],
    "nodes": len(nodes),
}))
"""


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.terminate()  # --block: the node's processes go with it
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    out, _ = proc.communicate()
    return out or ""


def _wait_for_nodes(address: str, n: int, env: dict[str, str], timeout_s: float = 90) -> None:
    t0 = time.monotonic()
    probe = ("import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
             "print(sum(x['Alive'] for x in ray.nodes()))")
    while time.monotonic() - t0 < timeout_s:
        res = subprocess.run([sys.executable, "-c", probe, address], env=env,
                             capture_output=True, text=True, timeout=60)
        if res.returncode == 0 and res.stdout.strip().splitlines()[-1:] == [str(n)]:
            return
        time.sleep(1)
    raise AssertionError(f"{n} Ray nodes did not come up at {address}")


def test_two_nodes_station_actors_on_the_second_give_the_in_process_answer() -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    # A short temp dir of its own: Ray's socket paths must stay under 107 characters.
    tmp = tempfile.mkdtemp(prefix="evr", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # Ray 2.60 starts a cluster with token authentication, which a driver of another process
    # must be given; this throwaway cluster of one machine runs without.
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", RAY_AUTH_MODE="disabled")
    head = _start(["--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                   f"--temp-dir={tmp}", f"--dashboard-agent-listen-port={free_port()}",
                   f"--ray-client-server-port={free_port()}"], env)
    worker = None
    try:
        _wait_for_nodes(address, 1, env)
        worker = _start([f"--address={address}", "--num-cpus=1",
                         '--resources={"evgrid_stations": 1000}',
                         f"--dashboard-agent-listen-port={free_port()}"], env)
        res = subprocess.run([sys.executable, "-c", DRIVER, address], env=env,
                             capture_output=True, text=True, timeout=240)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        got = json.loads(res.stdout.strip().splitlines()[-1])
    finally:
        logs = [_stop(p) for p in (worker, head) if p is not None]
        shutil.rmtree(tmp, ignore_errors=True)
    assert got["nodes"] == 2, logs
    [second] = got["station_nodes"]
    assert second != got["driver_node"]
    assert got["pack_nodes"] == [second] * 3  # every station of `small`, one pack each
    assert got["energy_kwh"] > 0 and got["max_abs_diff"] <= 1e-6
