"""Will a run of this scenario fit in memory? A cheap estimate, checked when a scenario loads.

A scenario can be valid field by field and still be impossible on the machine at hand: the
simulator keeps [steps × chargers] arrays per run (see ``Simulator.reset``), and 10^6 chargers
at Δt = 1 min over a year is 4 TiB per array. Finding that out by running means minutes of
swapping and then the OOM killer, so :func:`check_memory` refuses it at the door, before
anything is allocated, in one line that says the estimate, the memory available and what to
shrink. ``evgrid validate`` and ``evgrid run`` both pass through it (it is called by
:func:`evgrid.scenario.loader.parse_scenario`).

The estimate is of an ``evgrid run`` with the default policies and the offline bound, from the
scenario alone (no world is built, no session drawn: it costs microseconds). Coefficients were
measured on ``city`` and ``small`` (peak RSS, numpy 2.4, cvxpy 1.9 + HiGHS) and rounded up:

* ``steps × chargers`` cells at 153 B: each kept run holds ``ev_at_charger`` (int64) and
  ``power_kw`` (float64), 16 B, for the 6 default policies, the offline optimum and the live
  simulator (8 runs); plus the outage mask (1 B), the offline schedule (8 B) and per-facility
  slices taken by the KPI breakdown (16 B). Measured: 33 B per cell for one policy, 102 B for
  five.
* offline LP at 3,000 B per variable (cvxpy canonicalisation and HiGHS's copies; measured
  2.2-2.5 KB). A variable is an occupied (step, charger) cell, so there are at most ``steps ×
  chargers`` of them and about ``sessions × stay in steps``.
* sessions at 150 B + 100 B per kept run (the session table, its sorted copy, the per-run
  outcome arrays and KPI temporaries; measured 420 B with one policy, 790 B with five), plus
  40 B per candidate point of the Poisson thinning (up to 24 × the arrivals when a cohort's
  profile is peaked), plus the routing temporaries, ~60 B per (arrival in one step × slot).
* 400 B per charger and small per-step series.

The interpreter and the imported libraries are already resident when a scenario loads, so they
are not in the available figure and not in the estimate. The coordinated policy's per-EV ADMM
state, Ray workers and report plots are not counted either; the estimate is meant to stop
scenarios that cannot run at all, not to budget ones that nearly fit. When it is wrong for a
particular machine (swap, a run with one policy and ``--no-offline`` needs a quarter of it),
``EVGRID_MEMORY_CHECK=off`` skips the check.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from evgrid.scenario.errors import ScenarioError

if TYPE_CHECKING:
    from evgrid.scenario.schema import Scenario

#: Runs whose [steps × chargers] arrays live at once: 6 default policies, the offline optimum
#: and the simulator's own.
RUNS_KEPT = 8
BYTES_PER_CELL = 16 * RUNS_KEPT + 1 + 8 + 16
BYTES_PER_LP_VARIABLE = 3_000
BYTES_PER_SESSION = 150 + 100 * RUNS_KEPT
BYTES_PER_THINNING_CANDIDATE = 40
BYTES_PER_ROUTED_PAIR = 60
BYTES_PER_CHARGER = 400
#: Bytes per recorded-session CSV row, low, so a file's size over-counts its rows (a typical
#: row, two ISO times with offsets, an energy and a station id, is 55-70 bytes).
BYTES_PER_CSV_ROW = 40

#: Set to off / 0 / no / false to skip the check (the estimate is conservative by design).
ENV_SWITCH = "EVGRID_MEMORY_CHECK"

_CGROUP_ROOT = Path("/sys/fs/cgroup")
_UNLIMITED = 2**60  # cgroup v1 writes "no limit" as 2^63 rounded down to a page


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run of one scenario is expected to need, by what needs them."""

    steps: int
    chargers: int
    slots: int
    sessions: float  # expected, drawn and recorded
    lp_variables: float
    grid_bytes: float  # the [steps × chargers] arrays
    lp_bytes: float
    session_bytes: float  # sessions, thinning candidates and routing temporaries
    other_bytes: float  # per-charger and per-step arrays

    @property
    def total(self) -> float:
        return self.grid_bytes + self.lp_bytes + self.session_bytes + self.other_bytes


