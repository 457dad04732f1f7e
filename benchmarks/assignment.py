"""Seed 003's algorithm comparison (003_48b05ca88a329b62.txt): HASP vs DE-SK vs BA vs TABU.

Solves the 21 instances of the paper's scenario table (``PAPER_SCENARIOS``, random instances
from ``evgrid.optim.assignment.make_instance``) exactly with HiGHS and with each heuristic, per
seed, and prints JSON rows:

- ``part: "instance"`` — one per (seed, scenario, instance, method): objective, gap to the
  MILP optimum (%), success (within 1e-6 relative), feasibility, seconds;
- ``part: "summary"`` — per method: success % and mean gap % (mean and sd over seeds),
  feasibility failures, mean / median seconds, beside the paper's success % and mean time;
- ``part: "paper_fitness"`` — the paper's best-fitness table, for reference (its instances
  are not public, so the values are not comparable with ours).

Usage: python benchmarks/assignment.py [--quick] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from evgrid.evaluation.paper003_gap import (
    PAPER_FITNESS,
    PAPER_SUCCESS_PCT,
    PAPER_TIME_S,
    compare_algorithms,
)


def clean(v: Any) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 6)
    return v


def emit(row: dict[str, Any]) -> None:
    print(json.dumps({k: clean(v) for k, v in row.items()}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="three small instances, one seed")
    ap.add_argument("--seeds", type=int, default=3, help="seeds (instance draws) (default 3)")
    ap.add_argument("--no-rows", action="store_true", help="print the summary only")
    args = ap.parse_args()
    seeds = [0] if args.quick else list(range(args.seeds))

    def progress(what: str, done: int, total: int) -> None:
        print(f"[{done}/{total}] {what}", file=sys.stderr, flush=True)

    res = compare_algorithms(seeds, quick=args.quick, progress=progress)
    if not args.no_rows:
        for r in res["rows"]:
            emit({"benchmark": "assignment", "part": "instance", **r})
    for method, s in res["summary"].items():
        emit({"benchmark": "assignment", "part": "summary", "method": method,
              "seeds": len(seeds), "instances": res["instances"], **s,
              "paper_success_pct": PAPER_SUCCESS_PCT.get(method),
              "paper_seconds_mean": PAPER_TIME_S.get(method)})
    for (sc, idx), vals in PAPER_FITNESS.items():
        emit({"benchmark": "assignment", "part": "paper_fitness", "scenario": sc,
              "instance": idx, **vals})


if __name__ == "__main__":
    main()
