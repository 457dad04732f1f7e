"""Typed description of a city's charging world (pydantic v2).

Units are in the field names (``_kw``, ``_kwh``, ``_km``, ``_h``, ``_min``); a docstring on every
field says what it means. Sign convention (written once, here): positive power charges the
vehicle; negative power would be V2G discharge (the ``v2g`` flag records the capability).

Sources: zones A/B/C by arrival SoC and the battery model follow §3.1 of
000_f74a305f822cf870.txt (zone SoC ranges A [0.85, 0.95], B [0.55, 0.75], C [0.30, 0.50],
Eq. 14–16); user-type cohorts and their departure-energy floors (0.6 / 0.7 / 0.9 of capacity)
follow §2.1 and Table 4 of 001_e88dfec58fd7eed4.txt; the stress events follow Table 4 of 000.

Validation at the door: every float must be finite (NaN and ±inf are refused everywhere but
a :class:`Distribution`'s open ``low``/``high`` ends), and every size, rate, price and distance
has an upper bound from :mod:`evgrid.scenario.bounds`, quoted in the field's description. A
scenario this schema accepts must simulate without a traceback; what it would cost in memory
is checked separately (:mod:`evgrid.scenario.resources`).
"""

from __future__ import annotations

import math
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.types import AllowInfNan

from evgrid.scenario.bounds import (
    MAX_ARRIVALS_PER_DAY,
    MAX_BATTERY_KWH,
    MAX_CARBON_KG_PER_KWH,
    MAX_CHARGER_KW,
    MAX_COORD_KM,
    MAX_DWELL_H,
    MAX_EVENT_H,
    MAX_HORIZON_DAYS,
    MAX_LIMIT_KW,
    MAX_PRICE_PER_KWH,
    MAX_PROFILE_WEIGHT,
    MAX_SEED,
    MAX_VALUE_OF_TIME_PER_H,
    MAX_WALK_KM,
    MAX_ZONE_COUNT,
    MIN_LIMIT_KW,
)
from evgrid.scenario.tariff import Tariff

HOURS = 24

# Profile entries are parsed with NaN/inf allowed only so that _check_profile can refuse them
# with the hour's index ("[3] inf is not a finite number") instead of one error per union branch.
_ProfileFloat = Annotated[float, AllowInfNan(True)]
#: A value given either as one constant or as 24 hourly values (hour 0 = midnight-1 am).
HourlyProfile = _ProfileFloat | list[_ProfileFloat]


def as_hourly(value: HourlyProfile) -> list[float]:
    """Expand a constant to 24 hourly values; a list is returned as is (validated elsewhere)."""
    return [float(value)] * HOURS if isinstance(value, int | float) else [float(v) for v in value]


def _check_profile(
    value: HourlyProfile,
    *,
    lo: float,
    hi: float,
    strict: bool,
    what: str,
    least: float | None = None,
) -> HourlyProfile:
    """1 or 24 finite values in [lo, hi] (``(lo, hi]`` when ``strict``), and >= ``least``.

    NaN would slip through any comparison and ±inf would turn every sum over the profile into
    inf or NaN, so finiteness is checked first; ``hi`` is the field's sane bound and ``least``
    the smallest positive value that still means something (bounds.py: MIN_LIMIT_KW).
    """
    values = as_hourly(value)
    if len(values) != HOURS:
        raise ValueError(f"{what} needs 1 or {HOURS} hourly values, got {len(values)}")
    for hour, v in enumerate(values):
        where = f"[{hour}] " if isinstance(value, list) else ""
        if not math.isfinite(v):
            raise ValueError(f"{where}{v} is not a finite number")
        if v <= lo if strict else v < lo:
            op = ">" if strict else ">="
            raise ValueError(f"{where}{v} is not {op} {lo}")
        if v > hi:
            raise ValueError(f"{where}{v} is not <= {hi:.0f}")
        if least is not None and v < least:
            raise ValueError(f"{where}{v} is not >= {least:g} (a smaller limit is numerically 0)")
    return value


class _Model(BaseModel):
    # allow_inf_nan=False: a float field refuses NaN and ±inf ("is not a finite number") unless
    # it says otherwise (profiles check their own entries; a Distribution's ends may be open).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