def _mean_dwell_upper_h(mean: float, std: float, low: float, high: float) -> float:
    """An upper bound on E[clip(N(mean, std), low, high)]: E[max(X, low)] <= max(mean, low) +
    E|X - mean| <= max(mean, low) + std, and the clip at ``high`` only lowers it."""
    if std == 0:
        return mean
    return min(high, max(mean, low) + std)


def estimate_memory(scenario: Scenario) -> MemoryEstimate:
    """The memory an ``evgrid run`` of ``scenario`` needs (module doc: the coefficients)."""
    from evgrid.scenario.schema import as_hourly

    steps, dt_h = scenario.steps, scenario.dt_h
    chargers = sum(z.chargers.count for f in scenario.facilities for z in f.zones.values())
    slots = sum(len(f.zones) for f in scenario.facilities)
    cells = float(steps) * chargers
    days = steps * dt_h / 24.0

    drawn = any(f.sessions_csv is None for f in scenario.facilities)
    sessions = candidates = peak_per_step = occupied = 0.0
    if drawn:
        for c in scenario.cohorts:
            profile = as_hourly(c.arrival_profile)
            per_day = scenario.arrivals_per_day * c.share
            peaked = max(profile) / sum(profile)  # peak hour's share of the day
            n = per_day * days
            sessions += n
            candidates += per_day * 24.0 * peaked * days
            peak_per_step += per_day * peaked * dt_h
            d = c.dwell_h
            stay = _mean_dwell_upper_h(d.mean, d.std, d.low, d.high)
            occupied += n * min(steps, math.ceil(stay / dt_h) + 1)
    for f in scenario.facilities:
        if f.sessions_csv is not None:
            try:
                rows = f.sessions_csv.stat().st_size / BYTES_PER_CSV_ROW
            except OSError:
                rows = 0.0  # the loader reports a missing file; nothing to estimate here
            sessions += rows
            occupied += float(steps) * sum(z.chargers.count for z in f.zones.values())
    lp_variables = min(cells, occupied)
    # Poisson: the busiest step sees about its mean plus a few standard deviations.
    arrivals_in_step = peak_per_step + 4.0 * math.sqrt(peak_per_step) + 1.0
    grid_zones, facilities = len(scenario.grid_zones), len(scenario.facilities)
    return MemoryEstimate(
        steps=steps,
        chargers=chargers,
        slots=slots,
        sessions=sessions,
        lp_variables=lp_variables,
        grid_bytes=cells * BYTES_PER_CELL,
        lp_bytes=lp_variables * BYTES_PER_LP_VARIABLE,
        session_bytes=sessions * BYTES_PER_SESSION
        + candidates * BYTES_PER_THINNING_CANDIDATE
        + arrivals_in_step * slots * BYTES_PER_ROUTED_PAIR,
        other_bytes=chargers * BYTES_PER_CHARGER
        + float(steps) * (grid_zones + facilities + 16) * 8 * RUNS_KEPT,
    )


