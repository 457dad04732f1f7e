"""Seed 000's scale-adaptive Resource Allocation Module (000_f74a305f822cf870.txt §3.2, §3.4, §4.2).

Vehicles are assigned to charging stations period by period (``x_{v,s,t}``, Eq. 9–10, 17) and
given a charging power (``PO_{v,t}``, Eq. 11–13) so that their batteries (Eq. 14–15) reach what
the users asked for (Eq. 16) at least cost (Eq. 8). Three solvers share one problem, one result
type, one objective and one feasibility check, so their figures are comparable:

* :func:`solve_mip` — the exact MIP of Eq. 8–17 (HiGHS), for small ``n``;
* :func:`evgrid.optim.allocation_pso.solve_pso` — binary PSO, Eq. 18–21, for medium ``n``;
* :func:`evgrid.optim.allocation_rhh.solve_rhh` — the rolling-horizon heuristic, Eq. 22–26;

and :func:`allocate` picks one by ``n = |V|·|S|·|T|`` (ACAS, §3.2 / §4.2).

Modelling choices, shared by every method (the paper leaves them open):

* Eq. 16 is *soft*: each kWh a vehicle lacks at departure costs ``unmet_penalty_per_kwh``
  (a slack in the MIP), so every instance is feasible and a method that serves fewer
  vehicles pays for it in the same currency as Eq. 8. The reported ``objective`` is Eq. 8
  plus that penalty, for every method.
* Self-discharge ``E^self`` of Eq. 14 is 0 over a parking stay (as in the simulator), so
  charging is monotone and Eq. 15 reduces to the energy at departure.
* ``PO_max`` of Eq. 12 is per pair: the lower of the vehicle's on-board limit and the
  station's rating. ``PO`` is grid-side; the battery gains ``η·PO·Δt`` (Eq. 14).
* The relocation cost ``c_{v,s}`` (e.g. walking/driving km) is paid for every period a
  vehicle is assigned to a station, exactly as Eq. 8 sums ``α2·c·x`` over ``t``.
* A vehicle is present during periods ``[arrival, departure)`` (the simulator's convention);
  it may only be assigned while present.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

if TYPE_CHECKING:
    from evgrid.optim.allocation_pso import PSOConfig
    from evgrid.optim.allocation_rhh import RHHConfig

Method = Literal["mip", "pso", "rhh"]
METHODS: tuple[Method, ...] = ("mip", "pso", "rhh")

#: ACAS thresholds on ``n = |V|·|S|·|T|`` (§3.2): MIP for n ≤ N1, PSO for N1 < n ≤ N2, RHH
#: above. The paper's 50 / 1,000 (§4.2) are partly stated on vehicles (Table 2: ≤ 50
#: vehicles for MIP); counted as the product, n = 50 is a toy (2 × 5 × 5). Measured on
#: ``benchmarks/allocation.py``'s random instances (2 cores): HiGHS proves optimality in
#: ≈ 0.3 s at n = 320, 0.6 s at 864, 2.6 s at 1,536 and 15 s at 19,200; PSO takes 0.2–3 s up
#: to n ≈ 20,000 at ≈ 98 % of the optimum; RHH takes milliseconds at any n (0.25 s at
#: n = 3·10⁷) at ≈ 95 %. So the MIP while it answers in under a second, PSO while it
#: answers in a few, RHH beyond.
N1_DEFAULT = 1_000
N2_DEFAULT = 20_000

_TOL = 1e-6


@dataclass(frozen=True)
class AllocationProblem:
    """One instance of Eq. 8–17: V vehicles, S stations (single chargers), T periods.

    Arrays are validated on construction (one-line ``ValueError``). Energies are battery-side
    kWh; powers are grid-side kW (the battery gains ``eta * kW * dt_h``).
    """

    arrival: np.ndarray  # [V] int: first period present
    departure: np.ndarray  # [V] int: present during [arrival, departure), departure <= T
    e_init_kwh: np.ndarray  # [V] energy at arrival
    e_req_kwh: np.ndarray  # [V] energy asked for at departure (Eq. 16's E^req)
    battery_kwh: np.ndarray  # [V] E_max of Eq. 15
    vehicle_max_kw: np.ndarray  # [V] on-board charger limit
    eligible: np.ndarray  # [V, S] bool: Eq. 17's zone rule (station zone matches y_{v,z})
    station_max_kw: np.ndarray  # [S]
    station_zone: np.ndarray  # [S] int (informative; eligibility is what binds)
    station_xy_km: np.ndarray  # [S, 2]
    price_per_kwh: np.ndarray  # [T] p_t
    grid_limit_kw: np.ndarray  # [T] PO_gmax
    relocation_cost: np.ndarray  # [V, S] c_{v,s} (e.g. km)
    dt_h: float = 0.25
    alpha1: float = 1.0  # weight of the energy cost (Eq. 8)
    alpha2: float = 0.05  # weight of the relocation cost (Eq. 8) [currency per cost unit·period]
    eta: float = 0.95  # charging efficiency (Eq. 14)
    p_min_kw: float = 0.0  # P_min of Eq. 13
    #: Price of each kWh short of E^req at departure (soft Eq. 16); the same for every method.
    unmet_penalty_per_kwh: float = 1.0
    #: [S, T] bool: availability(sta, t) of Eq. 23 (e.g. outages); ``None`` = always.
    available: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        v, s, t = self.arrival.size, self.station_max_kw.size, self.price_per_kwh.size
        shapes = {
            "arrival": (v,), "departure": (v,), "e_init_kwh": (v,), "e_req_kwh": (v,),
            "battery_kwh": (v,), "vehicle_max_kw": (v,), "eligible": (v, s),
            "station_max_kw": (s,), "station_zone": (s,), "station_xy_km": (s, 2),
            "price_per_kwh": (t,), "grid_limit_kw": (t,), "relocation_cost": (v, s),
        }
        if self.available is not None:
            shapes["available"] = (s, t)
        for name, shape in shapes.items():
            a = getattr(self, name)
            if not isinstance(a, np.ndarray) or a.shape != shape:
                got = getattr(a, "shape", type(a).__name__)
                raise ValueError(f"{name} has shape {got}, expected {shape} (V={v}, S={s}, T={t})")
            if a.dtype.kind == "f" and not np.isfinite(a).all():
                raise ValueError(f"{name} has non-finite values")
        for name in ("arrival", "departure", "station_zone"):
            if getattr(self, name).dtype.kind not in "iu":
                raise ValueError(f"{name} must be an integer array")
        for name in ("eligible",) + (("available",) if self.available is not None else ()):
            if getattr(self, name).dtype != bool:
                raise ValueError(f"{name} must be a bool array")
        if t == 0:
            raise ValueError("the problem needs at least one period")
        if ((self.arrival < 0) | (self.departure > t) | (self.departure <= self.arrival)).any():
            raise ValueError("need 0 <= arrival < departure <= T for every vehicle")
        for name in ("e_init_kwh", "e_req_kwh", "battery_kwh", "vehicle_max_kw",
                     "station_max_kw", "price_per_kwh", "grid_limit_kw", "relocation_cost"):
            if (getattr(self, name) < 0).any():
                raise ValueError(f"{name} has negative values")
        if ((self.e_init_kwh > self.battery_kwh + _TOL)
                | (self.e_req_kwh > self.battery_kwh + _TOL)).any():
            raise ValueError("e_init_kwh and e_req_kwh must not exceed battery_kwh")
        scalars = {"dt_h": self.dt_h, "alpha1": self.alpha1, "alpha2": self.alpha2,
                   "eta": self.eta, "p_min_kw": self.p_min_kw,
                   "unmet_penalty_per_kwh": self.unmet_penalty_per_kwh}
        for name, x in scalars.items():
            if not np.isfinite(x) or x < 0:
                raise ValueError(f"{name} must be finite and >= 0, got {x}")
        if self.dt_h <= 0 or not 0 < self.eta <= 1:
            raise ValueError(f"need dt_h > 0 and 0 < eta <= 1, got {self.dt_h}, {self.eta}")

    # -- derived arrays --------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """(V, S, T)."""
        return self.arrival.size, self.station_max_kw.size, self.price_per_kwh.size

    @property
    def n(self) -> int:
        """ACAS's problem size n = |V|·|S|·|T| (§3.2)."""
        v, s, t = self.shape
        return v * s * t

    def present(self) -> np.ndarray:
        """[V, T] bool: the vehicle is parked during the period."""
        t = np.arange(self.shape[2])
        return (t[None, :] >= self.arrival[:, None]) & (t[None, :] < self.departure[:, None])

    def pair_max_kw(self) -> np.ndarray:
        """[V, S] PO_max of Eq. 12 for each pair: the lower of vehicle and station limits."""
        return np.minimum(self.vehicle_max_kw[:, None], self.station_max_kw[None, :])

    def availability(self) -> np.ndarray:
        """[S, T] bool (all True when ``available`` is not given)."""
        _, s, t = self.shape
        return np.ones((s, t), dtype=bool) if self.available is None else self.available

    def valid(self) -> np.ndarray:
        """[V, S, T] bool: the x_{v,s,t} that may be 1 at all — present (Eq. 31), eligible
        (Eq. 17), available (Eq. 23) and able to draw at least P_min (Eq. 12–13)."""
        pair = self.eligible & (self.pair_max_kw() >= max(self.p_min_kw, 1e-9))
        return pair[:, :, None] & self.present()[:, None, :] & self.availability()[None]

    def need_kwh(self) -> np.ndarray:
        """[V] battery energy Eq. 16 asks for beyond arrival (never above Eq. 15's headroom)."""
        return np.maximum(0.0, self.e_req_kwh - self.e_init_kwh)

    def headroom_kwh(self) -> np.ndarray:
        """[V] battery energy Eq. 15 allows beyond arrival."""
        return np.maximum(0.0, self.battery_kwh - self.e_init_kwh)

    def worth_charging(self) -> np.ndarray:
        """[T] bool: a battery kWh bought in period t costs less than leaving it unmet."""
        return self.alpha1 * self.price_per_kwh / self.eta < self.unmet_penalty_per_kwh