#: A distribution's clip bound: ±inf (the default, also written ``null``) leaves that end open.
_OpenEnd = Annotated[float, AllowInfNan(True)]


class Distribution(_Model):
    """A truncated normal distribution: ``mean``/``std`` clipped to [``low``, ``high``].

    ``std = 0`` gives the constant ``mean``. ``low``/``high`` default to -inf/+inf, an open end;
    ``null`` means the same, so a scenario dumped to JSON (where inf becomes null) loads again.
    Only these two fields may be infinite; NaN is refused everywhere.
    """

    mean: float = Field(description="mean, finite (a cohort bounds it by what it describes)")
    std: Annotated[float, Field(ge=0, description="standard deviation; 0: the constant mean")] = 0.0
    low: _OpenEnd = Field(
        float("-inf"), description="lower clip bound; -.inf or null (the default): unbounded"
    )
    high: _OpenEnd = Field(
        float("inf"), description="upper clip bound; .inf or null (the default): unbounded"
    )

    @field_validator("low", "high", mode="before")
    @classmethod
    def _open_end(cls, v: object, info: ValidationInfo) -> object:
        if v is None:
            return float("-inf") if info.field_name == "low" else float("inf")
        return v

    @field_validator("low", "high")
    @classmethod
    def _not_nan(cls, v: float) -> float:
        if math.isnan(v):
            raise ValueError(f"{v} is not a number (leave the field out for an open end)")
        return v

    @model_validator(mode="after")
    def _ordered(self) -> Distribution:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is not <= high {self.high}")
        if not self.low <= self.mean <= self.high:
            raise ValueError(f"mean {self.mean} is not within [low {self.low}, high {self.high}]")
        return self


class Chargers(_Model):
    """The chargers of one parking zone (all of one kind)."""

    count: Annotated[
        int,
        Field(ge=0, le=MAX_ZONE_COUNT, description=f"number of charging points, at most "
              f"{MAX_ZONE_COUNT:,} per zone"),
    ]
    max_kw: Annotated[
        float,
        Field(gt=0, le=MAX_CHARGER_KW, description=f"rating of each charger [kW], at most "
              f"{MAX_CHARGER_KW:,.0f} (the Megawatt Charging System's 3.75 MW)"),
    ]
    efficiency: Annotated[
        float, Field(gt=0, le=1, description="grid-to-battery efficiency η (Eq. 14 of 000)")
    ] = 0.95
    v2g: bool = Field(False, description="charger can discharge the vehicle (V2G)")


class ParkingZone(_Model):
    """A parking zone of a facility: seed 000's A / B / C by arrival SoC, or ``general``."""

    spaces: Annotated[
        int,
        Field(ge=0, le=MAX_ZONE_COUNT, description=f"parking spaces in the zone, at most "
              f"{MAX_ZONE_COUNT:,}"),
    ]
    chargers: Chargers
    soc_range: tuple[float, float] | None = Field(
        None,
        description="arrival-SoC range [lo, hi] routed here (A [0.85,0.95], B [0.55,0.75], "
        "C [0.30,0.50] in 000 §3.1); None for the general zone that takes everything else",
    )
    walk_km: Annotated[
        float,
        Field(ge=0, le=MAX_WALK_KM, description=f"walk from the zone to the exit [km], at most "
              f"{MAX_WALK_KM:g}"),
    ] = 0.1

    @model_validator(mode="after")
    def _fits(self) -> ParkingZone:
        if self.chargers.count > self.spaces:
            raise ValueError(f"chargers.count {self.chargers.count} is not <= spaces {self.spaces}")
        if self.soc_range is not None:
            lo, hi = self.soc_range
            if not 0 <= lo <= hi <= 1:
                raise ValueError(f"soc_range {list(self.soc_range)} is not 0 <= lo <= hi <= 1")
        return self


_COORD = f"[km], within ±{MAX_COORD_KM:,.0f} of the city's origin"


