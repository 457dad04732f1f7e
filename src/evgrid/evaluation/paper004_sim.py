"""A discrete-event simulator of seed 004's charging region (004_8f5fa6c845a0843d.txt §2–§5).

The region (§5.1): ``n_stations`` stations of ``piles_per_station`` piles on a square of
``region_km``, demand from ``n_subregions`` grid cells with uneven weights. Two classes:
reservation (high-priority) vehicles, Poisson at ``reserved_rate_per_h``, and random walk-ins
(low-priority), Poisson at ``walkin_rate_per_h`` (§5.1's table: 14–26 /h and 9–14 /h). A pile
serves one vehicle at a time, charge durations exponential with rate ``mu_per_h`` (0.4 /h,
§5.1), i.e. each station is an M/M/c queue as in §2.2 and §3. A vehicle may stay
``parking_limit_h`` after reaching its station: it leaves then, charged or not (§5.1's
"unfinished" count includes vehicles still waiting at the limit).

Strategies (§5.1):

* ``fifs`` — first-in first-served: every vehicle to its nearest station, one FIFO queue per
  station, nothing reserved, nothing booked.
* ``rfwda`` — reservation first: static reserved piles (§2.2). A reserved vehicle books a
  free reserved pile at its nearest station when it requests (the pile waits for it);
  otherwise it drives there and queues ahead of every walk-in. Walk-ins go to their nearest
  station and use shared piles only.
* ``acp`` — the adaptive strategy. Reserved piles as in §2.2; each reserved vehicle is
  *matched* (§4) to one of its ``K`` nearest stations by a matcher (the DQN's slot; by
  default :func:`nearest_matcher`), booking a reserved pile there or, when those are taken,
  temporarily allocating a shared one. Walk-ins are routed by §3's simulated-annealing
  shares, re-annealed every ``anneal_every_h`` from the current queues, never to a full
  station while one in range has a free pile. Temporary lending the other way: a walk-in
  may take a reserved pile only when the station's reserved queue is empty and more than
  ``lend_keep_free`` reserved piles would stay free (the "plan allows it"); the lent pile
  is the walk-in's until it leaves.

Everything random about a day (who requests when, from where, how long each charge takes)
is drawn from the day seed before the strategy acts (common random numbers), so strategies
compared on one seed face the same vehicles.

Matcher interface (:meth:`RegionSim.reset`/:meth:`RegionSim.step`): under ``acp`` the
simulation pauses at each reserved request with a :class:`MatchView`. The reward of a
decision is minus the hours of the matched reserved vehicles' outcomes that became known
since the previous decision, attributed as soon as the simulator can determine them: the
travel time (and ``mask_penalty_h`` for a masked-out action) at the decision; the queue wait
plus ``unfinished_penalty_h`` when charging starts (the charge time is then fixed, so whether
it finishes within the parking limit is known); the full parking limit plus the penalty when
a vehicle gives up waiting; at the end of the day the wait so far of those still queued. An
episode's return is therefore minus the total travel + wait (+ penalties) of its reserved
vehicles. Under ``fifs`` and ``rfwda`` there is no decision: ``reset`` runs the whole day.
"""

from __future__ import annotations

import functools
import heapq
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from evgrid.optim.reservation_book import ReservationBook
from evgrid.optim.sa_routing import anneal_walkin_shares, route_walkin

K = 4  # candidate stations offered to the matcher, nearest first
F = 6  # features per candidate
STRATEGIES = ["fifs", "rfwda", "acp"]
FEATURES = ("travel_h", "free_reserved_frac", "free_shared_frac", "reserved_queue_per_pile",
            "walkin_queue_per_pile", "expected_wait_h")
FEATURE_MAX = 10.0  # features are clipped to [0, FEATURE_MAX]
assert len(FEATURES) == F

# event kinds, in the order that breaks ties at one instant
_ANNEAL, _END, _RENEGE, _ARRIVE, _REQUEST = range(5)
# vehicle states
PENDING, TRAVEL, QUEUED, CHARGING, FULL, UNFINISHED = range(6)