@dataclass(frozen=True)
class Allocation:
    """A solution: who is on which station when, at what power, and what it costs.

    ``objective`` = Eq. 8 (``energy_cost + relocation_cost``) + ``unmet_penalty_per_kwh`` ×
    ``unmet_kwh``, recomputed from ``station`` and ``power_kw`` the same way for every method.
    """

    station: np.ndarray  # [V, T] int, -1 = none
    power_kw: np.ndarray  # [V, T] grid-side
    objective: float
    energy_cost: float  # α1 Σ p_t PO Δt
    relocation_cost: float  # α2 Σ c_{v,s} x_{v,s,t}
    unmet_kwh: float  # Σ_v max(0, E^req − E_{v,dep})
    method: str
    solve_s: float
    #: MIP: relative gap HiGHS reached (0 = proven optimal); heuristics: None.
    mip_gap: float | None = None
    status: str = "ok"


def evaluate(problem: AllocationProblem, station: np.ndarray,
             power_kw: np.ndarray) -> tuple[float, float, float, float]:
    """(objective, energy cost, relocation cost, unmet kWh) of a plan — Eq. 8 plus the
    documented penalty for Eq. 16's shortfall, the one yardstick of every method."""
    p = problem
    energy = p.alpha1 * float((p.price_per_kwh[None, :] * power_kw).sum()) * p.dt_h
    v_idx, t_idx = np.nonzero(station >= 0)
    reloc = p.alpha2 * float(p.relocation_cost[v_idx, station[v_idx, t_idx]].sum())
    got = p.eta * power_kw.sum(axis=1) * p.dt_h
    unmet = float(np.maximum(0.0, p.e_req_kwh - p.e_init_kwh - got).sum())
    return energy + reloc + p.unmet_penalty_per_kwh * unmet, energy, reloc, unmet