class Facility(_Model):
    """One charging station (parking facility) in the city."""

    id: str = Field(min_length=1)
    x_km: Annotated[
        float, Field(ge=-MAX_COORD_KM, le=MAX_COORD_KM, description=f"position east {_COORD}")
    ]
    y_km: Annotated[
        float, Field(ge=-MAX_COORD_KM, le=MAX_COORD_KM, description=f"position north {_COORD}")
    ]
    grid_zone: str = Field(description="id of the grid zone (feeder / substation) it hangs on")
    zones: dict[str, ParkingZone] = Field(min_length=1, description="parking zones by name")
    fee_per_kwh: Annotated[
        float,
        Field(ge=0, le=MAX_PRICE_PER_KWH, description=f"fee charged to drivers [currency/kWh], "
              f"at most {MAX_PRICE_PER_KWH:,.0f}"),
    ] = 0.0
    sessions_csv: Path | None = Field(
        None,
        description="recorded sessions (arrival, departure, requested_energy_kwh) replayed at "
        "this facility instead of Poisson arrivals; relative to the scenario file; must exist "
        "when the scenario is loaded",
    )


class GridZone(_Model):
    """A feeder or substation: the EV charging power it can carry."""

    id: str = Field(min_length=1)
    limit_kw: HourlyProfile = Field(
        description=f"power available for EV charging [kW], 1 or 24 h; each in "
        f"[{MIN_LIMIT_KW:g}, {MAX_LIMIT_KW:,.0f}]"
    )

    @field_validator("limit_kw")
    @classmethod
    def _limit(cls, v: HourlyProfile) -> HourlyProfile:
        return _check_profile(
            v, lo=0.0, hi=MAX_LIMIT_KW, strict=True, what="limit_kw", least=MIN_LIMIT_KW
        )


class Cohort(_Model):
    """A user type (seed 001 §2.1): private / taxi / tourist, or commuter / business / emergency."""

    name: str = Field(min_length=1)
    share: Annotated[float, Field(ge=0, le=1, description="share of the city's arrivals")]
    arrival_profile: HourlyProfile = Field(
        1.0,
        description="relative arrival rate λ(t) per hour (normalised to sum 1 over 24 h); each "
        f"in [0, {MAX_PROFILE_WEIGHT:g}], not all 0",
    )
    dwell_h: Distribution = Field(
        description=f"time parked [h]; mean and std at most {MAX_DWELL_H:g} (30 days)"
    )
    arrival_soc: Distribution = Field(description="state of charge on arrival [0-1]")
    battery_kwh: Annotated[
        float,
        Field(gt=0, le=MAX_BATTERY_KWH, description=f"battery capacity [kWh], at most "
              f"{MAX_BATTERY_KWH:,.0f} (the largest truck batteries)"),
    ]
    max_charge_kw: Annotated[
        float,
        Field(gt=0, le=MAX_CHARGER_KW, description=f"on-board charger limit [kW], at most "
              f"{MAX_CHARGER_KW:,.0f}"),
    ]
    departure_floor: Annotated[
        float, Field(gt=0, le=1, description="least SoC acceptable at departure (0.6/0.7/0.9, 001)")
    ]
    target_soc: Annotated[
        float,
        Field(
            gt=0,
            le=1,
            description="SoC the driver asks for; energy requested = "
            "(target_soc - arrival SoC) x battery",
        ),
    ] = 1.0
    reservation_share: Annotated[float, Field(ge=0, le=1)] = 0.0
    value_of_time_per_h: Annotated[
        float,
        Field(ge=0, le=MAX_VALUE_OF_TIME_PER_H, description=f"cost of an hour waiting, at most "
              f"{MAX_VALUE_OF_TIME_PER_H:,.0f}"),
    ] = 0.0

    @field_validator("arrival_profile")
    @classmethod
    def _profile(cls, v: HourlyProfile) -> HourlyProfile:
        v = _check_profile(
            v, lo=0.0, hi=MAX_PROFILE_WEIGHT, strict=False, what="arrival_profile"
        )
        if sum(as_hourly(v)) <= 0:
            raise ValueError("arrival_profile sums to 0: no hour with arrivals")
        return v

    @field_validator("dwell_h")
    @classmethod
    def _dwell(cls, v: Distribution) -> Distribution:
        # Stays are cut at the horizon anyway; the bound catches minutes or seconds given as
        # hours, and keeps arrival + dwell a number the step arithmetic can hold.
        for name in ("mean", "std"):
            if getattr(v, name) > MAX_DWELL_H:
                raise ValueError(f"{name} {getattr(v, name)} is not <= {MAX_DWELL_H:g} (30 days)")
        return v

    @model_validator(mode="after")
    def _soc(self) -> Cohort:
        soc = self.arrival_soc
        lo, hi = (soc.mean, soc.mean) if soc.std == 0 else (soc.low, soc.high)
        if not (lo >= 0 and hi <= 1):
            raise ValueError(f"arrival_soc range [{lo}, {hi}] is not within [0, 1]")
        if self.target_soc < self.departure_floor:
            raise ValueError(
                f"target_soc {self.target_soc} is not >= departure_floor {self.departure_floor}"
            )
        dwell = self.dwell_h
        if (dwell.mean if dwell.std == 0 else dwell.low) <= 0:
            raise ValueError(f"dwell_h: the stay must be > 0 h (mean {dwell.mean}, low {dwell.low})")
        return self


