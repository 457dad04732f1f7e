"""Importing the edge station must not break a host process's compiled kernels.

Setting NUMBA_NUM_THREADS at import once did: a process whose kernel threads had started
(a test session, a benchmark with in-process edge clients) then failed its next compilation
with "Cannot set NUMBA_NUM_THREADS to a different value". An empty kernel cache makes the
child compile, as a fresh clone does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = """
import numpy as np
from numba import njit
from evgrid.agents.local_qp import solve_local
solve_local(np.ones((2, 3)), np.zeros(3), np.ones((2, 3)), np.ones(2), rho=1.0, wear=0.1)
import evgrid.transport.grpc_station  # an edge station hosted by this process
njit(lambda v: v + 1)(1)  # compiling after that still works
print("ok")
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="on one core numba already defaults to one "
                    "thread, so the clash this guards against cannot happen")
def test_edge_import_leaves_kernel_threads_alone(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    env["NUMBA_CACHE_DIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