def make_allocation(problem: AllocationProblem, station: np.ndarray, power_kw: np.ndarray,
                    method: str, solve_s: float, mip_gap: float | None = None,
                    status: str = "ok") -> Allocation:
    """Wrap a plan with its objective terms (:func:`evaluate`)."""
    obj, energy, reloc, unmet = evaluate(problem, station, power_kw)
    return Allocation(station=station, power_kw=power_kw, objective=obj, energy_cost=energy,
                      relocation_cost=reloc, unmet_kwh=unmet, method=method, solve_s=solve_s,
                      mip_gap=mip_gap, status=status)


def check_feasible(problem: AllocationProblem, allocation: Allocation) -> list[str]:
    """Every violated constraint of Eq. 9–17 (empty when feasible), one line each.

    Eq. 9 holds by construction of ``station[v, t]`` (one index per vehicle and period); the
    rest are checked with an absolute tolerance of 1e-6 kW / kWh (scaled by the grid limit).
    """
    p = problem
    v_n, s_n, t_n = p.shape
    st, pw = allocation.station, allocation.power_kw
    if st.shape != (v_n, t_n) or pw.shape != (v_n, t_n):
        return [f"station/power_kw shapes {st.shape}/{pw.shape}, expected {(v_n, t_n)}"]
    out: list[str] = []
    if ((st < -1) | (st >= s_n)).any():
        return ["Eq. 9: station index out of range"]
    if not np.isfinite(pw).all():
        return ["power_kw has non-finite values"]
    on = st >= 0
    present = p.present()
    if (on & ~present).any() or ((pw > _TOL) & ~present).any():
        out.append("presence: a vehicle is assigned or charged outside [arrival, departure)")
    # Eq. 10: at most one vehicle per station and period.
    v_idx, t_idx = np.nonzero(on)
    if v_idx.size:
        key = st[v_idx, t_idx] * t_n + t_idx
        if np.unique(key).size < key.size:
            out.append("Eq. 10: a station serves more than one vehicle in a period")
        if not p.eligible[v_idx, st[v_idx, t_idx]].all():
            out.append("Eq. 17: a vehicle is assigned to a station outside its zone")
        if not p.availability()[st[v_idx, t_idx], t_idx].all():
            out.append("Eq. 23: a vehicle is assigned to an unavailable station")
    # Eq. 11: the grid.
    load = pw.sum(axis=0)
    if (load > p.grid_limit_kw + _TOL * np.maximum(1.0, p.grid_limit_kw)).any():
        worst = int(np.argmax(load - p.grid_limit_kw))
        out.append(f"Eq. 11: grid load {load[worst]:.6g} kW > {p.grid_limit_kw[worst]:.6g} kW "
                   f"at t={worst}")
    # Eq. 12–13: power bounds (power only with a station).
    cap = np.zeros((v_n, t_n))
    cap[v_idx, t_idx] = p.pair_max_kw()[v_idx, st[v_idx, t_idx]]
    if (pw < -_TOL).any() or (pw > cap + _TOL).any():
        out.append("Eq. 12: power above PO_max (or charging without a station)")
    if p.p_min_kw > 0 and (on & (pw < p.p_min_kw - _TOL)).any():
        out.append("Eq. 13: an assigned vehicle draws less than P_min")
    # Eq. 14–15: the battery (monotone without self-discharge: its peak is at departure).
    final = p.e_init_kwh + p.eta * pw.sum(axis=1) * p.dt_h
    if (final > p.battery_kwh + _TOL).any():
        out.append("Eq. 15: a battery is charged above its capacity")
    return out


