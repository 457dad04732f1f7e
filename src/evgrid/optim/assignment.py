"""Seed 003's EV → station assignment as a generalised assignment problem (003_48b05ca88a329b62.txt).

The model is the GAP of 003's formulation section: minimise Σ_k Σ_i b_ki (C_D·D_ki +
C_W·W_ki + C_i·T_Ck) with every EV on exactly one station, at most N_si EVs on station i
(its piles), and b_ki = 1 only where the EV's range Q_rk/ΔE_k covers D_ki. Everything a
solver needs is one cost matrix, one feasibility mask and one capacity vector
(:class:`GapInstance`), so the router, the exact solver and the heuristics share one
yardstick (:func:`objective`, :func:`is_feasible`).

Why an exact solver is enough in practice: each EV takes *one* pile, so the constraint matrix
is that of a transportation problem — totally unimodular — and the LP relaxation is already
integral. HiGHS (:func:`solve_exact`) proves optimality at the paper's largest size
(400 × 40) in a fraction of a second. The heuristics of 003 (HASP and the BA, TABU and DE-SK
baselines, :mod:`evgrid.optim.assignment_heuristics`) are kept to reproduce the paper's
comparison and for variants where the GAP would not be unimodular.

Modelling choices the text leaves open:

* the walking term ``C_W Σ_j W_ij`` is read as the walk from station i to *EV k's own*
  destination (a sum over all destinations would not depend on k's trip);
  :func:`gap_cost` also takes a per-station walk vector for the literal reading;
* the range constraint is a mask (``feasible``): infeasible pairs have no variable at all.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse.csgraph import maximum_flow

#: ``solve(method="auto")`` uses the exact MILP while n·m (EV-station pairs) is at most this.
#: The model is totally unimodular, so HiGHS answers 400 × 40 = 16,000 pairs in well under a
#: second (benchmarks/assignment.py); beyond ~10⁶ pairs the matrix alone costs memory and time.
AUTO_EXACT_MAX_PAIRS = 1_000_000
#: :func:`brute_force` refuses more candidate assignments than this.
BRUTE_FORCE_MAX = 200_000

METHODS: list[str] = ["milp", "hasp", "tabu", "bees", "de"]


class InfeasibleAssignment(ValueError):
    """No assignment satisfies the GAP's constraints (003's formulation section)."""


@dataclass(frozen=True)
class GapInstance:
    """One instance of 003's GAP: ``n`` EVs, ``m`` stations.

    ``cost[k, i]`` is the objective coefficient of putting EV k on station i (``gap_cost``);
    ``feasible[k, i]`` is the range constraint (and any other eligibility); ``capacity[i]`` is
    N_si, the piles (it may be large, e.g. for a 'queue' column a router adds).
    """

    cost: np.ndarray  # [n, m] float
    feasible: np.ndarray  # [n, m] bool
    capacity: np.ndarray  # [m] int
    name: str = ""

    def __post_init__(self) -> None:
        c, f, cap = self.cost, self.feasible, self.capacity
        if np.ndim(c) != 2:
            raise ValueError(f"cost must be a 2-d array, got shape {np.shape(c)}")
        if np.shape(f) != c.shape or np.asarray(f).dtype != bool:
            raise ValueError(f"feasible must be a bool array of shape {c.shape}")
        if np.shape(cap) != (c.shape[1],) or np.asarray(cap).dtype.kind not in "iu":
            raise ValueError(f"capacity must be an int array of shape ({c.shape[1]},)")
        if (cap < 0).any():
            raise ValueError("capacity must be >= 0")
        if not np.isfinite(c[f]).all():
            raise ValueError("cost must be finite on feasible pairs")

    @property
    def n(self) -> int:
        """Number of EVs."""
        return int(self.cost.shape[0])

    @property
    def m(self) -> int:
        """Number of stations."""
        return int(self.cost.shape[1])


@dataclass(frozen=True)
class Assignment:
    """A solution: ``station[k]`` (−1 where none was found) and its GAP objective."""

    station: np.ndarray  # [n] int
    objective: float  # nan when infeasible
    feasible: bool
    seconds: float
    method: str


def gap_cost(drive_km: np.ndarray, walk_km: np.ndarray, fee_per_h: np.ndarray,
             charge_h: np.ndarray, *, c_drive: float | np.ndarray,
             c_walk: float | np.ndarray) -> np.ndarray:
    """The GAP objective coefficient of 003: ``C_D·D_ki + C_W·W_ki + C_i·T_Ck``, as [n, m].

    ``drive_km`` is [n, m]; ``walk_km`` is [n, m] (walk to each EV's destination) or [m]
    (a per-station walk, the literal Σ_j W_ij); ``fee_per_h`` (C_i) is [m] or [1, m];
    ``charge_h`` (T_Ck) is [n] or [n, 1]; ``c_drive``/``c_walk`` a number or per EV ([n, 1],
    e.g. each driver's value of time). Everything else broadcasts as numpy does.
    """
    drive = np.asarray(drive_km, dtype=float)
    walk = np.asarray(walk_km, dtype=float)
    fee = np.asarray(fee_per_h, dtype=float)
    hours = np.asarray(charge_h, dtype=float)
    if walk.ndim == 1:
        walk = walk[None, :]
    if fee.ndim == 1:
        fee = fee[None, :]
    if hours.ndim == 1:
        hours = hours[:, None]
    return np.asarray(c_drive * drive + c_walk * walk + fee * hours, dtype=float)


def make_instance(n_ev: int, n_stations: int, seed: int, *, side_km: float = 10.0,
                  slack: float = 1.1, c_drive: float = 0.6, c_walk: float = 3.0,
                  detour: float = 1.3, charge_kw: float = 22.0) -> GapInstance:
    """A reproducible, feasible instance on a ``side_km`` square (003's scenarios, synthetic).

    EVs, stations and ``max(2, m // 2)`` destinations are uniform on the plane; each EV heads
    to one destination and walks there from its station. Driving is ``detour`` × Euclidean.
    Fees are 1–4 per hour; the charge time takes the battery (40–80 kWh) from a 2–40 % SoC
    to 80 % at ``charge_kw``. The range Q_rk/ΔE_k (0.15–0.22 kWh/km) is short for low-SoC
    EVs, so some stations are out of reach; an EV that could reach none gets just enough
    charge for its nearest. Piles total ``ceil(slack · n)``, spread unevenly (at least one
    each); where range makes that infeasible (Hall's condition) the cheapest reachable
    station of each stranded EV gets one more pile, so the instance is tight but feasible.
    """
    if n_ev < 1 or n_stations < 1:
        raise ValueError(f"need n_ev >= 1 and n_stations >= 1, got {n_ev}, {n_stations}")
    rng = np.random.default_rng(seed)
    n, m = n_ev, n_stations
    ev = rng.uniform(0.0, side_km, (n, 2))
    st = rng.uniform(0.0, side_km, (m, 2))
    dest = rng.uniform(0.0, side_km, (max(2, m // 2), 2))
    goal = rng.integers(0, dest.shape[0], n)
    drive = detour * np.linalg.norm(ev[:, None, :] - st[None, :, :], axis=2)
    walk = np.linalg.norm(st[None, :, :] - dest[goal][:, None, :], axis=2)
    fee = rng.uniform(1.0, 4.0, m)
    battery = rng.uniform(40.0, 80.0, n)
    soc = rng.uniform(0.02, 0.4, n)
    per_km = rng.uniform(0.15, 0.22, n)
    reach = soc * battery / per_km
    nearest = drive.min(axis=1)
    reach = np.maximum(reach, 1.05 * nearest)  # every EV reaches at least one station
    charge_h = (0.8 - np.minimum(soc, 0.8)) * battery / charge_kw
    cost = gap_cost(drive, walk, fee, charge_h, c_drive=c_drive, c_walk=c_walk)
    feasible = drive <= reach[:, None]
    total = max(m, int(np.ceil(slack * n)))
    share = rng.dirichlet(np.full(m, 2.0))
    capacity = 1 + rng.multinomial(total - m, share)
    short = _unplaceable(feasible, capacity)
    for k in short:
        i = int(np.argmin(np.where(feasible[k], cost[k], np.inf)))
        capacity[i] += 1
    return GapInstance(cost=cost, feasible=feasible, capacity=capacity.astype(np.int64),
                       name=f"rand-{n}x{m}-s{seed}")


def _unplaceable(feasible: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """EVs left out of a maximum b-matching (a max-flow source → EV → station → sink)."""
    n, m = feasible.shape
    src, sink = n + m, n + m + 1
    k, i = np.nonzero(feasible)
    rows = np.concatenate([np.full(n, src), k, n + np.arange(m)])
    cols = np.concatenate([np.arange(n), n + i, np.full(m, sink)])
    caps = np.concatenate([np.ones(n), np.ones(k.size), capacity]).astype(np.int32)
    graph = sparse.csr_array((caps, (rows, cols)), shape=(n + m + 2, n + m + 2))
    flow = maximum_flow(graph, src, sink).flow
    out = np.asarray(flow[[src], :].toarray()).ravel()[:n]
    return np.nonzero(out < 1)[0]


def check_instance(inst: GapInstance) -> None:
    """Raise :class:`InfeasibleAssignment` (one line) unless some assignment exists.

    Checks the two obvious causes first (Σ piles < n; an EV that reaches no station), then
    Hall's condition exactly by a maximum flow.
    """
    if int(inst.capacity.sum()) < inst.n:
        raise InfeasibleAssignment(
            f"only {int(inst.capacity.sum())} piles for {inst.n} EVs (Σ capacity < n)")
    none = np.nonzero(~inst.feasible.any(axis=1))[0]
    if none.size:
        raise InfeasibleAssignment(
            f"{none.size} EV(s) can reach no station (range), first: EV {int(none[0])}")
    left = _unplaceable(inst.feasible, inst.capacity)
    if left.size:
        raise InfeasibleAssignment(
            f"at most {inst.n - left.size} of {inst.n} EVs fit the piles their range reaches "
            f"(e.g. EV {int(left[0])} is left out)")


def is_feasible(inst: GapInstance, station: np.ndarray) -> bool:
    """Every EV on one reachable station, no station above its piles (003's constraints)."""
    s = np.asarray(station)
    if s.shape != (inst.n,) or s.dtype.kind not in "iu":
        return False
    if ((s < 0) | (s >= inst.m)).any():
        return False
    if not inst.feasible[np.arange(inst.n), s].all():
        return False
    return bool((np.bincount(s, minlength=inst.m) <= inst.capacity).all())


def objective(inst: GapInstance, station: np.ndarray) -> float:
    """The GAP objective of 003 for ``station``; nan if it is not feasible."""
    if not is_feasible(inst, station):
        return float("nan")
    return float(inst.cost[np.arange(inst.n), station].sum())


def make_assignment(inst: GapInstance, station: np.ndarray, seconds: float,
                    method: str) -> Assignment:
    """Wrap ``station`` with its objective and feasibility (the one yardstick)."""
    s = np.asarray(station, dtype=np.int64)
    ok = is_feasible(inst, s)
    return Assignment(station=s, objective=objective(inst, s) if ok else float("nan"),
                      feasible=ok, seconds=seconds, method=method)


def solve_exact(inst: GapInstance, *, time_limit_s: float = 60.0) -> Assignment:
    """The GAP of 003 as a MILP, solved by HiGHS through ``scipy.optimize.milp``.

    One binary per *feasible* pair only (the range constraint is the sparsity pattern); rows:
    Σ_i b_ki = 1 per EV, Σ_k b_ki ≤ N_si per station. The matrix is totally unimodular, so
    HiGHS usually closes it at the root. Raises :class:`InfeasibleAssignment` if no
    assignment exists; returns ``feasible=False`` only if HiGHS stops without one.
    """
    t0 = time.perf_counter()
    check_instance(inst)
    n, m = inst.n, inst.m
    k, i = np.nonzero(inst.feasible)
    nv = k.size
    cols = np.arange(nv)
    a = sparse.csr_array((np.ones(2 * nv), (np.concatenate([k, n + i]),
                                           np.concatenate([cols, cols]))), shape=(n + m, nv))
    lo = np.concatenate([np.ones(n), np.zeros(m)])
    hi = np.concatenate([np.ones(n), inst.capacity.astype(float)])
    res = milp(inst.cost[k, i], integrality=np.ones(nv), bounds=Bounds(0.0, 1.0),
               constraints=LinearConstraint(a, lo, hi),
               options={"time_limit": float(time_limit_s), "disp": False})
    station = np.full(n, -1, dtype=np.int64)
    if res.x is not None:
        on = res.x > 0.5
        station[k[on]] = i[on]
    return make_assignment(inst, station, time.perf_counter() - t0, "milp")


def brute_force(inst: GapInstance) -> Assignment:
    """Enumerate every range-feasible assignment (tiny instances; a test oracle).

    Raises ``ValueError`` if there are more than :data:`BRUTE_FORCE_MAX` candidates and
    :class:`InfeasibleAssignment` if none satisfies the piles.
    """
    t0 = time.perf_counter()
    options = [np.nonzero(row)[0] for row in inst.feasible]
    count = int(np.prod([max(1, o.size) for o in options], dtype=float))
    if count > BRUTE_FORCE_MAX:
        raise ValueError(f"brute_force: {count} candidate assignments > {BRUTE_FORCE_MAX}")
    best, best_s = np.inf, None
    ar = np.arange(inst.n)
    for combo in itertools.product(*options):
        s = np.fromiter(combo, dtype=np.int64, count=inst.n)
        if (np.bincount(s, minlength=inst.m) > inst.capacity).any():
            continue
        v = float(inst.cost[ar, s].sum())
        if v < best:
            best, best_s = v, s
    if best_s is None:
        raise InfeasibleAssignment(f"no assignment of {inst.n} EVs fits the piles in range")
    return make_assignment(inst, best_s, time.perf_counter() - t0, "brute_force")


def solve(inst: GapInstance, method: str = "auto", *, seed: int = 0,
          **kw: object) -> Assignment:
    """Solve with ``method`` (one of :data:`METHODS`, or "auto": the MILP while n·m ≤
    :data:`AUTO_EXACT_MAX_PAIRS`, else HASP). ``kw`` goes to the solver."""
    from evgrid.optim import assignment_heuristics as h

    if method == "auto":
        method = "milp" if inst.n * inst.m <= AUTO_EXACT_MAX_PAIRS else "hasp"
    if method == "milp":
        return solve_exact(inst, **kw)  # type: ignore[arg-type]
    solvers = {"hasp": h.hasp, "tabu": h.tabu, "bees": h.bees, "de": h.differential_evolution}
    if method not in solvers:
        raise ValueError(f"unknown method {method!r}; expected 'auto' or one of {METHODS}")
    return solvers[method](inst, seed=seed, **kw)  # type: ignore[operator]
