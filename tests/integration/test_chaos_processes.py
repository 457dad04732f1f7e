"""Chaos with real processes: an edge station killed and restarted, and the coordinator killed
(SIGKILL) and resumed from its checkpoint. The day completes, no executed schedule breaks a
limit, and no step is applied twice, by the simulation or by a station."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.grpc_harness import TOKEN, free_port

pytestmark = pytest.mark.grpc

CLI = [sys.executable, "-c", "from evgrid.cli import main; main()"]


def progress_step(out: Path) -> int:
    """The step the coordinator's checkpoint is at (-1 before the first)."""
    try:
        with np.load(out / "checkpoint" / "progress.npz", allow_pickle=False) as d:
            return int(json.loads(str(d["meta"]))["step"])
    except (OSError, ValueError, KeyError):
        return -1


def wait_for_step(out: Path, step: int, proc: subprocess.Popen[str], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while progress_step(out) < step:
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, f"step {step} not reached"
        time.sleep(0.05)


def test_killed_processes_resume_and_repeat_no_step(tmp_path, small_copy, write_yaml) -> None:
    small_copy["horizon_days"] = 0.5  # 48 steps
    scenario = str(write_yaml(small_copy))
    port = str(free_port())
    out = tmp_path / "out"
    env = {**os.environ, "EVGRID_TOKEN": TOKEN}

    def start(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def coordinator(*args: str) -> subprocess.Popen[str]:
        return start("coordinator", "--scenario", scenario, "--port", port, "--no-offline",
                     "-q", "--round-timeout-s", "0.5", "--wait-s", "60", *args)

    def station(sid: str) -> subprocess.Popen[str]:
        return start("station", "--station-id", sid, "--scenario", scenario, "--coordinator",
                     f"127.0.0.1:{port}", "--backoff-max-s", "0.2", "--step-s", "0.05",
                     "--setpoint-log", str(tmp_path / f"{sid}.csv"))

    procs: list[subprocess.Popen[str]] = []
    try:
        first = coordinator("--expect-stations", "2", "--out", str(out))
        procs += [first, station("depot"), station("station")]
        wait_for_step(out, 8, first)
        procs[1].kill()  # an edge node dies: dropped, its fallback reserved
        wait_for_step(out, 14, first)
        procs[1] = station("depot")  # ... and comes back
        wait_for_step(out, 22, first)
        first.kill()  # the coordinator dies
        killed_at = progress_step(out)
        first.wait(10)
        time.sleep(0.5)  # the stations run on their own clock meanwhile
        second = coordinator("--resume", str(out))
        procs.append(second)
        log, _ = second.communicate(timeout=180)
        assert second.returncode == 0, log
        assert f"resuming small at step {killed_at}" in log, log
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    results = json.loads((out / "results.json").read_text())
    kpis = results["policies"]["coordinated"]
    assert results["steps"] == 48 and kpis["limit_violations"] == 0, kpis
    assert kpis["admm_dropped_station_periods"] > 0
    assert kpis["admm_periods"] == 48, "every period solved once: none lost, none repeated"
    assert not (out / "checkpoint").exists(), "a finished run removes its checkpoint"
    assert killed_at >= 22
    for sid in ("depot", "station"):
        with (tmp_path / f"{sid}.csv").open() as fh:
            steps = [int(row["step"]) for row in csv.DictReader(fh)]
        twice = [s for s, n in Counter(steps).items() if n > 1]
        assert steps and not twice, f"{sid} applied steps {twice} twice"
