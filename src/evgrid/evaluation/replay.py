"""Replay recorded sessions at one site: a one-facility scenario plus the sessions table.

Recorded data (ElaadNL-style exports, a depot's charger logs) says when each EV came, when it
left and how much energy it took, but not where the chargers sit in a city or how the feeder is
shared. The question it answers best is the single-site one: with N chargers of K kW behind a
connection of L kW, how do the policies compare with the offline optimum on *these* sessions?
So the scenario is the smallest one the simulator accepts: one facility, one ``general`` zone,
one grid zone ``site`` whose limit is also the city limit, and a placeholder cohort with
``arrivals_per_day = 0`` so that nothing random is added to the recorded sessions.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from evgrid.envs.sessions import Sessions, make_sessions
from evgrid.scenario.loader import parse_scenario
from evgrid.scenario.recorded import (
    RECORDED_ARRIVAL_SOC,
    RecordedDataError,
    RecordedSessions,
    session_columns,
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
    """Whole days from ``start`` that cover the last recorded departure (at least 1)."""
    if not len(recorded):
        return 1.0
    span = (recorded.departure.max() - to_datetime64(start)) / _DAY
    return float(max(1, math.ceil(span - 1e-9)))


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
    Invalid sizes raise :class:`evgrid.scenario.ScenarioError` naming the field.
    """
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
        **session_columns(recorded, t0),  # type: ignore[arg-type]
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