class Prices(_Model):
    """Time-of-use electricity price and grid carbon intensity."""

    price_per_kwh: HourlyProfile = Field(
        0.25,
        description=f"electricity price [currency/kWh]; each in ±{MAX_PRICE_PER_KWH:,.0f}",
    )
    carbon_kg_per_kwh: HourlyProfile = Field(
        0.4,
        description=f"carbon intensity [kg CO2/kWh]; each in [0, {MAX_CARBON_KG_PER_KWH:g}]",
    )
    carbon_price_per_kg: Annotated[
        float,
        Field(ge=0, le=MAX_PRICE_PER_KWH, description=f"cost of carbon [/kg], at most "
              f"{MAX_PRICE_PER_KWH:,.0f}"),
    ] = 0.05
    price_csv: Path | None = Field(
        None,
        description="hourly prices (columns: timestamp, price_per_kwh; or ev2gym's "
        "Datetime (UTC), Price (EUR/MWhe)) replacing the 24-h profile; must exist when the "
        f"scenario is loaded; each price within ±{MAX_PRICE_PER_KWH:,.0f} per kWh",
    )

    @field_validator("price_per_kwh")
    @classmethod
    def _price(cls, v: HourlyProfile) -> HourlyProfile:
        return _check_profile(
            v, lo=-MAX_PRICE_PER_KWH, hi=MAX_PRICE_PER_KWH, strict=False, what="price_per_kwh"
        )

    @field_validator("carbon_kg_per_kwh")
    @classmethod
    def _carbon(cls, v: HourlyProfile) -> HourlyProfile:
        return _check_profile(
            v, lo=0.0, hi=MAX_CARBON_KG_PER_KWH, strict=False, what="carbon_kg_per_kwh"
        )


_W = Annotated[float, Field(ge=0, le=1e6)]


class Rewards(_Model):
    """What the learning agents of ``evgrid.envs.parallel`` are paid (``evgrid.envs.rewards``).

    ``objective`` (default): each station pays the energy cost, demand charge and carbon of its
    chargers and the unmet energy of the EVs that left them, each cohort the unmet energy of its
    drivers who never got a charger; summed over agents and the day this is −objective, the
    quantity the offline LP minimises. ``seed000``: Eq. 32 of 000_f74a305f822cf870.txt (cost,
    satisfaction, movements, utilisation, load balance). ``seed001``: §3.1 of
    001_e88dfec58fd7eed4.txt (cost, carbon, battery wear, satisfaction with range anxiety;
    default weights: Table 2's best combination, 40/30/20/10 %).
    """

    set: Literal["objective", "seed000", "seed001"] = "objective"
    #: cohorts: extra cost per minute a driver waits and per km driven (0: the objective only)
    wait_per_min: _W = 0.0
    travel_per_km: _W = 0.0
    #: seed000 (Eq. 32): w1 cost, w2 satisfaction (per unmet kWh), w3 movements (per km),
    #: w4 utilisation (per occupied-charger fraction), w5 load balance (per kW² of variance)
    w_cost: _W = 1.0
    w_satisfaction: _W = 2.0
    w_movements: _W = 0.05
    w_utilisation: _W = 0.1
    w_balance: _W = 0.001
    #: seed001 (§3.1, Table 2 combination 2)
    w_emission: _W = 0.3
    w_soc: _W = 0.2
    w_user: _W = 0.1
    w_cost_001: _W = 0.4
    #: seed001's range-anxiety penalty per kWh below the departure floor (the paper's −1000
    #: per violation is scaled per kWh so that a near miss costs less than a dead battery)
    anxiety_per_kwh: _W = 10.0


