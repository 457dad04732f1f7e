"""Replay recorded sessions at one site: a one-facility scenario plus the sessions table.

Recorded data (ElaadNL-style exports, a depot's charger logs) says when each EV came, when it
left and how much energy it took, but not where the chargers sit in a city or how the feeder is
shared. The question it answers best is the single-site one: with N chargers of K kW behind a
connection of L kW, how do the policies compare with the offline optimum on *these* sessions?
So the scenario is the smallest one the simulator accepts: one facility, one ``general`` zone,
one grid zone ``site`` whose limit is also the city limit, and a placeholder cohort with
``arrivals_per_day = 0`` so that nothing random is added to the recorded sessions.

The site's sizes come from the command line, so they are checked here against the scenario
schema's bounds (:mod:`evgrid.scenario.bounds`) with one-line errors that name the option
(``--chargers: 0 is not >= 1``), before a scenario is built; the schema would refuse them too,
but worded for a scenario file the user never wrote.
"""

from __future__ import annotations

import math
import numbers
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from evgrid.envs.sessions import Sessions, make_sessions
from evgrid.scenario.bounds import (
    MAX_CHARGER_KW,
    MAX_HORIZON_DAYS,
    MAX_LIMIT_KW,
    MAX_ZONE_COUNT,
    MIN_LIMIT_KW,
)
from evgrid.scenario.errors import ScenarioError
from evgrid.scenario.loader import parse_scenario
from evgrid.scenario.recorded import (
    RECORDED_ARRIVAL_SOC,
    RecordedDataError,
    RecordedSessions,
    session_columns,
    to_datetime,
    to_datetime64,
)
from evgrid.scenario.schema import HourlyProfile, Scenario

FACILITY = "site"
GRID_ZONE = "site"
ZONE = "general"

_DAY = np.timedelta64(86400, "s")


