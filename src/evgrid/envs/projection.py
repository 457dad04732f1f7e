"""The safety projection: the last word before any set-point is executed.

Whatever a controller asks (a baseline, ADMM that did not converge, a learned policy), the
executed power never exceeds a charger's rating, an EV's limit or battery room, a grid zone's
limit (Eq. 11 of 000_f74a305f822cf870.txt per feeder) or the city limit. Limits are met by
scaling every charger in the offending zone (then the city) by the same factor, which keeps
the controller's relative priorities. Every cut is counted, so a controller that leans on the
projection is visible in its KPIs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Relative slack below which an excess is float noise, not a violation.
LIMIT_RTOL = 1e-9


@dataclass(frozen=True)
class ProjectionCuts:
    """What the projection removed in one step."""

    rate_cuts: int  # set-points above a charger / EV / battery bound
    rate_cut_kw: float
    zone_violations: int  # grid zones over their limit before projection
    city_violation: bool
    limit_cut_kw: float  # power removed to meet zone and city limits


def project(
    power_kw: np.ndarray,
    *,
    upper_kw: np.ndarray,
    charger_grid: np.ndarray,
    zone_limit_kw: np.ndarray,
    city_limit_kw: float,
) -> tuple[np.ndarray, ProjectionCuts]:
    """Return executable power and the cuts made. ``upper_kw`` is 0 where nothing may flow."""
    p = np.nan_to_num(np.asarray(power_kw, dtype=float), nan=0.0, posinf=0.0, neginf=0.0)
    if p.shape != upper_kw.shape:
        raise ValueError(f"controller returned shape {p.shape}, expected {upper_kw.shape}")
    clipped = np.clip(p, 0.0, upper_kw)
    over = p - clipped
    rate_cuts = int(np.count_nonzero(np.abs(over) > 1e-9))  # above a bound, or negative
    rate_cut_kw = float(np.abs(over).sum())

    zone_load = np.bincount(charger_grid, weights=clipped, minlength=zone_limit_kw.size)
    over_zone = zone_load > zone_limit_kw * (1 + LIMIT_RTOL) + 1e-9
    scale = np.divide(zone_limit_kw, zone_load, out=np.ones_like(zone_load), where=over_zone)
    projected = clipped * scale[charger_grid]
    total = projected.sum()
    city_over = bool(total > city_limit_kw * (1 + LIMIT_RTOL) + 1e-9)
    if city_over:
        projected *= city_limit_kw / total
    cuts = ProjectionCuts(
        rate_cuts=rate_cuts,
        rate_cut_kw=rate_cut_kw,
        zone_violations=int(over_zone.sum()),
        city_violation=city_over,
        limit_cut_kw=float(clipped.sum() - projected.sum()),
    )
    return projected, cuts
