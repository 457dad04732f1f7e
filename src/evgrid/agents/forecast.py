"""Expected future arrivals, as phantom participants of the receding-horizon problem.

A receding-horizon controller that sees only the EVs already plugged in is blind to the ones
that will arrive: with a demand charge it refuses to set any peak for the few EVs of the early
morning (a kW of peak costs more than their energy is worth), although the whole day's EVs
will share that peak; and it fills idle capacity now that later arrivals will need.

Here each grid zone gets one *forecast station* whose rows are the expected arrivals of each
future hour: a row for hour b carries λ_b EVs (the expected count), may draw λ_b · E[rate]
from the hour's start for E[dwell], and is owed λ_b · E[request]. It takes part in the ADMM
like any station, so the coordinator plans the peak, the feeder and the prices for the EVs it
expects as well as for those it has; its rows never reach a charger (``charger < 0``) and it
never executes anything. Expected values in place of the random arrivals is the certainty-
equivalent MPC of the stochastic problem (as SustainGym's MPC baseline forecasts).

Two sources, neither of which reads a session before it arrives:

- :func:`cohort_forecast`: the scenario's own cohort rates (arrival profiles, dwell, request
  distributions; seed 001 §2.1), routed to zones in proportion to their chargers;
- :class:`EmpiricalForecast`: for recorded sessions, the mean of the same step of day over the
  days already seen (nothing the first day).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from evgrid.coordinator.messages import FORECAST_PREFIX, StationState
from evgrid.envs.interface import Observation
from evgrid.envs.sessions import draw_truncated
from evgrid.envs.world import World
from evgrid.scenario.schema import as_hourly

#: Samples per cohort for the expected dwell and request (a fixed seed: same forecast always).
SAMPLES = 4000


def forecast_id(grid_id: str) -> str:
    return f"{FORECAST_PREFIX}{grid_id}"


@dataclass(frozen=True)
class ZoneForecast:
    """Expected arrivals in each grid zone per group of drivers (K: the cohorts, or one for
    recorded sessions) and step of day (D = steps per day). Groups stay apart because
    their mean would lie: a taxi's short stay and a commuter's large request averaged make
    an EV that can take more energy than either."""

    arrivals: np.ndarray  # [G, K, D] expected EVs arriving during each step
    request_kwh: np.ndarray  # [G, K, D] mean energy one of them can be given (asked and
    #                           deliverable in its stay)
    dwell_h: np.ndarray  # [G, K, D] mean stay
    max_kw: np.ndarray  # [G, K, D] rate (the EV's limit and the zone's chargers)

    @property
    def steps_per_day(self) -> int:
        return int(self.arrivals.shape[2])


def _zone_shares(world: World, rng: np.random.Generator) -> np.ndarray:
    """[G] share of the drawn (not replayed) arrivals each grid zone receives: drivers come
    from uniform origins over the facilities' box widened by 1 km (as ``draw_sessions``
    draws them) and go to the nearest facility with a charger, as ``routing="nearest"``
    does when one is free."""
    sc = world.scenario
    xs = np.array([f.x_km for f in sc.facilities])
    ys = np.array([f.y_km for f in sc.facilities])
    chargers = np.bincount(world.charger_facility, minlength=len(sc.facilities))
    drawn = np.array([f.sessions_csv is None for f in sc.facilities]) & (chargers > 0)
    out = np.zeros(world.n_grid)
    if not drawn.any():
        return out
    origin = np.stack([rng.uniform(xs.min() - 1, xs.max() + 1, SAMPLES),
                       rng.uniform(ys.min() - 1, ys.max() + 1, SAMPLES)], axis=1)
    idx = np.flatnonzero(drawn)
    dist = np.hypot(origin[:, :1] - xs[idx][None, :], origin[:, 1:] - ys[idx][None, :])
    nearest = idx[dist.argmin(axis=1)]
    zone = np.array([world.grid_ids.index(sc.facilities[f].grid_zone) for f in nearest])
    return np.bincount(zone, minlength=world.n_grid) / SAMPLES


def cohort_forecast(world: World) -> ZoneForecast:
    """The expected arrivals of the scenario's cohorts (what its generator draws from), each
    cohort's energy the mean of what its drivers ask and could take in their stay at the
    zone's mean charger rating (Monte Carlo, fixed seed: the same forecast every run)."""
    sc, dt = world.scenario, world.dt_h
    d = round(24 / dt)
    hour = (np.floor(np.arange(d) * dt + 1e-9).astype(int)) % 24
    rng = np.random.default_rng(20261128)
    g_count, k_count = world.n_grid, len(sc.cohorts)
    share = _zone_shares(world, rng)
    rating = np.array([world.charger_max_kw[world.charger_grid == g].mean()
                       if (world.charger_grid == g).any() else 0.0 for g in range(g_count)])
    eta = float(world.charger_eta.mean()) if world.n_chargers else 1.0
    shape = (g_count, k_count, d)
    arrivals, req, dwell, kw = (np.zeros(shape) for _ in range(4))
    for k, c in enumerate(sc.cohorts):
        profile = np.asarray(as_hourly(c.arrival_profile))
        per_step = sc.arrivals_per_day * c.share * profile[hour] / profile.sum() * dt
        soc = draw_truncated(c.arrival_soc, SAMPLES, rng)
        stay = draw_truncated(c.dwell_h, SAMPLES, rng)
        asked = np.maximum(0.0, c.target_soc - soc) * c.battery_kwh
        for g in range(g_count):
            rate = min(c.max_charge_kw, float(rating[g]))
            arrivals[g, k] = share[g] * per_step
            req[g, k] = float(np.minimum(asked, eta * rate * stay).mean())
            dwell[g, k] = float(stay.mean())
            kw[g, k] = rate
    return ZoneForecast(arrivals, req, dwell, kw)