def parse_utc(text: str) -> datetime:
    """A command-line time: ISO 8601 date or date-time; without an offset it is read as UTC.

    Unlike a data file (where a naive time is refused), a person typing ``--start 2019-05-01``
    means midnight UTC, and the help says so.
    """
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or date-time: {text!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def replay_start(recorded: RecordedSessions, start: datetime | None = None) -> datetime:
    """The horizon start: ``start`` (aware) or midnight UTC of the first recorded arrival."""
    if start is None:
        return recorded.first_midnight_utc()
    to_datetime64(start)  # refuses a naive datetime
    return start.astimezone(UTC)


def replay_days(recorded: RecordedSessions, start: datetime) -> float:
    """Whole days from ``start`` that cover the last recorded departure (at least 1).

    More than a year (the schema's longest horizon) raises :class:`ScenarioError` asking for
    ``--start``/``--days``: a file spanning years is replayed a window at a time.
    """
    if not len(recorded):
        return 1.0
    span = (recorded.departure.max() - to_datetime64(start)) / _DAY
    days = float(max(1, math.ceil(span - 1e-9)))
    if days > MAX_HORIZON_DAYS:
        last = to_datetime(recorded.departure.max()).isoformat()
        raise ScenarioError(
            f"the sessions run {days:,.0f} days from {start.isoformat()} to the last departure "
            f"{last}, more than {MAX_HORIZON_DAYS}: pick a window with --start and --days"
        )
    return days


def _number(
    option: str, value: object, *, positive: bool, most: float, least: float | None = None
) -> None:
    """A real number, finite, > 0 (``positive``) or >= 1, within [``least``, ``most``]; else
    one line."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ScenarioError(f"{option}: {value!r} is not a number")
    x = float(value)  # compared as a float, reported as given
    if not math.isfinite(x):
        raise ScenarioError(f"{option}: {value!r} is not a finite number")
    if positive and not x > 0:
        raise ScenarioError(f"{option}: {value!r} is not > 0")
    if not positive and not x >= 1:
        raise ScenarioError(f"{option}: {value!r} is not >= 1")
    if x > most:
        raise ScenarioError(f"{option}: {value!r} is not <= {most:.0f}")
    if least is not None and x < least:
        raise ScenarioError(f"{option}: {value!r} is not >= {least:g}")


def check_replay_options(
    *,
    chargers: int,
    charger_kw: float,
    site_limit_kw: float,
    dt_min: int,
    days: float | None,
) -> None:
    """Range-check the replay options, naming each by its ``evgrid replay`` flag.

    Bounds: 1 <= chargers <= 100,000 (one zone's most); 0 < charger_kw <= 4,000;
    0.001 <= site_limit_kw <= 10^7; dt_min divides an hour; 0 < days <= 366. A
    :class:`ScenarioError` (a ValueError) with one line says which and why.
    """
    if isinstance(chargers, bool) or not isinstance(chargers, numbers.Integral):
        raise ScenarioError(f"--chargers: {chargers!r} is not a whole number")
    _number("--chargers", chargers, positive=False, most=MAX_ZONE_COUNT)
    _number("--charger-kw", charger_kw, positive=True, most=MAX_CHARGER_KW)
    _number(
        "--site-limit-kw", site_limit_kw, positive=True, most=MAX_LIMIT_KW, least=MIN_LIMIT_KW
    )
    if isinstance(dt_min, bool) or not isinstance(dt_min, numbers.Integral) or not 1 <= dt_min <= 60:
        raise ScenarioError(f"--dt-min: {dt_min!r} is not a whole number of minutes in [1, 60]")
    if 60 % dt_min:
        raise ScenarioError(
            f"--dt-min: {dt_min} does not divide an hour: use 1, 2, 3, 4, 5, 6, 10, 12, 15, "
            "20, 30 or 60"
        )
    if days is not None:
        _number("--days", days, positive=True, most=MAX_HORIZON_DAYS)
        if round(days * 24 * 60 / dt_min) < 1:
            raise ScenarioError(f"--days: {days:g} is shorter than one step of {dt_min} min")


def single_site_scenario(
    recorded: RecordedSessions,
    *,
    chargers: int,
    charger_kw: float,
    site_limit_kw: float,
    dt_min: int = 5,
    start: datetime | None = None,
    days: float | None = None,
    price_per_kwh: HourlyProfile = 0.25,
) -> tuple[Scenario, Sessions]:
    """A one-site scenario for ``recorded`` and its sessions, ready for ``run_experiment``.

    Horizon: from ``start`` (default :func:`replay_start`) for ``days`` (default
    :func:`replay_days`). Sessions arriving outside it are dropped (``len(recorded) -
    len(sessions)`` says how many; :func:`horizon_notes` words it) and stays running past its
    end are cut there, as :func:`evgrid.envs.sessions.make_sessions` does for drawn ones.
    Each EV's rate limit is the charger rating, so the charger is the only rate limit.
    Invalid sizes raise :class:`evgrid.scenario.ScenarioError` naming the option
    (:func:`check_replay_options`), as does a horizon that would not fit in memory.
    """
    check_replay_options(
        chargers=chargers, charger_kw=charger_kw, site_limit_kw=site_limit_kw, dt_min=dt_min,
        days=days,
    )
    t0 = replay_start(recorded, start)
    horizon_days = replay_days(recorded, t0) if days is None else float(days)
    stem = Path(recorded.source).stem
    scenario = parse_scenario(
        {
            "name": f"replay-{stem}",
            "description": f"{len(recorded)} recorded sessions from {recorded.source}, "
            f"replayed from {t0.isoformat()} at one site",
            "horizon_days": horizon_days,
            "dt_min": dt_min,
            "city_limit_kw": site_limit_kw,
            "arrivals_per_day": 0,
            "grid_zones": [{"id": GRID_ZONE, "limit_kw": site_limit_kw}],
            "facilities": [
                {
                    "id": FACILITY,
                    "x_km": 0.0,
                    "y_km": 0.0,
                    "grid_zone": GRID_ZONE,
                    "zones": {
                        ZONE: {
                            "spaces": chargers,
                            "chargers": {"count": chargers, "max_kw": charger_kw},
                            "walk_km": 0.0,
                        }
                    },
                }
            ],
            # Required by the schema, never drawn from (arrivals_per_day = 0).
            "cohorts": [
                {
                    "name": "recorded",
                    "share": 1.0,
                    "dwell_h": {"mean": 1.0, "low": 1.0, "high": 1.0},
                    "arrival_soc": {
                        "mean": RECORDED_ARRIVAL_SOC,
                        "low": RECORDED_ARRIVAL_SOC,
                        "high": RECORDED_ARRIVAL_SOC,
                    },
                    "battery_kwh": 50.0,
                    "max_charge_kw": charger_kw,
                    "departure_floor": 1.0,
                }
            ],
            "prices": {"price_per_kwh": price_per_kwh},
        },
        source="replay",
    )
    n = len(recorded)
    table = make_sessions(
        dt_h=scenario.dt_h,
        steps=scenario.steps,
        facility=np.zeros(n, dtype=np.int64),
        origin_xy_km=np.zeros((n, 2)),
        max_kw=np.full(n, float(charger_kw)),
        **session_columns(recorded, t0),
    )
    # Files need not be in time order; the simulator needs sessions sorted by arrival.
    return scenario, Sessions.concat([table])


def horizon_notes(recorded: RecordedSessions, scenario: Scenario, start: datetime) -> list[str]:
    """What the horizon did to the recorded sessions, worded for a user (empty: nothing)."""
    t0 = to_datetime64(start)
    cols = session_columns(recorded, start)
    arr_step = np.floor(cols["arrival_h"] / scenario.dt_h + 1e-9)
    inside = (arr_step >= 0) & (arr_step < scenario.steps)
    end = t0 + np.timedelta64(round(scenario.steps * scenario.dt_h * 3600), "s")
    notes = []
    if (~inside).any():
        notes.append(
            f"{int((~inside).sum())} of {len(recorded)} session(s) arrive outside the horizon "
            f"{start.isoformat()} + {scenario.horizon_days:g} day(s) and were dropped"
        )
    cut = int((inside & (recorded.departure > end)).sum())
    if cut:
        notes.append(f"{cut} session(s) depart after the horizon end and are cut there")
    return notes


def check_nonempty(recorded: RecordedSessions, sessions: Sessions) -> None:
    """Refuse a replay with nothing to replay: a run over no sessions only measures nothing."""
    if not len(recorded):
        raise RecordedDataError(f"no usable sessions: {recorded.skip_report()}")
    if not len(sessions):
        raise RecordedDataError(
            f"none of the {len(recorded)} usable sessions of {recorded.source} falls in the horizon"
        )
