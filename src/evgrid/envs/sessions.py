"""EV charging sessions: drawn from each cohort's non-homogeneous Poisson process, or replayed.

A session is fixed when it is drawn (arrival, departure, battery, energy asked for); what the
controllers change is only how much energy it receives while connected. Time is discretised to
control periods: an EV is present during steps ``[arrival_step, departure_step)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields

import numpy as np

from evgrid.scenario.recorded import (
    RecordedDataError,
    horizon_start_utc,
    read_sessions_csv,
    session_columns,
)
from evgrid.scenario.schema import Distribution, Scenario, as_hourly


@dataclass(frozen=True)
class Sessions:
    """Struct of arrays, one entry per EV, sorted by arrival time (ties keep draw order)."""

    arrival_step: np.ndarray  # [N] int
    departure_step: np.ndarray  # [N] int, > arrival_step, <= horizon steps
    cohort: np.ndarray  # [N] int, -1 for replayed sessions
    origin_xy_km: np.ndarray  # [N, 2] where the driver comes from
    battery_kwh: np.ndarray  # [N]
    max_kw: np.ndarray  # [N] on-board charger limit
    arrival_soc: np.ndarray  # [N] in [0, 1]
    requested_kwh: np.ndarray  # [N] energy into the battery asked for
    floor_kwh: np.ndarray  # [N] energy needed to reach the departure floor (<= requested)
    facility: np.ndarray  # [N] int, -1 = routed by the simulator / cohort agents

    def __len__(self) -> int:
        return int(self.arrival_step.size)

    @staticmethod
    def concat(parts: list[Sessions]) -> Sessions:
        """Join session tables and sort by arrival step (stable)."""
        if not parts:
            return empty_sessions()
        joined = {
            f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Sessions)
        }
        order = np.argsort(joined["arrival_step"], kind="stable")
        return Sessions(**{k: v[order] for k, v in joined.items()})


def empty_sessions() -> Sessions:
    z = np.zeros(0)
    zi = np.zeros(0, dtype=np.int64)
    return Sessions(zi, zi, zi, np.zeros((0, 2)), z, z, z, z, z, zi)


def draw_truncated(dist: Distribution, n: int, rng: np.random.Generator) -> np.ndarray:
    """Truncated normal by clipping: a practitioner's reading that keeps bounds exact and fast."""
    if dist.std == 0:
        return np.full(n, dist.mean)
    return np.clip(rng.normal(dist.mean, dist.std, n), dist.low, dist.high)


def poisson_arrival_times_h(
    rate_per_h: np.ndarray, horizon_h: float, rng: np.random.Generator
) -> np.ndarray:
    """Arrival times of a non-homogeneous Poisson process with an hourly piecewise rate.

    Thinning (Lewis & Shedler): draw a homogeneous process at the peak rate, keep each point
    with probability λ(t)/λ_max. ``rate_per_h`` has 24 values and repeats daily.
    """
    lam_max = float(rate_per_h.max())
    if lam_max <= 0:
        return np.zeros(0)
    n = rng.poisson(lam_max * horizon_h)
    t = np.sort(rng.uniform(0.0, horizon_h, n))
    keep = rng.uniform(0.0, lam_max, n) < rate_per_h[np.floor(t).astype(int) % 24]
    return t[keep]


def draw_sessions(scenario: Scenario, rng: np.random.Generator) -> Sessions:
    """Draw every cohort's arrivals over the horizon (seed 001 §2.1 user types).

    Cohort k arrives at rate λ_k(h) = arrivals_per_day · share_k · profile_k(h) / Σ profile_k
    per hour; the driver's origin is uniform over the facilities' bounding box widened by 1 km.

    A facility with ``sessions_csv`` gets exactly that file's sessions instead (no randomness
    used, so the other draws do not change), on the clock of
    :func:`evgrid.scenario.recorded.horizon_start_utc`; skipped rows raise a warning.
    """
    horizon_h = scenario.steps * scenario.dt_h
    xs = np.array([f.x_km for f in scenario.facilities])
    ys = np.array([f.y_km for f in scenario.facilities])
    routed = [f for f in scenario.facilities if f.sessions_csv is None]
    parts = []
    for k, c in enumerate(scenario.cohorts):
        if not routed:
            break
        profile = np.asarray(as_hourly(c.arrival_profile))
        rate = scenario.arrivals_per_day * c.share * profile / profile.sum()
        t_arr = poisson_arrival_times_h(rate, horizon_h, rng)
        n = t_arr.size
        dwell = draw_truncated(c.dwell_h, n, rng)
        soc = draw_truncated(c.arrival_soc, n, rng)
        origin = np.stack(
            [
                rng.uniform(xs.min() - 1, xs.max() + 1, n),
                rng.uniform(ys.min() - 1, ys.max() + 1, n),
            ],
            axis=1,
        )
        battery = np.full(n, c.battery_kwh)
        parts.append(
            make_sessions(
                arrival_h=t_arr,
                departure_h=t_arr + dwell,
                dt_h=scenario.dt_h,
                steps=scenario.steps,
                cohort=np.full(n, k),
                origin_xy_km=origin,
                battery_kwh=battery,
                max_kw=np.full(n, c.max_charge_kw),
                arrival_soc=soc,
                requested_kwh=np.maximum(0.0, c.target_soc - soc) * battery,
                floor_kwh=np.maximum(0.0, c.departure_floor - soc) * battery,
                facility=np.full(n, -1),
            )
        )
    recorded = [(i, f, f.sessions_csv) for i, f in enumerate(scenario.facilities)
                if f.sessions_csv is not None]
    recs = [read_sessions_csv(path) for _, _, path in recorded]
    start = horizon_start_utc(scenario, recs) if recs else None
    for (fi, f, _), rec in zip(recorded, recs, strict=True):
        assert start is not None  # there are recorded sessions, so there is a clock
        if not len(rec):
            raise RecordedDataError(f"facility {f.id!r}: {rec.skip_report()}; no usable sessions")
        if rec.skipped:
            warnings.warn(rec.skip_report(), stacklevel=2)
        n = len(rec)
        parts.append(
            make_sessions(
                dt_h=scenario.dt_h,
                steps=scenario.steps,
                facility=np.full(n, fi),
                origin_xy_km=np.tile([f.x_km, f.y_km], (n, 1)),
                max_kw=np.full(n, max(z.chargers.max_kw for z in f.zones.values())),
                **session_columns(rec, start),
            )
        )
    return Sessions.concat(parts)


def make_sessions(
    *,
    arrival_h: np.ndarray,
    departure_h: np.ndarray,
    dt_h: float,
    steps: int,
    **columns: np.ndarray,
) -> Sessions:
    """Discretise continuous times to steps and drop sessions that start after the horizon.

    An EV arriving within a period is connected from that period's start; it leaves at the
    period boundary nearest its departure, and stays at least one period.
    """
    arr = np.floor(arrival_h / dt_h + 1e-9).astype(np.int64)
    dep = np.maximum(arr + 1, np.round(departure_h / dt_h).astype(np.int64))
    keep = (arr >= 0) & (arr < steps)
    dep = np.minimum(dep, steps)
    cols = {k: np.asarray(v)[keep] for k, v in columns.items()}
    cols["requested_kwh"] = np.minimum(
        cols["requested_kwh"], cols["battery_kwh"] * (1 - cols["arrival_soc"])
    )
    cols["floor_kwh"] = np.minimum(cols["floor_kwh"], cols["requested_kwh"])
    return Sessions(arrival_step=arr[keep], departure_step=dep[keep], **cols)
