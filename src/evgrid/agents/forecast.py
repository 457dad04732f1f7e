"""Expected future arrivals, as phantom participants of the receding-horizon problem.

A receding-horizon controller that sees only the EVs already plugged in is blind to the ones
that will arrive: with a demand charge it refuses to set any peak for the few EVs of the early
morning (a kW of peak costs more than their energy is worth), although the whole day's EVs
will share that peak; and it fills idle capacity now that later arrivals will need.

Here each grid zone gets one *forecast station* whose rows are the expected arrivals of each
future hour: a row for hour b carries λ_b EVs (the expected count), may draw λ_b · E[rate]
from the hour's start for E[dwell], and is owed λ_b · E[request]. It takes part in the ADMM
like any station, so the coordinator plans the peak, the feeder and the prices for the EVs it
expects as well as for those it has; its rows never reach a charger (``charger = −1``) and it
never executes anything. Expected values in place of the random arrivals is the certainty-
equivalent MPC of the stochastic problem (as SustainGym's MPC baseline forecasts).

Two sources, neither of which reads a session before it arrives:

- :func:`cohort_forecast`: the scenario's own cohort rates (arrival profiles, dwell, request
  distributions; seed 001 §2.1), routed to zones in proportion to their chargers;
- :class:`EmpiricalForecast`: for recorded sessions, the mean of the same step of day over the
  days already seen (nothing the first day).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from evgrid.agents.station import StationState
from evgrid.coordinator.messages import FORECAST_PREFIX
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
    """Expected arrivals in each grid zone per step of day (D = steps per day)."""

    arrivals: np.ndarray  # [G, D] expected EVs arriving during each step
    request_kwh: np.ndarray  # [G, D] mean energy asked by one of them
    dwell_h: np.ndarray  # [G, D] mean stay
    max_kw: np.ndarray  # [G, D] mean rate (the EV's limit and the zone's chargers)

    @property
    def steps_per_day(self) -> int:
        return int(self.arrivals.shape[1])


def _zone_shares(world: World) -> np.ndarray:
    """[G] share of the drawn (not replayed) arrivals each grid zone receives: its chargers
    among those of the facilities drawn arrivals are routed to."""
    routed = ~world.slot_recorded[world.charger_slot]
    n = np.bincount(world.charger_grid[routed], minlength=world.n_grid).astype(float)
    return n / n.sum() if n.sum() > 0 else n


def cohort_forecast(world: World) -> ZoneForecast:
    """The expected arrivals of the scenario's cohorts (what its generator draws from)."""
    sc, dt = world.scenario, world.dt_h
    d = round(24 / dt)
    hour = (np.floor(np.arange(d) * dt + 1e-9).astype(int)) % 24
    rng = np.random.default_rng(20261128)
    lam = np.zeros(d)
    req, dwell, kw = np.zeros(d), np.zeros(d), np.zeros(d)
    for c in sc.cohorts:
        profile = np.asarray(as_hourly(c.arrival_profile))
        per_step = sc.arrivals_per_day * c.share * profile[hour] / profile.sum() * dt
        soc = draw_truncated(c.arrival_soc, SAMPLES, rng)
        e_req = float(np.maximum(0.0, c.target_soc - soc).mean() * c.battery_kwh)
        e_dwell = float(draw_truncated(c.dwell_h, SAMPLES, rng).mean())
        lam += per_step
        req += per_step * e_req
        dwell += per_step * e_dwell
        kw += per_step * c.max_charge_kw
    safe = np.maximum(lam, 1e-12)
    share = _zone_shares(world)[:, None]
    # The zone's chargers cap the rate too (their mean rating).
    rating = np.array([world.charger_max_kw[world.charger_grid == g].mean()
                       if (world.charger_grid == g).any() else 0.0
                       for g in range(world.n_grid)])[:, None]
    return ZoneForecast(
        arrivals=share * lam[None, :],
        request_kwh=np.broadcast_to(req / safe, (world.n_grid, d)).copy(),
        dwell_h=np.broadcast_to(dwell / safe, (world.n_grid, d)).copy(),
        max_kw=np.minimum(np.broadcast_to(kw / safe, (world.n_grid, d)), rating),
    )


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

        return ZoneForecast(arrivals=count / days, request_kwh=mean(2), dwell_h=mean(3),
                            max_kw=mean(4))


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
    for g, gid in enumerate(world.grid_ids):
        lam, req, dwell, kw = [], [], [], []
        for s0 in starts.tolist():
            sod = np.arange(s0, s0 + per_block) % d
            n = fc.arrivals[g, sod]
            total = float(n.sum())
            lam.append(total)
            wts = n / total if total > 0 else np.full(n.size, 1.0 / n.size)
            req.append(float(fc.request_kwh[g, sod] @ wts))
            dwell.append(float(fc.dwell_h[g, sod] @ wts))
            kw.append(float(fc.max_kw[g, sod] @ wts))
        lam_a, starts_a = np.asarray(lam), starts.astype(np.int64)
        keep = lam_a > 1e-6
        lam_a, starts_a = lam_a[keep], starts_a[keep]
        dep = np.minimum(starts_a + np.maximum(np.round(np.asarray(dwell)[keep] / dt), 1)
                         .astype(np.int64), world.steps)
        steps = np.arange(horizon)[None, :] + t
        inside = (steps >= starts_a[:, None]) & (steps < dep[:, None])
        upper = np.where(inside, (lam_a * np.asarray(kw)[keep])[:, None], 0.0)
        # Never more than the zone's chargers could draw at once (its rating).
        total = upper.sum(axis=0)
        rating = float(world.charger_max_kw[world.charger_grid == g].sum())
        upper *= np.minimum(1.0, rating / np.maximum(total, 1e-12))[None, :]
        out[forecast_id(gid)] = StationState(
            station_id=forecast_id(gid), horizon_start=t, dt_h=dt,
            charger=np.full(lam_a.size, -1, dtype=np.int64), arrival_step=starts_a,
            departure_step=dep, upper_kw=upper, eta=np.full(lam_a.size, eta),
            owed_kwh=lam_a * np.asarray(req)[keep],
            price_per_kwh=obs.price_per_kwh[:horizon],
            carbon_kg_per_kwh=obs.carbon_kg_per_kwh[:horizon],
        )
    return out


def empty_forecast_states(world: World, obs: Observation, horizon: int) -> dict[str, StationState]:
    """Forecast stations with nothing expected (no history yet)."""
    none = ZoneForecast(*(np.zeros((world.n_grid, round(24 / world.dt_h))) for _ in range(4)))
    return forecast_states(none, world, obs, horizon)


@dataclass
class Forecaster:
    """The forecast a coordinated policy plans with: the cohorts' rates for a drawn city, the
    days seen so far for recorded sessions (:func:`make_forecaster`)."""

    fixed: ZoneForecast | None
    empirical: EmpiricalForecast | None

    def forecast(self, obs: Observation) -> ZoneForecast | None:
        """The forecast at ``obs`` (which it also records, for the empirical one)."""
        if self.empirical is not None:
            self.empirical.observe(obs)
            return self.empirical.forecast(obs.t)
        return self.fixed


def make_forecaster(world: World) -> Forecaster:
    """Cohort rates where arrivals are drawn; past days where every session is recorded."""
    if world.slot_recorded.all():
        return Forecaster(None, EmpiricalForecast(world))
    return Forecaster(cohort_forecast(world), None)