# -- the power given an assignment ------------------------------------------------------------
def dispatch_lp(problem: AllocationProblem, station: np.ndarray) -> np.ndarray | None:
    """Optimal powers [V, T] for a fixed assignment (an LP, HiGHS); ``None`` if Eq. 13's P_min
    on the assigned periods cannot fit the grid (Eq. 11) or a battery (Eq. 15).

    min Σ α1 p_t PO Δt + π·u_v  s.t. P_min ≤ PO_{v,t} ≤ PO_max (assigned), Σ_v PO ≤ PO_gmax,
    η Δt Σ_t PO ≤ headroom_v, η Δt Σ_t PO + u_v ≥ need_v, u ≥ 0.
    """
    p = problem
    v_n, _, t_n = p.shape
    v_idx, t_idx = np.nonzero(station >= 0)
    k = v_idx.size
    if k == 0:
        return np.zeros((v_n, t_n))
    ub = p.pair_max_kw()[v_idx, station[v_idx, t_idx]]
    lb = np.minimum(p.p_min_kw, ub)
    cols = np.arange(k)
    grid = sparse.coo_array((np.ones(k), (t_idx, cols)), shape=(t_n, k + v_n))
    bat = sparse.coo_array((np.full(k, p.eta * p.dt_h), (v_idx, cols)), shape=(v_n, k + v_n))
    need = sparse.hstack([bat.tocsr()[:, :k], sparse.eye(v_n)], format="csr")
    a_ub = sparse.vstack([grid, bat, -need], format="csr")
    b_ub = np.concatenate([p.grid_limit_kw, p.headroom_kwh(), -p.need_kwh()])
    c = np.concatenate([p.alpha1 * p.price_per_kwh[t_idx] * p.dt_h,
                        np.full(v_n, p.unmet_penalty_per_kwh)])
    bounds = np.stack([np.concatenate([lb, np.zeros(v_n)]),
                       np.concatenate([ub, p.need_kwh()])], axis=1)
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if res.status != 0:
        return None
    power = np.zeros((v_n, t_n))
    power[v_idx, t_idx] = np.clip(res.x[:k], lb, ub)
    return power