_EVENT_H = f"[h from the horizon start], at most {MAX_EVENT_H:,.0f}"


class ChargerOutage(_Model):
    """Chargers out of service for a while (Table 4 of 000: 30 % charger failures)."""

    kind: Literal["charger_outage"] = "charger_outage"
    facility: str
    zone: str | None = Field(None, description="parking zone; None = every zone")
    fraction: Annotated[float, Field(gt=0, le=1, description="share of chargers down")] = 0.3
    start_h: Annotated[float, Field(ge=0, le=MAX_EVENT_H, description=f"start {_EVENT_H}")]
    end_h: Annotated[float, Field(gt=0, le=MAX_EVENT_H, description=f"end {_EVENT_H}")]


class GridLimitDrop(_Model):
    """A grid zone (or the whole city) loses part of its capacity for a while."""

    kind: Literal["grid_limit_drop"] = "grid_limit_drop"
    grid_zone: str = Field(description="grid zone id, or 'city' for the city-wide limit")
    factor: Annotated[
        float,
        Field(ge=0, le=1, description="remaining share of the limit (a subnormal share, below "
              "2.2e-308, is taken as 0)"),
    ]
    start_h: Annotated[float, Field(ge=0, le=MAX_EVENT_H, description=f"start {_EVENT_H}")]
    end_h: Annotated[float, Field(gt=0, le=MAX_EVENT_H, description=f"end {_EVENT_H}")]

    @field_validator("factor")
    @classmethod
    def _flush_subnormal(cls, v: float) -> float:
        # Flush to zero: limit x a subnormal factor is a subnormal limit, which the projection
        # cannot enforce (its 1e-9 kW slack is 10^300 times larger) and over which load/limit
        # overflows the utilisation KPI to inf (found by the scenario fuzzer: factor 5e-324).
        # Refusing it instead would refuse what hypothesis's floats(0, 0.9) draws for valid
        # cities (tests/strategies.py); 0 is what such a factor means anyway.
        return 0.0 if 0 < v < sys.float_info.min else v


Event = Annotated[ChargerOutage | GridLimitDrop, Field(discriminator="kind")]