# -- what the machine has -----------------------------------------------------------------------


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _stat_value(path: Path, key: str) -> int:
    """One counter of a cgroup ``memory.stat`` (0 when absent)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def _cgroup_dirs() -> list[tuple[Path, str]]:
    """This process's memory cgroup directory and its ancestors, with the cgroup version.

    A limit set on any ancestor applies too. Inside a container with its own cgroup namespace
    /proc/self/cgroup says ``/`` and the container's own files are at the root.
    """
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    out: list[tuple[Path, str]] = []
    for line in lines:
        hid, controllers, rel = [*line.split(":", 2), "", ""][:3]
        if hid == "0" and controllers == "":
            base, version = _CGROUP_ROOT, "v2"
        elif "memory" in controllers.split(","):
            base, version = _CGROUP_ROOT / "memory", "v1"
        else:
            continue
        node = base / rel.strip("/") if rel.strip("/") else base
        while True:
            out.append((node, version))
            if node == base:
                break
            node = node.parent
    if not out:
        out.append((_CGROUP_ROOT, "v2"))
    return out


def _cgroup_room() -> tuple[int, str] | None:
    """Bytes left under the tightest cgroup memory limit (v2 ``memory.max`` or v1
    ``memory.limit_in_bytes``), counting inactive page cache as reclaimable; None without one."""
    best: tuple[int, str] | None = None
    for node, version in _cgroup_dirs():
        v2 = version == "v2"
        name = node / ("memory.max" if v2 else "memory.limit_in_bytes")
        limit = _read_int(name)  # v2 writes "max" for no limit: None
        if limit is None or limit >= _UNLIMITED:
            continue  # the usual case: nothing more to read (memory.stat can be long)
        used = _read_int(node / ("memory.current" if v2 else "memory.usage_in_bytes"))
        cache = _stat_value(node / "memory.stat", "inactive_file" if v2 else "total_inactive_file")
        room = max(0, limit - max(0, (used or 0) - cache))
        if best is None or room < best[0]:
            best = (room, f"cgroup limit {_fmt(limit)} in {name}")
    return best


def available_memory() -> tuple[int, str] | None:
    """Bytes this process can still allocate, and where the figure comes from; None if unknown.

    The smaller of the kernel's ``MemAvailable`` (free plus reclaimable cache; without
    /proc/meminfo, sysconf's free physical pages) and the room left under a cgroup limit, so a
    container's limit counts, not the host's memory.
    """
    found: list[tuple[int, str]] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append((int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"))
                break
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        try:
            pages = os.sysconf("SC_AVPHYS_PAGES")
            size = os.sysconf("SC_PAGE_SIZE")
            if pages > 0 and size > 0:
                found.append((pages * size, "free physical memory (sysconf)"))
        except (ValueError, OSError, AttributeError):
            pass
    room = _cgroup_room()
    if room is not None:
        found.append(room)
    return min(found) if found else None


# -- the check ----------------------------------------------------------------------------------


def _fmt(n: float) -> str:
    """Bytes in binary units, e.g. ``3.2 GiB``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n / 2**10:,.1f} KiB"


def _advice(est: MemoryEstimate, scenario: Scenario) -> str:
    size = (
        f"shrink horizon_days (now {scenario.horizon_days:g}), raise dt_min (now "
        f"{scenario.dt_min}) or use fewer chargers (now {est.chargers:,})"
    )
    load = f"lower arrivals_per_day (now {scenario.arrivals_per_day:g}) or horizon_days"
    if est.session_bytes > est.grid_bytes + est.lp_bytes:
        return f"{load}, or {size}"
    return size


def memory_problem(
    scenario: Scenario, *, available: tuple[int, str] | None = None
) -> str | None:
    """Why ``scenario`` will not fit (one line), or None. ``available`` defaults to
    :func:`available_memory`; a machine that does not say what it has is not refused."""
    est = estimate_memory(scenario)
    avail = available if available is not None else available_memory()
    if avail is None or est.total <= avail[0]:
        return None
    parts = [
        f"{_fmt(est.grid_bytes)} for {est.steps:,} steps x {est.chargers:,} chargers "
        f"x {RUNS_KEPT} runs",
        f"{_fmt(est.lp_bytes)} for the offline LP (~{est.lp_variables:,.0f} variables)",
        f"{_fmt(est.session_bytes)} for ~{est.sessions:,.0f} sessions",
    ]
    return (
        f"a run needs an estimated {_fmt(est.total)} of memory ({'; '.join(parts)}), more "
        f"than the {_fmt(avail[0])} available ({avail[1]}): {_advice(est, scenario)} "
        f"({ENV_SWITCH}=off skips this check)"
    )


def check_memory(scenario: Scenario, *, source: str) -> None:
    """Raise :class:`ScenarioError` when a run of ``scenario`` cannot fit in memory."""
    if os.environ.get(ENV_SWITCH, "").strip().lower() in {"off", "0", "no", "false"}:
        return
    problem = memory_problem(scenario)
    if problem is not None:
        raise ScenarioError(f"{source}: {problem}")