@dataclass(frozen=True)
class RegionConfig:
    """Seed 004's region (§5.1). Defaults: 6 × 12 = 72 piles for 18 + 11 vehicles/h of
    2.5 h charges, 72.5 Erlangs offered — peak-hour busy: the day starts empty and vehicles
    leave at the parking limit, so queues stay finite, but with the uneven demand the
    stations nearest the busy cells overload under nearest-station routing (FIFS/RFWDA wait
    70–90 min, ACP-nearest ~10 min, pile utilisation ~0.7–0.85)."""

    n_stations: int = 6
    piles_per_station: int = 12
    mu_per_h: float = 0.4
    reserved_rate_per_h: float = 18.0
    walkin_rate_per_h: float = 11.0
    horizon_h: float = 24.0
    parking_limit_h: float = 6.0
    speed_kmh: float = 30.0
    n_subregions: int = 9
    region_km: float = 10.0
    demand_skew: float = 1.0  # Dirichlet concentration of subregion demand (smaller: more uneven)
    reserved: int | None = None  # reserved piles per station; None: §2.2's plan, see module
    lend_keep_free: int = 1
    anneal_every_h: float = 1.0
    unfinished_penalty_h: float = 2.0
    mask_penalty_h: float = 0.5
    seed: int = 0  # the layout: station sites and subregion demand weights

    def __post_init__(self) -> None:
        if self.n_stations < K:
            raise ValueError(f"n_stations must be at least K={K}, got {self.n_stations}")
        if self.piles_per_station < 1 or self.n_subregions < 1:
            raise ValueError("need at least one pile per station and one subregion")
        if min(self.mu_per_h, self.horizon_h, self.speed_kmh, self.anneal_every_h) <= 0:
            raise ValueError("mu_per_h, horizon_h, speed_kmh and anneal_every_h must be positive")
        if self.reserved is not None and not 0 <= self.reserved <= self.piles_per_station:
            raise ValueError(f"reserved must be in [0, {self.piles_per_station}]")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegionConfig:
        """A config from plain keys (RLlib env configs); unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown RegionConfig keys: {unknown}")
        return cls(**data)


@dataclass(frozen=True)
class MatchView:
    """What the matcher sees when a reserved vehicle requests (§4.1's state).

    ``mask[k]``: a pile can be booked at ``candidates[k]`` now. When no candidate has one,
    the mask is all True: the vehicle will queue wherever it is sent, and every choice is
    accepted without penalty (so a masked argmax always has a valid action)."""

    t_h: float
    vehicle: int
    candidates: np.ndarray  # [K] int station ids, nearest first
    features: np.ndarray  # [K, F] float32, FEATURES, clipped to [0, FEATURE_MAX]
    mask: np.ndarray  # [K] bool


@dataclass(frozen=True)
class _Layout:
    station_xy: np.ndarray  # [J, 2] km
    cell_lo: np.ndarray  # [R, 2] km, lower corner of each subregion cell
    cell_size: np.ndarray  # [2] km
    weights: np.ndarray  # [R] demand share per subregion
    travel_sub_h: np.ndarray  # [R, J] centre-to-station travel hours


def _make_layout(cfg: RegionConfig) -> _Layout:
    """Stations on a jittered grid, subregions a grid of cells, demand Dirichlet-uneven."""
    rng = np.random.default_rng([cfg.seed, 4004])
    side = cfg.region_km
    cols = math.ceil(math.sqrt(cfg.n_stations))
    rows = math.ceil(cfg.n_stations / cols)
    idx = np.arange(cfg.n_stations)
    grid = np.stack([(idx % cols + 0.5) * side / cols, (idx // cols + 0.5) * side / rows], 1)
    jitter = rng.uniform(-0.15, 0.15, size=grid.shape) * np.array([side / cols, side / rows])
    station_xy = np.clip(grid + jitter, 0.0, side)
    c_cols = math.ceil(math.sqrt(cfg.n_subregions))
    c_rows = math.ceil(cfg.n_subregions / c_cols)
    cell = np.array([side / c_cols, side / c_rows])
    ridx = np.arange(cfg.n_subregions)
    cell_lo = np.stack([(ridx % c_cols) * cell[0], (ridx // c_cols) * cell[1]], 1)
    weights = rng.dirichlet(np.full(cfg.n_subregions, cfg.demand_skew))
    centre = cell_lo + cell / 2
    dist = np.linalg.norm(centre[:, None, :] - station_xy[None, :, :], axis=2)
    return _Layout(station_xy, cell_lo, cell, weights, dist / cfg.speed_kmh)


def _reserved_counts(cfg: RegionConfig) -> np.ndarray:
    """Reserved piles per station (§2.2). ``cfg.reserved`` when given; else
    ``evgrid.optim.reserved_piles.reserved_pile_count`` for a station carrying an even share
    of the region's rates (that module's own region model: identical stations splitting the
    demand), the same at every station; else — module absent or failing — the fixed rule
    "half of the reserved class's share of the piles". Not per-station demand: ACP spreads
    the load over stations, and a station whose nearest-demand overloads it has no
    meaningful stationary plan."""
    n = cfg.n_stations
    if cfg.reserved is not None:
        return np.full(n, cfg.reserved, dtype=np.int64)
    share = cfg.reserved_rate_per_h / max(cfg.reserved_rate_per_h + cfg.walkin_rate_per_h, 1e-9)
    fixed = np.full(n, round(0.5 * cfg.piles_per_station * share), dtype=np.int64)
    try:
        import evgrid.optim.reserved_piles  # noqa: F401
    except ImportError:
        return fixed
    try:
        count = _planned_reserved(cfg.piles_per_station, cfg.mu_per_h,
                                  cfg.reserved_rate_per_h / n, cfg.walkin_rate_per_h / n)
    except (ValueError, ArithmeticError):
        return fixed
    return np.full(n, min(max(count, 0), cfg.piles_per_station), dtype=np.int64)


@functools.lru_cache(maxsize=256)
def _planned_reserved(n_piles: int, mu: float, rate_reserved: float, rate_walkin: float) -> int:
    """§2.2's count for one station, cached per process: the exact station CTMC takes ~1 s."""
    from evgrid.optim.reserved_piles import reserved_pile_count

    return int(reserved_pile_count(n_piles, mu, rate_reserved, rate_walkin).reserved)