class Scenario(_Model):
    """A whole city: grid, facilities, drivers, prices, events, and the clock."""

    name: str = "scenario"
    description: str = ""
    horizon_days: Annotated[
        float,
        Field(gt=0, le=MAX_HORIZON_DAYS, description=f"simulated days, at most "
              f"{MAX_HORIZON_DAYS}"),
    ] = 1.0
    dt_min: Annotated[int, Field(gt=0, le=60, description="control period Δt [min]")] = 15
    seed: Annotated[
        int, Field(ge=0, le=MAX_SEED, description="random seed (a signed 64-bit integer >= 0)")
    ] = 0
    city_limit_kw: HourlyProfile = Field(
        description=f"city-wide EV charging limit [kW]; each in [{MIN_LIMIT_KW:g}, "
        f"{MAX_LIMIT_KW:,.0f}]"
    )
    arrivals_per_day: Annotated[
        float,
        Field(ge=0, le=MAX_ARRIVALS_PER_DAY, description=f"expected EV arrivals per day, at "
              f"most {MAX_ARRIVALS_PER_DAY:,.0f}"),
    ]
    unmet_penalty_per_kwh: Annotated[
        float,
        Field(gt=0, le=MAX_PRICE_PER_KWH, description="cost of a kWh owed but not delivered at "
              f"departure, at most {MAX_PRICE_PER_KWH:,.0f}"),
    ] = 2.0
    grid_zones: list[GridZone] = Field(min_length=1)
    facilities: list[Facility] = Field(min_length=1)
    cohorts: list[Cohort] = Field(min_length=1)
    prices: Prices = Prices()
    tariff: Tariff | None = Field(
        None,
        description="time-of-use energy prices and a demand charge (acnportal's tariff JSON; in "
        "a YAML file a bundled tariff's name or a JSON path); prices.price_per_kwh is then unused",
    )
    start_date: date = Field(
        date(2019, 7, 1),
        description="calendar day of step 0, for the tariff's seasons and weekdays (default "
        "2019-07-01, a Monday in summer); recorded sessions or prices set their own clock",
    )
    events: list[Event] = []
    rewards: Rewards = Rewards()

    @field_validator("city_limit_kw")
    @classmethod
    def _city(cls, v: HourlyProfile) -> HourlyProfile:
        return _check_profile(
            v, lo=0.0, hi=MAX_LIMIT_KW, strict=True, what="city_limit_kw", least=MIN_LIMIT_KW
        )

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        if 60 % self.dt_min:
            raise ValueError(
                f"dt_min {self.dt_min} does not divide an hour (hourly profiles must not change "
                "inside a step): use 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60"
            )
        if self.steps < 1:
            raise ValueError(
                f"horizon_days {self.horizon_days:g} is shorter than one step of {self.dt_min} min"
            )
        zones = [g.id for g in self.grid_zones]
        if len(set(zones)) != len(zones):
            raise ValueError(f"grid_zones: duplicate ids in {zones}")
        ids = [f.id for f in self.facilities]
        if len(set(ids)) != len(ids):
            raise ValueError(f"facilities: duplicate ids in {ids}")
        reserved = [i for i in ids if i.startswith("forecast/")]
        if reserved:  # the coordinator's forecast stations (evgrid.agents.forecast)
            raise ValueError(f"facilities: ids starting 'forecast/' are reserved: {reserved}")
        for i, f in enumerate(self.facilities):
            if f.grid_zone not in zones:
                raise ValueError(
                    f"facilities[{i}].grid_zone: {f.grid_zone!r} is not one of {zones}"
                )
        if not any(z.chargers.count for f in self.facilities for z in f.zones.values()):
            raise ValueError("facilities[*].zones[*].chargers.count: the city has no charger")
        # The router keeps replayed sessions at their own facility and drawn ones away from
        # replaying facilities; with no charger on the allowed side an EV would be sent to the
        # first slot of the city, wherever that is, so such a city is refused here.
        for i, f in enumerate(self.facilities):
            if f.sessions_csv is not None and not any(z.chargers.count for z in f.zones.values()):
                raise ValueError(
                    f"facilities[{i}].sessions_csv: facility {f.id!r} replays recorded sessions "
                    "but has no charger"
                )
        drawn = [f for f in self.facilities if f.sessions_csv is None]
        if (
            drawn
            and self.arrivals_per_day > 0
            and not any(z.chargers.count for f in drawn for z in f.zones.values())
        ):
            raise ValueError(
                f"facilities[*].zones[*].chargers.count: arrivals_per_day is "
                f"{self.arrivals_per_day:g} but no facility without sessions_csv has a charger"
            )
        if self.tariff is not None and self.prices.price_csv is not None:
            raise ValueError("tariff: give either a tariff or prices.price_csv, not both (the "
                             "tariff sets the energy price)")
        if self.tariff is not None and not any(f.sessions_csv for f in self.facilities):
            # Every simulated day must have its prices (recorded data sets its own clock: the
            # days are checked when the world is built).
            for day in range(math.ceil(self.horizon_days) + 1):
                self.tariff.period_on(self.start_date + timedelta(days=day))
        share = sum(c.share for c in self.cohorts)
        if abs(share - 1.0) > 1e-6:
            raise ValueError(f"cohorts[*].share: sum {share:g} is not 1")
        for i, ev in enumerate(self.events):
            if ev.end_h <= ev.start_h:
                raise ValueError(f"events[{i}].end_h: {ev.end_h} is not > start_h {ev.start_h}")
            if isinstance(ev, ChargerOutage):
                if ev.facility not in ids:
                    raise ValueError(f"events[{i}].facility: {ev.facility!r} is not one of {ids}")
                zs = list(self.facilities[ids.index(ev.facility)].zones)
                if ev.zone is not None and ev.zone not in zs:
                    raise ValueError(f"events[{i}].zone: {ev.zone!r} is not one of {zs}")
            elif ev.grid_zone not in [*zones, "city"]:
                raise ValueError(
                    f"events[{i}].grid_zone: {ev.grid_zone!r} is not one of {[*zones, 'city']}"
                )
        return self

    @property
    def steps(self) -> int:
        """Number of control periods in the horizon."""
        return round(self.horizon_days * 24 * 60 / self.dt_min)

    @property
    def dt_h(self) -> float:
        return self.dt_min / 60.0
