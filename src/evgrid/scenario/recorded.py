"""Recorded charging sessions and hourly prices read from CSV files.

Real data is messy, so the session reader keeps going past bad rows but never hides them: every
skipped row is counted by reason and the first line numbers are kept, so a user can open the
file at the right place. Times must carry a UTC offset (or ``Z``): a naive time is ambiguous by
up to a day across time zones and by an hour across DST changes, and guessing would shift every
session silently. Everything is converted to UTC and stored as ``datetime64[s]`` (numpy's
naive datetimes, read as UTC throughout this module).

Price files come in two layouts: ``timestamp,price_per_kwh`` (ISO 8601 with offset) or the one
ev2gym 2.0.0 ships as ``ev2gym/data/Netherlands_day-ahead-2015-2024.csv``
(``Country,Datetime (UTC),Datetime (Local),Price (EUR/MWhe)``). That file mixes two timestamp
spellings (``2015-01-01 00:00:00`` up to 2023-09-30, then ``31/12/2022 23:00`` day-first from
2022-12-31 to 2025-01-07), has one blank separator row, and repeats Jan–Sep 2023 with identical
values; all three are handled here.

Clock rule for scenario files (no ``Scenario.start`` field exists): step 0 is midnight UTC of the
earliest recorded arrival over all facilities' ``sessions_csv`` files, or, when there are none,
midnight UTC of the first timestamp of ``prices.price_csv`` (see :func:`horizon_start_utc`).
Using one clock for every file keeps sessions of different sites and the prices aligned.

Values are held to the scenario schema's bounds (:mod:`evgrid.scenario.bounds`): a session
asking for more energy than the largest plausible battery is a bad row (skipped and reported,
like a negative one; 1e308 kWh would otherwise reach the KPIs as inf), and a price beyond
±10,000 per kWh refuses the price file. A file that is not UTF-8 text, or that the csv module
cannot parse, raises :class:`RecordedDataError` naming the file, like every other problem.

Pure: numpy, csv, datetime and the bounds' constants only.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evgrid.scenario.bounds import MAX_BATTERY_KWH, MAX_PRICE_PER_KWH

if TYPE_CHECKING:
    from evgrid.scenario.schema import Scenario

#: Line numbers of skipped rows kept for the report (the count covers all of them).
MAX_SKIPPED_LINES = 10

#: Recorded data says how much energy a driver took, not the battery or its state of charge.
#: Every replayed EV arrives at this SoC with a battery sized so that the request is exactly the
#: room left (``requested = battery · (1 − soc)``): "full" then means "got what was recorded",
#: and no controller can push more energy into a replayed EV than it actually took.
RECORDED_ARRIVAL_SOC = 0.2
#: Smallest battery assumed [kWh], so a zero-energy session still has a positive capacity.
MIN_RECORDED_BATTERY_KWH = 1.0 / (1.0 - RECORDED_ARRIVAL_SOC)

SKIP_TIME = "unparseable arrival/departure time"
SKIP_NAIVE = "time without a UTC offset"
SKIP_ORDER = "departure not after arrival"
SKIP_ENERGY = "energy missing, negative or not finite"
SKIP_ENERGY_LARGE = f"energy above {MAX_BATTERY_KWH:,.0f} kWh (the largest plausible battery)"

_HOUR = np.timedelta64(3600, "s")


class RecordedDataError(ValueError):
    """A recorded-data file that cannot be used at all (missing column, nothing usable)."""


@dataclass(frozen=True)
class RecordedSessions:
    """Sessions read from a CSV, in file order; times are UTC ``datetime64[s]``."""

    source: str
    arrival: np.ndarray  # [N] datetime64[s], UTC
    departure: np.ndarray  # [N] datetime64[s], UTC, > arrival
    requested_kwh: np.ndarray  # [N] >= 0
    station_id: list[str] | None  # [N], None when the file has no station column
    line: np.ndarray  # [N] int, 1-based line of each row in the file (header = 1)
    skipped: int = 0
    skipped_lines: list[int] = field(default_factory=list)  # first MAX_SKIPPED_LINES
    skip_reasons: dict[str, int] = field(default_factory=dict)  # reason -> rows

    def __len__(self) -> int:
        return int(self.arrival.size)

    def first_midnight_utc(self) -> datetime:
        """Midnight UTC of the first arrival's day: the default start of a replay horizon."""
        if not len(self):
            raise RecordedDataError(f"{self.source}: no usable sessions")
        return to_datetime(self.arrival.min().astype("datetime64[D]"))

    def skip_report(self) -> str:
        """One line for a user: how many rows were skipped, why, and where to look."""
        if not self.skipped:
            return f"{self.source}: no rows skipped"
        reasons = ", ".join(f"{n} {r}" for r, n in self.skip_reasons.items())
        lines = ", ".join(map(str, self.skipped_lines))
        more = ", ..." if self.skipped > len(self.skipped_lines) else ""
        return (
            f"{self.source}: skipped {self.skipped} row(s) ({reasons}); "
            f"first at line(s) {lines}{more}"
        )


