"""What a station may draw when it is not taking part: its last envelope, then a safe share.

A station that lost its link, hung, or was dropped from a period keeps charging on its own.
The rule it follows must be one the coordinator can predict exactly, because the coordinator
reserves that draw on the station's grid zone and on the city before it shares the rest
among the stations that are still answering. Otherwise a silent station and its neighbours
could each use the same kilowatt.

The rule (one function here, used by the coordinator and by the edge node itself):

* inside the *envelope* it was last sent, it may draw that envelope. An envelope is the
  consensus of a finished period made executable (``PowerCoordinator.settle``: clipped to
  [0, the station's rating] and scaled per zone and city at every step), so a period's
  envelopes together meet every limit at every step; one the station may not have received
  is reserved as the larger of the old and the new, step by step;
* at the step of a period it saw start but not finish, nothing (the coordinator may have given
  its room to others; ``EdgeStation.fallback``);
* outside it (before the first agreement, or after the envelope's last step), it may draw its
  *safe share*: its rated power's share of its grid zone's limit and of the city limit,
  whichever is smaller, cap_i / Σ_zone cap · C_g[t] and cap_i / Σ_city cap · P[t]. The safe
  shares of all stations sum to at most every limit, so any number of stations falling back
  at once stays within them.

Pure numpy: no ray, no grpc.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


def rated_sums_kw(caps_kw: Iterable[tuple[str, float]]) -> tuple[dict[str, float], float]:
    """Σ rated power per grid zone and over the city from (zone, cap) pairs, summed exactly
    (``math.fsum``) so that the coordinator and an edge node, which list the stations in
    different orders, compute bit-identical safe shares."""
    pairs = list(caps_kw)
    zones = {z for z, _ in pairs}
    return ({z: math.fsum(c for zz, c in pairs if zz == z) for z in zones},
            math.fsum(c for _, c in pairs))


def safe_share_kw(
    cap_kw: float,
    zone_cap_kw: float,
    city_cap_kw: float,
    zone_limit_kw: np.ndarray,
    city_limit_kw: np.ndarray,
) -> np.ndarray:
    """A station's safe share of its zone's and the city's limits [kW per step].

    ``cap_kw`` is its rated power, ``zone_cap_kw`` / ``city_cap_kw`` the rated power of every
    station of its zone / of the city (itself included); limits are one value per step.
    """
    if cap_kw <= 0:
        return np.zeros(np.shape(city_limit_kw))
    zone = np.asarray(zone_limit_kw, dtype=float) * (cap_kw / max(zone_cap_kw, cap_kw))
    city = np.asarray(city_limit_kw, dtype=float) * (cap_kw / max(city_cap_kw, cap_kw))
    return np.clip(np.minimum(np.minimum(zone, city), cap_kw), 0.0, None)


@dataclass(frozen=True)
class Envelope:
    """The consensus profile a station was last sent: z [kW per step] from step ``start``."""

    start: int
    kw: np.ndarray

    @staticmethod
    def none() -> Envelope:
        return Envelope(-1, np.zeros(0))

    def covers(self, step: int) -> bool:
        return self.start >= 0 and 0 <= step - self.start < self.kw.size


def fallback_budget_kw(envelope: Envelope, safe_kw: np.ndarray, start: int) -> np.ndarray:
    """The fallback draw from step ``start`` on, one value per entry of ``safe_kw`` (the safe
    share at those steps): the envelope where it covers the step, the safe share elsewhere."""
    h = int(np.size(safe_kw))
    out = np.asarray(safe_kw, dtype=float).copy()
    if envelope.start < 0 or h == 0:
        return out
    lo = max(start, envelope.start)
    hi = min(start + h, envelope.start + envelope.kw.size)
    if hi > lo:
        out[lo - start:hi - start] = np.maximum(
            envelope.kw[lo - envelope.start:hi - envelope.start], 0.0)
    return out