@dataclass
class _Day:
    """The day's vehicles, drawn before any strategy acts; ids are in request order."""

    t_req: np.ndarray
    reserved: np.ndarray  # bool
    subregion: np.ndarray
    origin: np.ndarray  # [N, 2] km
    service_h: np.ndarray


def _draw_day(cfg: RegionConfig, layout: _Layout, seed: int) -> _Day:
    rng = np.random.default_rng([seed, 40041])
    parts = []
    for is_res, rate in ((True, cfg.reserved_rate_per_h), (False, cfg.walkin_rate_per_h)):
        n = int(rng.poisson(rate * cfg.horizon_h))
        parts.append((np.sort(rng.uniform(0.0, cfg.horizon_h, n)), np.full(n, is_res)))
    t = np.concatenate([p[0] for p in parts])
    res = np.concatenate([p[1] for p in parts])
    order = np.argsort(t, kind="stable")
    t, res = t[order], res[order]
    sub = rng.choice(cfg.n_subregions, size=t.size, p=layout.weights)
    origin = layout.cell_lo[sub] + rng.uniform(0.0, 1.0, (t.size, 2)) * layout.cell_size
    service = rng.exponential(1.0 / cfg.mu_per_h, t.size)
    return _Day(t, res.astype(bool), sub, origin, service)


def nearest_matcher(view: MatchView) -> int:
    """The nearest candidate with a bookable pile (candidates come nearest first)."""
    return int(np.flatnonzero(view.mask)[0]) if view.mask.any() else 0