def to_datetime64(value: datetime) -> np.datetime64:
    """An aware datetime as UTC ``datetime64[s]``; a naive one is refused (see module doc)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{value.isoformat()} has no UTC offset; give one (e.g. +00:00 or Z)")
    return np.datetime64(round(value.timestamp()), "s")


def to_datetime(value: np.datetime64) -> datetime:
    """UTC ``datetime64`` back to an aware datetime."""
    return datetime.fromtimestamp(int(value.astype("datetime64[s]").astype(np.int64)), tz=UTC)


def _parse_aware(text: str | None) -> datetime | str:
    """The time in ``text`` as aware UTC; ``SKIP_NAIVE`` or ``SKIP_TIME`` when it is not usable."""
    if text is None or not text.strip():
        return SKIP_TIME
    try:
        value = datetime.fromisoformat(text.strip())  # 3.11+: accepts a trailing Z
    except ValueError:
        return SKIP_TIME
    if value.tzinfo is None or value.utcoffset() is None:
        return SKIP_NAIVE
    return value.astimezone(UTC)


def _header_error(path: Path, missing: str, header: Sequence[str], hint: str) -> RecordedDataError:
    return RecordedDataError(
        f"{path}: no column {missing!r} (header has: {', '.join(map(repr, header)) or 'nothing'})"
        f"; {hint}"
    )


class _Where:
    """The reader whose line a decoding or CSV error is reported at (set once it exists)."""

    reader: Any = None


@contextmanager
def _csv_errors(path: Path) -> Iterator[_Where]:
    """Turn a file that is not UTF-8 text or not CSV into a one-line RecordedDataError.

    Without this a binary or mis-encoded file raised UnicodeDecodeError (a ValueError that does
    not name the file) and an oversized field csv.Error (not even a ValueError), both of which
    reached the user as tracebacks.
    """
    where = _Where()

    def after() -> str:
        n = getattr(where.reader, "line_num", 0)
        return f" after line {n}" if n else ""

    try:
        yield where
    except UnicodeDecodeError as exc:
        raise RecordedDataError(
            f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x}{after()}); "
            "save the file as UTF-8 CSV"
        ) from None
    except csv.Error as exc:
        raise RecordedDataError(f"{path}: not a CSV file{after()}: {exc}") from None


def read_sessions_csv(
    path: str | Path,
    *,
    arrival_col: str = "arrival",
    departure_col: str = "departure",
    energy_col: str = "requested_energy_kwh",
    station_col: str = "station_id",
) -> RecordedSessions:
    """Read recorded sessions, skipping (and reporting) rows that cannot be used.

    A row is skipped when a time does not parse or has no UTC offset, when departure <=
    arrival, or when the energy is missing, negative, not finite or more than
    :data:`~evgrid.scenario.bounds.MAX_BATTERY_KWH` (no session can take more than a battery
    holds; such a figure is a unit slip, Wh for kWh, or a corrupt cell). The station column is
    optional; the three others are required and their absence raises
    :class:`RecordedDataError` listing the header that was found, as does a file that is not
    UTF-8 text or not CSV.
    """
    path = Path(path)
    arrivals: list[int] = []
    departures: list[int] = []
    energy: list[float] = []
    stations: list[str] = []
    lines: list[int] = []
    reasons: dict[str, int] = {}
    skipped_lines: list[int] = []
    with _csv_errors(path) as line, path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        line.reader = reader
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise RecordedDataError(f"{path}: empty file (expected a header line)")
        for col in (arrival_col, departure_col, energy_col):
            if col not in header:
                raise _header_error(
                    path,
                    col,
                    header,
                    "map it with arrival_col / departure_col / energy_col "
                    "(evgrid replay: --arrival-col / --departure-col / --energy-col)",
                )
        i_arr, i_dep, i_en = (header.index(c) for c in (arrival_col, departure_col, energy_col))
        i_st = header.index(station_col) if station_col in header else None
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # blank line: not a record, nothing to report

            def cell(i: int, row: list[str] = row) -> str | None:
                return row[i] if i < len(row) else None

            arr, dep = _parse_aware(cell(i_arr)), _parse_aware(cell(i_dep))
            reason: str | None = None
            if isinstance(arr, str) or isinstance(dep, str):
                # an unparseable time says more than a missing offset, so it wins
                reason = SKIP_TIME if SKIP_TIME in (arr, dep) else SKIP_NAIVE
            else:
                try:
                    kwh = float(cell(i_en) or "nan")
                except ValueError:
                    kwh = math.nan
                if not (dep > arr):
                    reason = SKIP_ORDER
                elif not (math.isfinite(kwh) and kwh >= 0):
                    reason = SKIP_ENERGY
                elif kwh > MAX_BATTERY_KWH:
                    reason = SKIP_ENERGY_LARGE
            if reason is not None:
                reasons[reason] = reasons.get(reason, 0) + 1
                if len(skipped_lines) < MAX_SKIPPED_LINES:
                    skipped_lines.append(reader.line_num)
                continue
            assert not isinstance(arr, str) and not isinstance(dep, str)  # else skipped above
            arrivals.append(round(arr.timestamp()))
            departures.append(round(dep.timestamp()))
            energy.append(kwh)
            stations.append((cell(i_st) or "").strip() if i_st is not None else "")
            lines.append(reader.line_num)
    return RecordedSessions(
        source=str(path),
        arrival=np.asarray(arrivals, dtype=np.int64).astype("datetime64[s]"),
        departure=np.asarray(departures, dtype=np.int64).astype("datetime64[s]"),
        requested_kwh=np.asarray(energy, dtype=float),
        station_id=stations if i_st is not None else None,
        line=np.asarray(lines, dtype=np.int64),
        skipped=sum(reasons.values()),
        skipped_lines=skipped_lines,
        skip_reasons=reasons,
    )


def session_columns(recorded: RecordedSessions, start: datetime) -> dict[str, np.ndarray]:
    """Columns for :func:`evgrid.envs.sessions.make_sessions`, times in hours since ``start``.

    Gives arrival_h, departure_h, battery_kwh, arrival_soc, requested_kwh, floor_kwh and cohort
    (-1: replayed); the caller adds where the EV is (facility, origin) and its rate limit.
    Battery and SoC follow :data:`RECORDED_ARRIVAL_SOC`; the floor is the whole request, since
    a recorded driver left with what they took and nothing says they would accept less.
    """
    t0 = to_datetime64(start)
    n = len(recorded)
    req = recorded.requested_kwh.astype(float)
    return {
        "arrival_h": (recorded.arrival - t0) / _HOUR,
        "departure_h": (recorded.departure - t0) / _HOUR,
        "battery_kwh": np.maximum(req / (1.0 - RECORDED_ARRIVAL_SOC), MIN_RECORDED_BATTERY_KWH),
        "arrival_soc": np.full(n, RECORDED_ARRIVAL_SOC),
        "requested_kwh": req.copy(),
        "floor_kwh": req.copy(),
        "cohort": np.full(n, -1, dtype=np.int64),
    }


# -- prices -------------------------------------------------------------------------------------

_GENERIC_COLS = ("timestamp", "price_per_kwh")
_EV2GYM_TIME, _EV2GYM_PRICE = "Datetime (UTC)", "Price (EUR/MWhe)"
_EV2GYM_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S")


def _parse_ev2gym_time(text: str) -> datetime | None:
    """ev2gym's UTC column: naive by design (the header says UTC); both spellings it uses."""
    for fmt in _EV2GYM_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    return None