def drop_idle(problem: AllocationProblem, station: np.ndarray, power_kw: np.ndarray) -> np.ndarray:
    """Unassign the (v, t) that draw nothing (only possible when P_min = 0): they would pay
    Eq. 8's relocation cost for no energy."""
    if problem.p_min_kw > 0:
        return station
    return np.where(power_kw > _TOL, station, -1)


# -- MIP, Eq. 8–17 ----------------------------------------------------------------------------
def solve_mip(problem: AllocationProblem, *, time_limit_s: float = 10.0,
              mip_rel_gap: float = 1e-4) -> Allocation:
    """The exact MIP of Eq. 8–17 (000 §3.4.1), solved by HiGHS through ``scipy.optimize.milp``.

    Eq. 8's bilinear ``PO_{v,t}·x_{v,s,t}`` is linearised by one power variable per valid
    (v, s, t) — ``p_{v,s,t}`` with ``P_min·x ≤ p ≤ PO_max·x`` (Eq. 12–13) — so that
    ``PO_{v,t} = Σ_s p_{v,s,t}`` and Eq. 11 becomes linear. Variables exist only where x may
    be 1 (:meth:`AllocationProblem.valid`: presence, Eq. 17's zones, availability). Eq. 14 is
    substituted (no self-discharge: the energy at departure is e_init + η Δt Σ PO, which is
    also the battery's peak, so Eq. 15 is one row per vehicle), and Eq. 16 is soft with a
    slack ``u_v`` priced at the unmet penalty, so the model is always feasible (x = 0 is a
    solution). Returns the gap HiGHS reached within ``time_limit_s`` in ``mip_gap``.
    """
    t0 = time.perf_counter()
    p = problem
    v_n, _, t_n = p.shape
    vi, si, ti = np.nonzero(p.valid())
    k = vi.size
    if k == 0:
        z = np.zeros((v_n, t_n))
        return make_allocation(p, np.full((v_n, t_n), -1), z, "mip",
                               time.perf_counter() - t0, 0.0)
    pmax = p.pair_max_kw()[vi, si]
    cols = np.arange(k)
    nvar = 2 * k + v_n
    xcol, pcol, ucol = cols, k + cols, 2 * k + np.arange(v_n)

    def rows(groups: np.ndarray, colidx: np.ndarray, vals: np.ndarray | float
             ) -> tuple[sparse.csr_array, np.ndarray]:
        """One row per distinct group value: Σ over the members."""
        uniq, r = np.unique(groups, return_inverse=True)
        data = np.broadcast_to(np.asarray(vals, dtype=float), colidx.shape)
        return sparse.csr_array((data, (r, colidx)), shape=(uniq.size, nvar)), uniq

    blocks: list[sparse.csr_array] = []
    lo: list[np.ndarray] = []
    hi: list[np.ndarray] = []

    def add(a: sparse.csr_array, lower: np.ndarray | float, upper: np.ndarray | float) -> None:
        blocks.append(a)
        lo.append(np.broadcast_to(np.asarray(lower, dtype=float), a.shape[0]))
        hi.append(np.broadcast_to(np.asarray(upper, dtype=float), a.shape[0]))

    # Eq. 12 (p − PO_max·x ≤ 0) and Eq. 13 (p − P_min·x ≥ 0).
    link = sparse.csr_array(
        (np.concatenate([np.ones(k), -pmax]), (np.concatenate([cols, cols]),
                                               np.concatenate([pcol, xcol]))), shape=(k, nvar))
    add(link, -np.inf, 0.0)
    if p.p_min_kw > 0:
        link_min = sparse.csr_array(
            (np.concatenate([np.ones(k), np.full(k, -p.p_min_kw)]),
             (np.concatenate([cols, cols]), np.concatenate([pcol, xcol]))), shape=(k, nvar))
        add(link_min, 0.0, np.inf)
    # Eq. 9: Σ_s x ≤ 1 per (v, t);  Eq. 10: Σ_v x ≤ 1 per (s, t).
    add(rows(vi * t_n + ti, xcol, 1.0)[0], -np.inf, 1.0)
    add(rows(si * t_n + ti, xcol, 1.0)[0], -np.inf, 1.0)
    # Eq. 11: Σ PO ≤ PO_gmax per t.
    a11, ts = rows(ti, pcol, 1.0)
    add(a11, -np.inf, p.grid_limit_kw[ts])
    # Eq. 14–15: η Δt Σ_t PO ≤ E_max − E_init per v.
    a15, vs = rows(vi, pcol, p.eta * p.dt_h)
    add(a15, -np.inf, p.headroom_kwh()[vs])
    # Eq. 16 (soft): η Δt Σ_t PO + u_v ≥ need_v.
    a16, _ = rows(np.concatenate([vi, np.arange(v_n)]), np.concatenate([pcol, ucol]),
                  np.concatenate([np.full(k, p.eta * p.dt_h), np.ones(v_n)]))
    add(a16, p.need_kwh(), np.inf)

    cost = np.concatenate([p.alpha2 * p.relocation_cost[vi, si],
                           p.alpha1 * p.price_per_kwh[ti] * p.dt_h,
                           np.full(v_n, p.unmet_penalty_per_kwh)])
    integrality = np.concatenate([np.ones(k), np.zeros(k + v_n)])
    bounds = Bounds(np.zeros(nvar), np.concatenate([np.ones(k), pmax, p.need_kwh()]))
    cons = LinearConstraint(sparse.vstack(blocks, format="csr"), np.concatenate(lo),
                            np.concatenate(hi))
    res = milp(cost, integrality=integrality, bounds=bounds, constraints=cons,
               options={"time_limit": float(time_limit_s), "mip_rel_gap": float(mip_rel_gap),
                        "disp": False})
    station = np.full((v_n, t_n), -1, dtype=np.int64)
    power = np.zeros((v_n, t_n))
    if res.x is None:
        return make_allocation(p, station, power, "mip", time.perf_counter() - t0, None,
                               status=f"no solution: {res.message}")
    on = res.x[xcol] > 0.5
    station[vi[on], ti[on]] = si[on]
    lb = p.p_min_kw if p.p_min_kw > 0 else 0.0
    power[vi[on], ti[on]] = np.clip(res.x[pcol][on], lb, pmax[on])
    power = _fit_grid(p, power)
    station = drop_idle(p, station, power)
    gap = getattr(res, "mip_gap", None)
    status = "optimal" if res.status == 0 else f"stopped: {res.message}"
    return make_allocation(p, station, power, "mip", time.perf_counter() - t0,
                           None if gap is None else float(gap), status=status)


