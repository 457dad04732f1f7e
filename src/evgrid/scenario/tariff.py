"""Electricity tariffs as utilities publish them: time-of-use energy prices and demand charges.

The file format is acnportal's tariff schedule JSON (``acnportal.signals.tariffs``), so the
SCE and PG&E files published with it load unchanged::

    {"name": "...", "schedule": [
        {"id": "summer weekday", "effective_start": "06-01", "effective_end": "09-30",
         "dow_mask": "WEEKDAYS", "times": [0, 8, 12, 18, 23],
         "tariffs": [0.056, 0.0925, 0.267, 0.0925, 0.056], "demand_charge": 15.51}, ...]}

``times`` are the hours (fractional allowed, the first one 0) at which each price in
``tariffs`` [$/kWh] starts; ``demand_charge`` [$/kW] is billed on the peak of each billing
window. A date takes the first entry, in file order, whose season (``effective_start`` to
``effective_end``, inclusive, wrapping over the new year when start > end) and day of week
(``ALL``, ``WEEKDAYS``, ``WEEKENDS``) cover it, as acnportal does; a date no entry covers is an
error, not a free hour.

Two keys are evgrid's own: ``demand_window`` (``month``, the default, as utilities bill;
``day``; or ``horizon``, the simulated horizon as one window) and ``export_price_per_kwh``
(what discharged energy earns, for V2G). What a window's peak costs, and why a month partly
simulated is not prorated, is said in :func:`tariff_arrays`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evgrid.scenario.bounds import MAX_PRICE_PER_KWH

#: Bundled tariff files, loadable by name (``--tariff sce_tou_ev_4``).
BUNDLED_TARIFFS = Path(__file__).parent / "bundled" / "tariffs"

_MONTH_DAY = re.compile(r"^(\d{1,2})-(\d{1,2})$")
#: A leap year, so "02-29" is a valid season edge.
_LEAP = 2000


class TariffError(ValueError):
    """A tariff that cannot be used (the message says which entry and why, on one line)."""


def _month_day(text: str) -> tuple[int, int]:
    m = _MONTH_DAY.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a month-day like '06-01'")
    month, day = int(m.group(1)), int(m.group(2))
    try:
        date(_LEAP, month, day)
    except ValueError:
        raise ValueError(f"{text!r} is not a day of the year") from None
    return month, day


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


_Price = Annotated[float, Field(ge=-MAX_PRICE_PER_KWH, le=MAX_PRICE_PER_KWH)]


class TariffPeriod(_Model):
    """One entry of a tariff schedule: the prices of one season and kind of day."""

    id: str = ""
    effective_start: str = Field("01-01", description="first day, 'MM-DD' (inclusive)")
    effective_end: str = Field("12-31", description="last day, 'MM-DD' (inclusive)")
    dow_mask: Literal["ALL", "WEEKDAYS", "WEEKENDS"] = "ALL"
    times: list[Annotated[float, Field(ge=0, lt=24)]] = Field(
        min_length=1, description="hour each price starts at; the first is 0, increasing")
    tariffs: list[_Price] = Field(min_length=1, description="energy price [$/kWh] per time")
    demand_charge: Annotated[float, Field(ge=0, le=MAX_PRICE_PER_KWH)] = Field(
        0.0, description="[$/kW] on the billing window's peak")

    @field_validator("effective_start", "effective_end")
    @classmethod
    def _date(cls, v: str) -> str:
        _month_day(v)
        return v

    @model_validator(mode="after")
    def _times(self) -> TariffPeriod:
        if self.times[0] != 0:
            raise ValueError(f"times must start at 0 (hour of midnight), got {self.times[0]:g}")
        if any(b <= a for a, b in zip(self.times, self.times[1:], strict=False)):
            raise ValueError(f"times must increase, got {self.times}")
        if len(self.tariffs) != len(self.times):
            raise ValueError(f"{len(self.times)} times but {len(self.tariffs)} tariffs")
        return self

    def covers(self, day: date) -> bool:
        """Whether this entry's season and day-of-week mask cover ``day``."""
        weekend = day.weekday() >= 5
        if (self.dow_mask == "WEEKDAYS" and weekend) or (self.dow_mask == "WEEKENDS"
                                                         and not weekend):
            return False
        here = (day.month, day.day)
        start, end = _month_day(self.effective_start), _month_day(self.effective_end)
        return start <= here <= end if start <= end else (here >= start or here <= end)

    def price_at(self, hours: np.ndarray) -> np.ndarray:
        """Energy price [$/kWh] at each hour of the day (0 ≤ hours < 24)."""
        idx = np.searchsorted(np.asarray(self.times), hours, side="right") - 1
        return np.asarray(self.tariffs, dtype=float)[idx]