@dataclass
class EmpiricalForecast:
    """Arrivals seen so far, per zone and step of day; forecasts the mean over whole past days.

    ``observe`` is given each step's observation and records every EV the first time it is
    seen plugged in (its arrival step, request, stay and rate as the station sees them then),
    so a forecast made at step t uses only sessions that arrived before t.
    """

    world: World
    seen: set[tuple[int, int]] = field(default_factory=set)  # (charger, arrival step)
    rows: list[tuple[int, int, float, float, float]] = field(default_factory=list)

    def observe(self, obs: Observation) -> None:
        for c in np.flatnonzero(obs.connected).tolist():
            key = (c, int(obs.ev_arrival_step[c]))
            if key in self.seen:
                continue
            self.seen.add(key)
            stay = (obs.ev_departure_step[c] - obs.ev_arrival_step[c]) * obs.dt_h
            rate = min(float(obs.charger_max_kw[c]), float(obs.ev_max_kw[c]))
            self.rows.append((int(obs.charger_grid[c]), key[1],
                              float(obs.ev_remaining_kwh[c]), float(stay), rate))

    def forecast(self, t: int) -> ZoneForecast | None:
        """The mean day of the whole days before step t's day (None on the first day)."""
        w = self.world
        d = round(24 / w.dt_h)
        days = t // d
        if days == 0 or not self.rows:
            return None
        rows = np.array([r for r in self.rows if r[1] < days * d], dtype=float).reshape(-1, 5)
        g, step = rows[:, 0].astype(int), rows[:, 1].astype(int) % d
        shape = (w.n_grid, d)
        count = np.zeros(shape)
        np.add.at(count, (g, step), 1.0)

        def mean(col: int) -> np.ndarray:
            total = np.zeros(shape)
            np.add.at(total, (g, step), rows[:, col])
            return np.divide(total, count, out=np.zeros(shape), where=count > 0)

        return ZoneForecast(arrivals=(count / days)[:, None], request_kwh=mean(2)[:, None],
                            dwell_h=mean(3)[:, None], max_kw=mean(4)[:, None])


def occupied(obs: Observation, zone: int, horizon: int) -> np.ndarray:
    """[H] chargers of ``zone`` the EVs plugged in now will still hold at each step ahead."""
    mine = obs.connected & (obs.charger_grid == zone)
    left = obs.ev_departure_step[mine] - obs.t
    return (np.arange(horizon)[None, :] < left[:, None]).sum(axis=0).astype(float)


def admitted(lam: np.ndarray, start: np.ndarray, end: np.ndarray, occupancy: np.ndarray,
             chargers: int) -> np.ndarray:
    """Expected arrivals that will find a free charger, first come first served: a block's
    arrivals beyond the chargers still free at its start (after the EVs present and the
    blocks before it) are expected to queue and leave without one, as the simulator's
    drivers do, so their energy is not planned for (a loss system, M/G/c in expectation).
    ``start``/``end`` are steps from now; ``occupancy`` [H] is updated."""
    out = np.zeros_like(lam)
    occ = occupancy.copy()
    for i in np.argsort(start, kind="stable").tolist():
        a, b = int(start[i]), int(min(end[i], occ.size))
        if a >= occ.size or b <= a:
            continue
        out[i] = min(lam[i], max(chargers - occ[a], 0.0))
        occ[a:b] += out[i]
    return out