def _fit_grid(problem: AllocationProblem, power: np.ndarray) -> np.ndarray:
    """Trim solver round-off so that Eq. 11 and Eq. 15 hold to the last bit."""
    p = problem
    load = power.sum(axis=0)
    over = load > p.grid_limit_kw
    if over.any():
        scale = np.where(over, p.grid_limit_kw / np.maximum(load, 1e-12), 1.0)
        power = power * scale[None, :]
    got = p.eta * power.sum(axis=1) * p.dt_h
    over_v = got > p.headroom_kwh()
    if over_v.any():
        scale_v = np.where(over_v, p.headroom_kwh() / np.maximum(got, 1e-12), 1.0)
        power = power * scale_v[:, None]
    return power


# -- ACAS, §3.2 / §4.2 --------------------------------------------------------------------------
def select_method(n: int, n1: int | None = None, n2: int | None = None) -> Method:
    """ACAS (000 §3.2): MIP for ``n ≤ n1``, PSO for ``n1 < n ≤ n2``, RHH above.

    ``n = |V|·|S|·|T|``. Defaults :data:`N1_DEFAULT` / :data:`N2_DEFAULT` (see there why they
    are larger than the paper's 50 / 1,000 for this n).
    """
    n1 = N1_DEFAULT if n1 is None else int(n1)
    n2 = N2_DEFAULT if n2 is None else int(n2)
    if n1 > n2:
        raise ValueError(f"need n1 <= n2, got n1={n1}, n2={n2}")
    if n <= n1:
        return "mip"
    return "pso" if n <= n2 else "rhh"