def read_price_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Hourly prices as (UTC ``datetime64[s]`` timestamps, price per kWh), sorted by time.

    Layouts: ``timestamp,price_per_kwh`` (ISO 8601 with a UTC offset) or ev2gym's
    ``Datetime (UTC),Price (EUR/MWhe)`` (converted to EUR/kWh by /1000). Rows with an empty
    timestamp are skipped (ev2gym's file has one separator row); any other bad row raises,
    because a wrong price would bias every cost silently, and so does a price beyond
    ±:data:`~evgrid.scenario.bounds.MAX_PRICE_PER_KWH` per kWh (the schema's bound on
    ``price_per_kwh``). Repeated timestamps must agree.
    """
    path = Path(path)
    with _csv_errors(path) as line, path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        line.reader = reader
        header = [h.strip() for h in next(reader, [])]
        ev2gym = _EV2GYM_TIME in header and _EV2GYM_PRICE in header
        time_col, price_col = (_EV2GYM_TIME, _EV2GYM_PRICE) if ev2gym else _GENERIC_COLS
        if time_col not in header or price_col not in header:
            raise RecordedDataError(
                f"{path}: not a price file (header has: {', '.join(map(repr, header)) or 'nothing'}"
                f"); expected columns '{','.join(_GENERIC_COLS)}' or ev2gym's "
                f"'{_EV2GYM_TIME},{_EV2GYM_PRICE}'"
            )
        i_t, i_p = header.index(time_col), header.index(price_col)
        scale = 1e-3 if ev2gym else 1.0  # EUR/MWh -> EUR/kWh
        times: list[int] = []
        prices: list[float] = []
        for row in reader:
            text = row[i_t].strip() if i_t < len(row) else ""
            if not text:
                continue
            when = _parse_ev2gym_time(text) if ev2gym else _parse_aware(text)
            if not isinstance(when, datetime):
                why = "no UTC offset" if when == SKIP_NAIVE else "unparseable timestamp"
                raise RecordedDataError(f"{path}:{reader.line_num}: {why} {text!r}")
            try:
                price = float(row[i_p]) * scale
            except (IndexError, ValueError):
                price = math.nan
            if not math.isfinite(price):
                raise RecordedDataError(f"{path}:{reader.line_num}: price is not a number: {row}")
            if abs(price) > MAX_PRICE_PER_KWH:
                raise RecordedDataError(
                    f"{path}:{reader.line_num}: price {price:g} per kWh is not within "
                    f"±{MAX_PRICE_PER_KWH:,.0f}"
                )
            times.append(round(when.timestamp()))
            prices.append(price)
    if not times:
        raise RecordedDataError(f"{path}: no price rows")
    t = np.asarray(times, dtype=np.int64)
    p = np.asarray(prices, dtype=float)
    order = np.argsort(t, kind="stable")
    t, p = t[order], p[order]
    dup = np.flatnonzero(t[1:] == t[:-1])
    clash = dup[p[dup] != p[dup + 1]]
    if clash.size:
        when = to_datetime(np.datetime64(int(t[clash[0]]), "s")).isoformat()
        raise RecordedDataError(f"{path}: conflicting prices for {when} ({clash.size} such hours)")
    keep = np.r_[True, t[1:] != t[:-1]]
    return t[keep].astype("datetime64[s]"), p[keep]


def prices_for_horizon(
    timestamps: np.ndarray, prices: np.ndarray, start_utc: datetime, steps: int, dt_h: float
) -> np.ndarray:
    """The price in force at the start of each of ``steps`` periods from ``start_utc``.

    A price holds from its timestamp until the next one (a missing hour inside the file keeps
    the previous price; ev2gym's file lacks 23:00 on 30 Dec 2023 and 2024). The file covers
    [first timestamp, last timestamp + one period), the period being the usual spacing;
    a step outside that raises :class:`RecordedDataError` naming the covered range.
    """
    ts = np.asarray(timestamps).astype("datetime64[s]")
    if ts.size == 0:
        raise RecordedDataError("no prices")
    period = np.median(np.diff(ts)).astype("timedelta64[s]") if ts.size > 1 else _HOUR
    offsets = np.round(np.arange(steps) * dt_h * 3600.0).astype(np.int64).astype("timedelta64[s]")
    at = to_datetime64(start_utc) + offsets
    end = ts[-1] + period
    if steps and (at[0] < ts[0] or at[-1] >= end):
        horizon_end = to_datetime(at[-1]) + timedelta(hours=dt_h)
        raise RecordedDataError(
            f"prices cover {to_datetime(ts[0]).isoformat()} to {to_datetime(end).isoformat()}, "
            f"not the horizon {to_datetime(at[0]).isoformat()} to {horizon_end.isoformat()}"
        )
    idx = np.searchsorted(ts, at, side="right") - 1
    return np.asarray(prices, dtype=float)[idx]


def horizon_start_utc(
    scenario: Scenario,
    recorded: Sequence[RecordedSessions] | None = None,
    price_timestamps: np.ndarray | None = None,
) -> datetime | None:
    """Step 0 of a scenario with recorded files (module doc: the clock rule); None without.

    ``recorded`` (the facilities' session files, in order) and ``price_timestamps`` save
    re-reading files the caller already has.
    """
    paths = [f.sessions_csv for f in scenario.facilities if f.sessions_csv is not None]
    if paths:
        recs = list(recorded) if recorded is not None else [read_sessions_csv(p) for p in paths]
        firsts = [r.arrival.min() for r in recs if len(r)]
        if firsts:
            return to_datetime(min(firsts).astype("datetime64[D]"))
    if scenario.prices.price_csv is not None:
        ts = price_timestamps
        if ts is None:
            ts, _ = read_price_csv(scenario.prices.price_csv)
        return to_datetime(ts[0].astype("datetime64[D]"))
    return None