class Tariff(_Model):
    """A whole tariff: its schedule, how its demand charge is billed, its export price."""

    name: str = "tariff"
    schedule: list[TariffPeriod] = Field(min_length=1)
    demand_window: Literal["month", "day", "horizon"] = Field(
        "month", description="the window whose peak the demand charge bills")
    export_price_per_kwh: Annotated[float, Field(ge=0, le=MAX_PRICE_PER_KWH)] = Field(
        0.0, description="what a kWh discharged to the grid earns [$/kWh] (V2G)")
    # Keys acnportal's published files carry, kept as they are.
    effective: str | None = None
    link: str | None = None

    def period_on(self, day: date) -> TariffPeriod:
        """The first schedule entry covering ``day`` (acnportal's rule)."""
        for p in self.schedule:
            if p.covers(day):
                return p
        kind = "weekend" if day.weekday() >= 5 else "weekday"
        raise TariffError(f"tariff {self.name!r}: no schedule entry covers {day.isoformat()} "
                          f"(a {kind}); add one whose season and dow_mask include it")


@dataclass(frozen=True)
class TariffArrays:
    """A tariff sampled at every step of a horizon."""

    price_per_kwh: np.ndarray  # [T] energy price in force at the step's start
    demand_rate_per_kw: np.ndarray  # [T] the demand charge of the step's billing window
    billing_window: np.ndarray  # [T] int: 0, 1, ... one id per billing window
    export_price_per_kwh: float


def tariff_arrays(tariff: Tariff, start: datetime, steps: int, dt_h: float) -> TariffArrays:
    """Sample ``tariff`` at each step from ``start`` (local time of the tariff).

    A window's demand charge is the one in force at its first step in the horizon, billed on
    the window's peak. A month simulated only in part is billed in full, not prorated: the
    month's peak is its worst day's, so a peak set on any simulated day costs the whole rate,
    and a controller told 1/30 of it would spend the month's peak on one cheap hour.
    """
    price = np.empty(steps)
    rate_step = np.empty(steps)
    window = np.empty(steps, dtype=np.int64)
    stamps = [start + timedelta(hours=k * dt_h) for k in range(steps)]
    keys: dict[object, int] = {}
    first_rate: dict[int, float] = {}
    for k, ts in enumerate(stamps):
        period = tariff.period_on(ts.date())
        hour = ts.hour + ts.minute / 60 + ts.second / 3600
        price[k] = period.price_at(np.array([hour]))[0]
        rate_step[k] = period.demand_charge
        key: object = (0 if tariff.demand_window == "horizon"
                       else ts.date() if tariff.demand_window == "day" else (ts.year, ts.month))
        w = keys.setdefault(key, len(keys))
        window[k] = w
        first_rate.setdefault(w, period.demand_charge)
    rate = np.array([first_rate[int(w)] for w in window]) if steps else rate_step
    return TariffArrays(price, rate, window, tariff.export_price_per_kwh)


def _one_line(exc: ValidationError) -> str:
    e = exc.errors()[0]
    where = ".".join(str(p) for p in e["loc"]) or "tariff"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {e['msg'].removeprefix('Value error, ')}{more}"


def parse_tariff(data: object, *, source: str = "<tariff>") -> Tariff:
    """Validate a mapping as a :class:`Tariff` (one-line :class:`TariffError` when not)."""
    if not isinstance(data, dict):
        raise TariffError(f"{source}: a tariff is a JSON object, got {type(data).__name__}")
    try:
        return Tariff.model_validate(data)
    except ValidationError as exc:
        raise TariffError(f"{source}: {_one_line(exc)}") from None


def tariff_path(name_or_path: str | Path, base_dir: Path | None = None) -> Path:
    """A bundled tariff's file by name, else the path (relative to ``base_dir`` if given)."""
    text = str(name_or_path)
    bundled = BUNDLED_TARIFFS / f"{text}.json"
    if "/" not in text and not text.endswith(".json") and bundled.is_file():
        return bundled
    path = Path(text)
    return path if path.is_absolute() or base_dir is None else base_dir / path


def bundled_tariffs() -> list[str]:
    return sorted(p.stem for p in BUNDLED_TARIFFS.glob("*.json"))


def read_tariff(name_or_path: str | Path, base_dir: Path | None = None) -> Tariff:
    """Load a tariff JSON file (acnportal's format) or a bundled tariff by name."""
    path = tariff_path(name_or_path, base_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TariffError(f"no such tariff file: {path} (bundled: "
                          f"{', '.join(bundled_tariffs())})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TariffError(f"cannot read tariff {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TariffError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    return parse_tariff(data, source=str(path))