def allocate(problem: AllocationProblem, n1: int | None = None, n2: int | None = None,
             method: Method | None = None, seed: int = 0, *,
             mip_time_limit_s: float = 10.0, mip_rel_gap: float = 1e-4,
             pso: PSOConfig | None = None, rhh: RHHConfig | None = None) -> Allocation:
    """Solve ``problem`` with ``method``, or with the one ACAS picks for its n
    (:func:`select_method`); ``seed`` drives PSO (MIP and RHH are deterministic)."""
    from evgrid.optim.allocation_pso import solve_pso
    from evgrid.optim.allocation_rhh import solve_rhh

    chosen = method if method is not None else select_method(problem.n, n1, n2)
    if chosen == "mip":
        return solve_mip(problem, time_limit_s=mip_time_limit_s, mip_rel_gap=mip_rel_gap)
    if chosen == "pso":
        return solve_pso(problem, pso, seed=seed)
    if chosen == "rhh":
        return solve_rhh(problem, rhh)
    raise ValueError(f"unknown method {chosen!r}; valid: {', '.join(METHODS)}")


# -- instances ---------------------------------------------------------------------------------
def random_problem(n_vehicles: int, n_stations: int, n_periods: int, *, seed: int = 0,
                   dt_h: float = 0.5, grid_share: float = 0.35, p_min_kw: float = 0.0,
                   n_zones: int = 3) -> AllocationProblem:
    """A random instance with contention: vehicles arrive over the horizon with SoC-based
    zones (§3.3: the lower the SoC, the lower the zone index) and stations in those zones
    plus a general zone open to all; each asks for 30–100 % of what its stay could take at
    its own rate (at most 30 kWh); the grid carries ``grid_share`` of all chargers at full
    power; a two-level time-of-use price with noise.
    """
    rng = np.random.default_rng(seed)
    v, s, t = n_vehicles, n_stations, n_periods
    arrival = rng.integers(0, max(1, t - 1), v) if t > 1 else np.zeros(v, dtype=np.int64)
    stay = rng.integers(1, np.maximum(2, t - arrival + 1))
    departure = np.minimum(arrival + stay, t)
    battery = rng.choice([40.0, 60.0, 75.0], v)
    soc = rng.uniform(0.1, 0.7, v)
    e_init = soc * battery
    vmax = rng.choice([7.4, 11.0, 22.0], v)
    # What the stay could take at the vehicle's own rate, 30–100 % of it (≤ 30 kWh): a
    # shortfall then comes from contention for stations and grid, not from the request.
    reachable = 0.95 * vmax * dt_h * (departure - arrival)
    e_req = np.minimum(battery, e_init + rng.uniform(0.3, 1.0, v) * np.minimum(30.0, reachable))
    szone = rng.integers(0, n_zones + 1, s)  # n_zones = the general zone
    skw = rng.choice([7.4, 11.0, 22.0], s)
    sxy = rng.uniform(0.0, 0.2, (s, 2))
    vxy = rng.uniform(0.0, 0.2, (v, 2))
    vzone = np.minimum((soc - 0.1) / 0.6 * n_zones, n_zones - 1).astype(np.int64)
    eligible = (szone[None, :] == vzone[:, None]) | (szone[None, :] == n_zones)
    cost = np.linalg.norm(vxy[:, None, :] - sxy[None, :, :], axis=2)
    hours = np.arange(t) * dt_h
    price = np.where((hours % 24 >= 8) & (hours % 24 < 20), 0.30, 0.15) * rng.uniform(0.8, 1.2, t)
    grid = np.full(t, grid_share * float(skw.sum()))
    return AllocationProblem(
        arrival=arrival.astype(np.int64), departure=departure.astype(np.int64),
        e_init_kwh=e_init, e_req_kwh=e_req, battery_kwh=battery, vehicle_max_kw=vmax,
        eligible=eligible, station_max_kw=skw, station_zone=szone, station_xy_km=sxy,
        price_per_kwh=price, grid_limit_kw=grid, relocation_cost=cost, dt_h=dt_h,
        p_min_kw=p_min_kw)