class RegionSim:
    """One simulated day of the region under one strategy; see the module docstring."""

    book: ReservationBook

    def __init__(self, cfg: RegionConfig, strategy: str = "acp", *, seed: int = 0) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        self.cfg = cfg
        self.strategy = strategy
        self.seed = int(seed)
        self.layout = _make_layout(cfg)
        self.piles = np.full(cfg.n_stations, cfg.piles_per_station, dtype=np.int64)
        zero = np.zeros(cfg.n_stations, dtype=np.int64)
        self.reserved = zero if strategy == "fifs" else _reserved_counts(cfg)
        self._setup_day()

    # ------------------------------------------------------------------ episode control
    def reset(self, *, seed: int | None = None) -> MatchView | None:
        """Start the day (``seed`` replaces the day seed) and run to the first decision."""
        if seed is not None:
            self.seed = int(seed)
        self._setup_day()
        return self._advance()

    def _setup_day(self) -> None:
        """Draw the day's vehicles and clear every queue, booking and counter."""
        cfg = self.cfg
        self.day = _draw_day(cfg, self.layout, self.seed)
        n, j = self.day.t_req.size, cfg.n_stations
        self.book = ReservationBook(self.piles, self.reserved)
        self.t = 0.0
        self.status = np.full(n, PENDING, dtype=np.int8)
        self.station = np.full(n, -1, dtype=np.int64)
        self.t_arr = np.full(n, np.nan)
        self.t_start = np.full(n, np.nan)
        self.t_end = np.full(n, np.nan)
        self.booked_at_request = np.zeros(n, dtype=bool)
        self.matched = np.zeros(n, dtype=bool)
        self.travel_h = np.zeros(n)
        self.q_res: list[deque[int]] = [deque() for _ in range(j)]
        self.q_walk: list[deque[int]] = [deque() for _ in range(j)]
        self.walk_transit = np.zeros(j, dtype=np.int64)
        self.res_transit = np.zeros(j, dtype=np.int64)
        self.shares = np.zeros((cfg.n_subregions, j))
        self._route_rng = np.random.default_rng([self.seed, 40042])
        self._heap: list[tuple[float, int, int, int]] = []
        self._seq = 0
        self._cost = 0.0
        self._pending: int | None = None
        self._pending_view: MatchView | None = None
        self.done = False
        self.decisions = 0
        for i in range(n):
            self._push(float(self.day.t_req[i]), _REQUEST, i)
        if self.strategy == "acp":
            hours = np.arange(0.0, cfg.horizon_h, cfg.anneal_every_h)
            for h in hours:
                self._push(float(h), _ANNEAL, -1)

    def step(self, action: int) -> tuple[MatchView | None, float]:
        """Book candidate ``action`` for the pending reserved vehicle (a masked-out action
        becomes the nearest unmasked candidate, at ``mask_penalty_h``), run to the next
        decision; returns the next view (None at the end of the day) and the reward."""
        if self._pending is None:
            raise RuntimeError("no pending decision: call reset() (or the day is over)")
        vid, self._pending = self._pending, None
        view = self._pending_view
        assert view is not None
        self._cost = 0.0
        a = int(action)
        if not (0 <= a < K) or not view.mask[a]:
            a = nearest_matcher(view)
            self._cost += self.cfg.mask_penalty_h
        self.decisions += 1
        self.matched[vid] = True
        self._dispatch_reserved(vid, int(view.candidates[a]), book_kind="any")
        nxt = self._advance()
        return nxt, -self._cost

    def run(self, matcher: Callable[[MatchView], int] | None = None) -> dict[str, float]:
        """The whole day from the start; ``matcher`` None is the strategy's own rule."""
        pick = matcher or nearest_matcher
        view = self.reset()
        while view is not None:
            view, _ = self.step(pick(view))
        return self.kpis()

    # ------------------------------------------------------------------ event machinery
    def _push(self, t: float, kind: int, vid: int) -> None:
        heapq.heappush(self._heap, (t, kind, self._seq, vid))
        self._seq += 1

    def _advance(self) -> MatchView | None:
        """Process events until a reserved vehicle needs a match (acp) or the day ends."""
        horizon = self.cfg.horizon_h
        while self._heap and self._heap[0][0] <= horizon:
            t, kind, _, vid = heapq.heappop(self._heap)
            self.t = t
            if kind == _REQUEST:
                if self.strategy == "acp" and self.day.reserved[vid]:
                    self._pending = vid
                    self._pending_view = self._view(vid)
                    return self._pending_view
                self._request(vid)
            elif kind == _ARRIVE:
                self._arrive(vid)
            elif kind == _END:
                self._end_charge(vid)
            elif kind == _RENEGE:
                self._renege(vid)
            else:
                self._anneal()
        self._finish()
        return None

    def _finish(self) -> None:
        """End of day: charge matched vehicles still queued their (censored) wait so far."""
        if self.done:
            return
        self.done = True
        self.t = self.cfg.horizon_h
        waiting = self.matched & (self.status == QUEUED)
        self._cost += float(np.sum(self.t - self.t_arr[waiting]))

    # ------------------------------------------------------------------ vehicle lifecycle
    def _trip_h(self, vid: int, station: int) -> float:
        d = float(np.linalg.norm(self.day.origin[vid] - self.layout.station_xy[station]))
        return d / self.cfg.speed_kmh

    def _nearest(self, vid: int) -> np.ndarray:
        """Stations by distance from the vehicle's origin."""
        d = np.linalg.norm(self.layout.station_xy - self.day.origin[vid], axis=1)
        return np.argsort(d, kind="stable")

    def _request(self, vid: int) -> None:
        """A request without a matcher decision: fifs, rfwda, and acp's walk-ins."""
        if self.day.reserved[vid] and self.strategy == "rfwda":
            self._dispatch_reserved(vid, int(self._nearest(vid)[0]), book_kind="reserved")
        elif self.day.reserved[vid] or self.strategy != "acp":
            self._depart(vid, int(self._nearest(vid)[0]))
        else:
            self._depart(vid, self._route_walkin(vid))

    def _dispatch_reserved(self, vid: int, station: int, *, book_kind: str) -> None:
        """Send a reserved vehicle to ``station``, booking a pile there now if one is free
        (§4: reserved pile, or temporary allocation of a shared one with ``"any"``)."""
        free = self.book.free_reserved(station)
        if book_kind == "any":
            free += self.book.free_shared(station)
        if free > 0:
            self.book.book(vid, station, "reserved" if book_kind == "reserved" else "any")
            self.booked_at_request[vid] = True
        self._depart(vid, station)
        if self.matched[vid]:
            self._cost += self.travel_h[vid]

    def _depart(self, vid: int, station: int) -> None:
        self.station[vid] = station
        self.travel_h[vid] = self._trip_h(vid, station)
        self.status[vid] = TRAVEL
        if self.day.reserved[vid] and self.strategy != "fifs":
            if not self.booked_at_request[vid]:
                self.res_transit[station] += 1
        else:
            self.walk_transit[station] += 1
        self._push(self.t + self.travel_h[vid], _ARRIVE, vid)

    def _is_priority(self, vid: int) -> bool:
        return bool(self.day.reserved[vid]) and self.strategy != "fifs"

    def _arrive(self, vid: int) -> None:
        j = int(self.station[vid])
        self.t_arr[vid] = self.t
        if self._is_priority(vid):
            if not self.booked_at_request[vid]:
                self.res_transit[j] -= 1
        else:
            self.walk_transit[j] -= 1
        if self.book.pile_of(vid) is not None:
            self._start(vid)
            return
        self.status[vid] = QUEUED
        (self.q_res if self._is_priority(vid) else self.q_walk)[j].append(vid)
        self._push(self.t + self.cfg.parking_limit_h, _RENEGE, vid)
        self._fill(j)

    def _lendable(self, j: int) -> bool:
        """acp lends a reserved pile to a walk-in only with no reserved vehicle waiting and
        more than ``lend_keep_free`` reserved piles free (the module docstring's plan)."""
        return (self.strategy == "acp" and not self.q_res[j]
                and self.book.free_reserved(j) > self.cfg.lend_keep_free)

    def _fill(self, j: int) -> None:
        """Give free piles at station ``j`` to its queues: reserved first (any pile), then
        walk-ins (shared piles, or a lendable reserved one under acp)."""
        book = self.book
        while self.q_res[j] and book.free_reserved(j) + book.free_shared(j) > 0:
            vid = self.q_res[j].popleft()
            book.book(vid, j, "any")
            self._start(vid)
        while self.q_walk[j]:
            if book.free_shared(j) > 0:
                kind = "shared"
            elif self._lendable(j):
                kind = "reserved"
            else:
                break
            vid = self.q_walk[j].popleft()
            book.book(vid, j, kind)  # type: ignore[arg-type]
            self._start(vid)

    def _start(self, vid: int) -> None:
        cfg = self.cfg
        self.status[vid] = CHARGING
        self.t_start[vid] = self.t
        full_at = self.t + float(self.day.service_h[vid])
        leave_at = float(self.t_arr[vid]) + cfg.parking_limit_h
        self.t_end[vid] = min(full_at, leave_at)
        self._push(float(self.t_end[vid]), _END, vid)
        if self.matched[vid]:
            self._cost += self.t - float(self.t_arr[vid])
            if full_at > leave_at:
                self._cost += cfg.unfinished_penalty_h

    def _end_charge(self, vid: int) -> None:
        full = self.t_start[vid] + self.day.service_h[vid] <= self.t_end[vid] + 1e-12
        self.status[vid] = FULL if full else UNFINISHED
        station, _ = self.book.release(vid)
        self._fill(station)

    def _renege(self, vid: int) -> None:
        """The parking limit reached while still waiting: the vehicle leaves uncharged."""
        if self.status[vid] != QUEUED:
            return
        j = int(self.station[vid])
        (self.q_res if self._is_priority(vid) else self.q_walk)[j].remove(vid)
        self.status[vid] = UNFINISHED
        self.t_end[vid] = self.t
        if self.matched[vid]:
            self._cost += self.cfg.parking_limit_h + self.cfg.unfinished_penalty_h

    # ------------------------------------------------------------------ acp's walk-in routing
    def _walkin_free(self) -> np.ndarray:
        """Piles a walk-in heading out now could expect: free shared (and lendable reserved)
        piles, less walk-ins already on their way."""
        j = self.cfg.n_stations
        free = np.array([self.book.free_shared(s) + (max(0, self.book.free_reserved(s)
                         - self.cfg.lend_keep_free) if self._lendable(s) else 0)
                         for s in range(j)], dtype=np.int64)
        return np.maximum(free - self.walk_transit, 0)

    def _anneal(self) -> None:
        """§3.2: re-solve the walk-in shares from the current queues."""
        cfg = self.cfg
        queue = np.array([len(self.q_walk[s]) + len(self.q_res[s]) for s in range(cfg.n_stations)])
        self.shares = anneal_walkin_shares(
            cfg.walkin_rate_per_h * self.layout.weights, self.layout.travel_sub_h,
            self._walkin_free(), cfg.mu_per_h, queue + self.res_transit,
            servers=self.piles - self.reserved, seed=int(self._route_rng.integers(2**31)))

    def _route_walkin(self, vid: int) -> int:
        order = self._nearest(vid)
        in_range = np.zeros(self.cfg.n_stations, dtype=bool)
        in_range[order[:K]] = True
        travel = np.linalg.norm(self.layout.station_xy - self.day.origin[vid], axis=1)
        load = np.array([len(self.q_walk[s]) + len(self.q_res[s]) + self.walk_transit[s]
                         for s in range(self.cfg.n_stations)]) / self.piles
        return route_walkin(self.shares[self.day.subregion[vid]], travel / self.cfg.speed_kmh,
                            self._walkin_free(), in_range, self._route_rng, load=load)

    # ------------------------------------------------------------------ the matcher's view
    def _view(self, vid: int) -> MatchView:
        cand = self._nearest(vid)[:K].astype(np.int64)
        feats = np.zeros((K, F), dtype=np.float64)
        mask = np.zeros(K, dtype=bool)
        mu = self.cfg.mu_per_h
        for k, s in enumerate(cand):
            s = int(s)
            n = float(self.piles[s])
            fr, fs = self.book.free_reserved(s), self.book.free_shared(s)
            q_r = len(self.q_res[s]) + int(self.res_transit[s])
            mask[k] = fr + fs > 0
            wait = 0.0 if mask[k] else (q_r + 1) / (n * mu)
            feats[k] = (self._trip_h(vid, s), fr / n, fs / n, q_r / n,
                        len(self.q_walk[s]) / n, wait)
        if not mask.any():
            mask[:] = True
        feats = np.clip(feats, 0.0, FEATURE_MAX).astype(np.float32)
        return MatchView(self.t, vid, cand, feats, mask)

    # ------------------------------------------------------------------ KPIs (§5.1)
    def kpis(self) -> dict[str, float]:
        """§5.1's indicators at the current time (the horizon once the day is over):
        average charging wait (vehicles that reached a station; still waiting counts the wait
        so far, gave up counts the parking limit), average trip time (travel + wait + charge,
        vehicles that have left), full-charge and unfinished counts, both split by class, and
        pile utilisation (charging hours / pile hours) and booked-idle share (piles held for
        a reserved vehicle still driving)."""
        t = min(self.t, self.cfg.horizon_h)
        requested = self.status != PENDING
        arrived = requested & (self.t_arr <= t)
        start = np.where(np.isnan(self.t_start), np.nan, self.t_start)
        wait = np.where(self.status == QUEUED, t - self.t_arr,
                        np.where(np.isnan(start), self.t_end - self.t_arr, start - self.t_arr))
        left = (self.status == FULL) | (self.status == UNFINISHED)
        trip = self.t_end - self.day.t_req
        out: dict[str, float] = {}
        for tag, sel in (("", np.ones_like(requested)), ("reserved_", self.day.reserved),
                         ("walkin_", ~self.day.reserved)):
            out[f"{tag}avg_wait_min"] = _mean(60.0 * wait[arrived & sel])
            out[f"{tag}avg_trip_min"] = _mean(60.0 * trip[left & sel])
            out[f"{tag}full_charges"] = float(np.sum((self.status == FULL) & sel))
            out[f"{tag}unfinished"] = float(np.sum((self.status == UNFINISHED) & sel))
            out[f"{tag}in_progress"] = float(np.sum(requested & ~left & sel))
            out[f"{tag}vehicles"] = float(np.sum(requested & sel))
        charged = np.clip(np.minimum(self.t_end, t) - self.t_start, 0.0, None)
        pile_h = float(self.piles.sum()) * max(t, 1e-9)
        out["pile_utilisation"] = float(np.nansum(charged)) / pile_h
        held = np.clip(np.minimum(np.nan_to_num(self.t_arr, nan=t), t) - self.day.t_req, 0, None)
        out["booked_idle_share"] = float(np.sum(held[self.booked_at_request & requested])) / pile_h
        out["decisions"] = float(self.decisions)
        return out


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if x.size else 0.0


