"""Pile booking ledger of seed 004's region (§2.2 and §4 of 004_8f5fa6c845a0843d.txt).

§2.2 sets a number of piles per station aside for reservation (high-priority) vehicles; §4
matches reserved vehicles to piles, either to a reserved pile or by temporarily allocating a
non-reserved ("shared") one. Both need one invariant above all: a pile is held by at most
one vehicle and a vehicle holds at most one pile. This ledger is the single place that
enforces it, so that the simulator's strategies can be wrong about *which* pile is best but
never hand one pile to two vehicles.

Layout: station ``j`` has piles ``0 .. piles[j]-1``; the first ``reserved[j]`` are its
reserved piles, the rest are shared. ``holder[j, p]`` is the vehicle id on the pile or
``-1`` when it is free (``-2`` pads stations with fewer piles than the largest one). Free
counts are kept per station so that ``free_reserved``/``free_shared`` are O(1); a booking
scans one station's row with numpy (a few dozen entries).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

PileKind = Literal["reserved", "shared", "any"]

_FREE = -1
_PAD = -2


class DoubleBooking(ValueError):
    """The vehicle already holds a pile (one vehicle, one pile)."""


class NoFreePile(ValueError):
    """No pile of the asked kind is free at the station."""


class NotBooked(ValueError):
    """The vehicle holds no pile, so there is nothing to release."""


class ReservationBook:
    """Who holds which pile, per station; reserved piles first in each station's row."""

    def __init__(self, piles_per_station: np.ndarray, reserved_per_station: np.ndarray) -> None:
        piles = np.asarray(piles_per_station, dtype=np.int64).ravel()
        reserved = np.asarray(reserved_per_station, dtype=np.int64).ravel()
        if piles.shape != reserved.shape:
            raise ValueError(f"piles {piles.shape} and reserved {reserved.shape} differ in shape")
        if np.any(piles < 0) or np.any(reserved < 0) or np.any(reserved > piles):
            raise ValueError("need 0 <= reserved <= piles at every station")
        self.piles = piles
        self.reserved = reserved
        width = int(piles.max()) if piles.size else 0
        cols = np.arange(width)[None, :]
        self._holder = np.where(cols < piles[:, None], _FREE, _PAD).astype(np.int64)
        self._free_res = reserved.copy()
        self._free_sh = piles - reserved
        self._where: dict[int, tuple[int, int]] = {}

    @property
    def n_stations(self) -> int:
        return int(self.piles.size)

    def free_reserved(self, station: int) -> int:
        """Free reserved piles at ``station`` (booked ones are not free)."""
        return int(self._free_res[station])

    def free_shared(self, station: int) -> int:
        """Free non-reserved piles at ``station``."""
        return int(self._free_sh[station])

    def holder(self, station: int, pile: int) -> int | None:
        """The vehicle on ``pile`` of ``station``, or None when the pile is free."""
        if not 0 <= pile < self.piles[station]:
            raise IndexError(f"station {station} has no pile {pile}")
        v = int(self._holder[station, pile])
        return None if v == _FREE else v

    def pile_of(self, vehicle_id: int) -> tuple[int, int] | None:
        """``(station, pile)`` held by the vehicle, or None."""
        return self._where.get(int(vehicle_id))

    def is_reserved_pile(self, station: int, pile: int) -> bool:
        return pile < self.reserved[station]

    def book(self, vehicle_id: int, station: int, kind: PileKind = "any") -> int:
        """Give the vehicle a free pile of ``kind`` at ``station`` and return its index.

        ``"any"`` prefers a reserved pile and falls back to a shared one — §4's "temporary
        allocation of a non-reserved pile" when the reserved ones are taken."""
        vid = int(vehicle_id)
        if vid < 0:
            raise ValueError(f"vehicle ids are non-negative, got {vid}")
        if vid in self._where:
            j, p = self._where[vid]
            raise DoubleBooking(f"vehicle {vid} already holds pile {p} at station {j}")
        pile = self._find_free(station, kind)
        if pile < 0:
            raise NoFreePile(f"no free {kind} pile at station {station}")
        self._holder[station, pile] = vid
        self._where[vid] = (station, pile)
        if pile < self.reserved[station]:
            self._free_res[station] -= 1
        else:
            self._free_sh[station] -= 1
        return pile

    def release(self, vehicle_id: int) -> tuple[int, int]:
        """Free the vehicle's pile; returns the ``(station, pile)`` it held."""
        vid = int(vehicle_id)
        if vid not in self._where:
            raise NotBooked(f"vehicle {vid} holds no pile")
        station, pile = self._where.pop(vid)
        self._holder[station, pile] = _FREE
        if pile < self.reserved[station]:
            self._free_res[station] += 1
        else:
            self._free_sh[station] += 1
        return station, pile

    def _find_free(self, station: int, kind: PileKind) -> int:
        """Lowest free pile index of ``kind`` (reserved before shared for ``"any"``), -1 if none."""
        r = int(self.reserved[station])
        n = int(self.piles[station])
        spans = {"reserved": [(0, r)], "shared": [(r, n)], "any": [(0, r), (r, n)]}[kind]
        for lo, hi in spans:
            if lo < hi:
                free = np.flatnonzero(self._holder[station, lo:hi] == _FREE)
                if free.size:
                    return lo + int(free[0])
        return -1

    def check(self) -> None:
        """Assert the ledger's invariants (tests and debugging): counts match the matrix,
        each vehicle appears on exactly one pile."""
        held = self._holder[self._holder >= 0]
        assert held.size == np.unique(held).size == len(self._where)
        for vid, (j, p) in self._where.items():
            assert self._holder[j, p] == vid
        for j in range(self.n_stations):
            r, n = int(self.reserved[j]), int(self.piles[j])
            assert self._free_res[j] == int(np.sum(self._holder[j, :r] == _FREE))
            assert self._free_sh[j] == int(np.sum(self._holder[j, r:n] == _FREE))