def forecast_states(fc: ZoneForecast, world: World, obs: Observation, horizon: int,
                    block_h: float = 1.0) -> dict[str, StationState]:
    """Each zone's forecast station over ``horizon`` steps from ``obs.t``: one phantom row per
    future block of ``block_h`` hours (aligned to the clock, so a row keeps its identity and
    warm start from period to period), arriving at the block's first step after now."""
    t, dt, d = obs.t, world.dt_h, fc.steps_per_day
    per_block = max(1, round(block_h / dt))
    first = (t // per_block + 1) * per_block  # the next block boundary after now
    starts = np.arange(first, t + horizon, per_block)
    eta = float(world.charger_eta.mean()) if world.n_chargers else 1.0
    out = {}
    k_count = fc.arrivals.shape[1]
    for g, gid in enumerate(world.grid_ids):
        lam, req, dwell, kw, start, group = [], [], [], [], [], []
        for s0 in starts.tolist():
            sod = np.arange(s0, s0 + per_block) % d
            for k in range(k_count):
                n = fc.arrivals[g, k, sod]
                total = float(n.sum())
                wts = n / total if total > 0 else np.full(n.size, 1.0 / n.size)
                lam.append(total)
                start.append(s0)
                group.append(k)
                req.append(float(fc.request_kwh[g, k, sod] @ wts))
                dwell.append(float(fc.dwell_h[g, k, sod] @ wts))
                kw.append(float(fc.max_kw[g, k, sod] @ wts))
        lam_a, starts_a = np.asarray(lam), np.asarray(start, dtype=np.int64)
        dep_a = np.minimum(starts_a + np.maximum(np.round(np.asarray(dwell) / dt), 1)
                           .astype(np.int64), world.steps)
        lam_a = admitted(lam_a, starts_a - t, dep_a - t, occupied(obs, g, horizon),
                         int((world.charger_grid == g).sum()))
        rows = np.flatnonzero(lam_a > 1e-6)
        lam_a, starts_a, dep = lam_a[rows], starts_a[rows], dep_a[rows]
        kw_a, req_a = np.asarray(kw)[rows], np.asarray(req)[rows]
        # charger −1 − group: no charger, and a row's identity (its warm start) per group.
        charger = -1 - np.asarray(group, dtype=np.int64)[rows]
        steps = np.arange(horizon)[None, :] + t
        inside = (steps >= starts_a[:, None]) & (steps < dep[:, None])
        upper = np.where(inside, (lam_a * kw_a)[:, None], 0.0)
        # Never more than the zone's chargers could draw at once (its rating).
        total = upper.sum(axis=0)
        rating = float(world.charger_max_kw[world.charger_grid == g].sum())
        upper *= np.minimum(1.0, rating / np.maximum(total, 1e-12))[None, :]
        out[forecast_id(gid)] = StationState(
            station_id=forecast_id(gid), horizon_start=t, dt_h=dt,
            charger=charger, arrival_step=starts_a,
            departure_step=dep, upper_kw=upper, eta=np.full(lam_a.size, eta),
            owed_kwh=lam_a * req_a,
            price_per_kwh=obs.price_per_kwh[:horizon],
            carbon_kg_per_kwh=obs.carbon_kg_per_kwh[:horizon],
        )
    return out


def empty_forecast_states(world: World, obs: Observation, horizon: int) -> dict[str, StationState]:
    """Forecast stations with nothing expected (no history yet)."""
    none = ZoneForecast(*(np.zeros((world.n_grid, 1, round(24 / world.dt_h)))
                          for _ in range(4)))
    return forecast_states(none, world, obs, horizon)


#: Pseudo-count of the cohort forecast's own arrivals in its correction (evidence below
#: this many EVs moves it little).
PRIOR_EVS = 20.0


@dataclass
class Forecaster:
    """The forecast a coordinated policy plans with (:func:`make_forecaster`).

    A drawn city's forecast is its cohorts' rates, corrected zone by zone by what it has
    seen: the EVs that actually plugged in so far against those the rates expected, with
    :data:`PRIOR_EVS` of prior weight. The cohorts say who arrives; not all of them find a
    charger of their state-of-charge zone before they give up, and those never draw power,
    so a forecast of arrivals alone would plan for demand that never connects. Recorded
    sessions are forecast from the days seen so far.
    """

    fixed: ZoneForecast | None
    empirical: EmpiricalForecast

    def forecast(self, obs: Observation) -> ZoneForecast | None:
        """The forecast at ``obs`` (which it also records)."""
        self.empirical.observe(obs)
        if self.fixed is None:
            return self.empirical.forecast(obs.t)
        fc = self.fixed
        d = fc.steps_per_day
        past = np.arange(obs.t) % d
        expected = fc.arrivals[:, :, past].sum(axis=(1, 2))
        seen = np.zeros(fc.arrivals.shape[0])
        for g, arrival, *_ in self.empirical.rows:
            if arrival < obs.t:
                seen[g] += 1
        share = (seen + PRIOR_EVS) / (expected + PRIOR_EVS)
        return replace(fc, arrivals=fc.arrivals * share[:, None, None])


def make_forecaster(world: World) -> Forecaster:
    """Cohort rates where arrivals are drawn; past days where every session is recorded."""
    fixed = None if world.slot_recorded.all() else cohort_forecast(world)
    return Forecaster(fixed, EmpiricalForecast(world))