def compare_strategies(cfg: RegionConfig, seeds: list[int] | range, *,
                       matchers: dict[str, Callable[[MatchView], int]] | None = None
                       ) -> dict[str, dict[str, dict[str, float]]]:
    """KPIs per strategy as ``{label: {kpi: {"mean", "sd"}}}`` over ``seeds`` (sd with
    ddof=1; 0 for one seed). Labels are :data:`STRATEGIES` (acp with ``matchers["acp"]`` or
    the nearest matcher); any other key of ``matchers`` (e.g. ``"acp-dqn"``) is one more acp
    run with that matcher. The same seeds give every label the same vehicles."""
    matchers = dict(matchers or {})
    runs: dict[str, tuple[str, Callable[[MatchView], int] | None]] = {
        s: (s, matchers.get(s)) for s in STRATEGIES}
    runs.update({label: ("acp", m) for label, m in matchers.items() if label not in STRATEGIES})
    out: dict[str, dict[str, dict[str, float]]] = {}
    for label, (strategy, matcher) in runs.items():
        rows = [RegionSim(cfg, strategy, seed=int(s)).run(matcher) for s in seeds]
        out[label] = {k: _mean_sd([r[k] for r in rows]) for k in rows[0]}
    return out


def _mean_sd(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    sd = float(np.std(arr, ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(np.mean(arr)), "sd": sd}
