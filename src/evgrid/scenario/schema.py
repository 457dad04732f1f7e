"""Typed description of a city's charging world (pydantic v2).

Units are in the field names (``_kw``, ``_kwh``, ``_km``, ``_h``, ``_min``); a docstring on every
field says what it means. Sign convention (written once, here): positive power charges the
vehicle; negative power would be V2G discharge (the ``v2g`` flag records the capability).

Sources: zones A/B/C by arrival SoC and the battery model follow §3.1 of
000_f74a305f822cf870.txt (zone SoC ranges A [0.85, 0.95], B [0.55, 0.75], C [0.30, 0.50],
Eq. 14–16); user-type cohorts and their departure-energy floors (0.6 / 0.7 / 0.9 of capacity)
follow §2.1 and Table 4 of 001_e88dfec58fd7eed4.txt; the stress events follow Table 4 of 000.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

HOURS = 24

#: A value given either as one constant or as 24 hourly values (hour 0 = midnight-1 am).
HourlyProfile = float | list[float]


def as_hourly(value: HourlyProfile) -> list[float]:
    """Expand a constant to 24 hourly values; a list is returned as is (validated elsewhere)."""
    return [float(value)] * HOURS if isinstance(value, int | float) else [float(v) for v in value]


def _check_profile(value: HourlyProfile, *, lo: float, strict: bool, what: str) -> HourlyProfile:
    values = as_hourly(value)
    if len(values) != HOURS:
        raise ValueError(f"{what} needs 1 or {HOURS} hourly values, got {len(values)}")
    for hour, v in enumerate(values):
        if v != v or (v <= lo if strict else v < lo):
            op = ">" if strict else ">="
            where = f"[{hour}] " if isinstance(value, list) else ""
            raise ValueError(f"{where}{v} is not {op} {lo}")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Distribution(_Model):
    """A truncated normal distribution: ``mean``/``std`` clipped to [``low``, ``high``].

    ``std = 0`` gives the constant ``mean``.
    """

    mean: float
    std: Annotated[float, Field(ge=0)] = 0.0
    low: float = float("-inf")
    high: float = float("inf")

    @model_validator(mode="after")
    def _ordered(self) -> Distribution:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is not <= high {self.high}")
        if not self.low <= self.mean <= self.high:
            raise ValueError(f"mean {self.mean} is not within [low {self.low}, high {self.high}]")
        return self


class Chargers(_Model):
    """The chargers of one parking zone (all of one kind)."""

    count: Annotated[int, Field(ge=0, description="number of charging points")]
    max_kw: Annotated[float, Field(gt=0, description="rating of each charger [kW]")]
    efficiency: Annotated[
        float, Field(gt=0, le=1, description="grid-to-battery efficiency η (Eq. 14 of 000)")
    ] = 0.95
    v2g: bool = Field(False, description="charger can discharge the vehicle (V2G)")


class ParkingZone(_Model):
    """A parking zone of a facility: seed 000's A / B / C by arrival SoC, or ``general``."""

    spaces: Annotated[int, Field(ge=0, description="parking spaces in the zone")]
    chargers: Chargers
    soc_range: tuple[float, float] | None = Field(
        None,
        description="arrival-SoC range [lo, hi] routed here (A [0.85,0.95], B [0.55,0.75], "
        "C [0.30,0.50] in 000 §3.1); None for the general zone that takes everything else",
    )
    walk_km: Annotated[float, Field(ge=0, description="walk from the zone to the exit [km]")] = 0.1

    @model_validator(mode="after")
    def _fits(self) -> ParkingZone:
        if self.chargers.count > self.spaces:
            raise ValueError(f"chargers.count {self.chargers.count} is not <= spaces {self.spaces}")
        if self.soc_range is not None:
            lo, hi = self.soc_range
            if not 0 <= lo <= hi <= 1:
                raise ValueError(f"soc_range {list(self.soc_range)} is not 0 <= lo <= hi <= 1")
        return self


class Facility(_Model):
    """One charging station (parking facility) in the city."""

    id: str = Field(min_length=1)
    x_km: float = Field(description="position east [km]")
    y_km: float = Field(description="position north [km]")
    grid_zone: str = Field(description="id of the grid zone (feeder / substation) it hangs on")
    zones: dict[str, ParkingZone] = Field(min_length=1, description="parking zones by name")
    fee_per_kwh: Annotated[float, Field(ge=0)] = 0.0
    sessions_csv: Path | None = Field(
        None,
        description="recorded sessions (arrival, departure, requested_energy_kwh) replayed at "
        "this facility instead of Poisson arrivals; relative to the scenario file",
    )


class GridZone(_Model):
    """A feeder or substation: the EV charging power it can carry."""

    id: str = Field(min_length=1)
    limit_kw: HourlyProfile = Field(description="power available for EV charging [kW], 1 or 24 h")

    @field_validator("limit_kw")
    @classmethod
    def _limit(cls, v: HourlyProfile) -> HourlyProfile:
        return _check_profile(v, lo=0.0, strict=True, what="limit_kw")


class Cohort(_Model):
    """A user type (seed 001 §2.1): private / taxi / tourist, or commuter / business / emergency."""

    name: str = Field(min_length=1)
    share: Annotated[float, Field(ge=0, le=1, description="share of the city's arrivals")]
    arrival_profile: HourlyProfile = Field(
        1.0, description="relative arrival rate λ(t) per hour (normalised to sum 1 over 24 h)"
    )
    dwell_h: Distribution = Field(description="time parked [h]")
    arrival_soc: Distribution = Field(description="state of charge on arrival [0-1]")
    battery_kwh: Annotated[float, Field(gt=0, description="battery capacity [kWh]")]
    max_charge_kw: Annotated[float, Field(gt=0, description="on-board charger limit [kW]")]
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
    value_of_time_per_h: Annotated[float, Field(ge=0, description="cost of an hour waiting")] = 0.0

    @field_validator("arrival_profile")
    @classmethod
    def _profile(cls, v: HourlyProfile) -> HourlyProfile:
        v = _check_profile(v, lo=0.0, strict=False, what="arrival_profile")
        if sum(as_hourly(v)) <= 0:
            raise ValueError("arrival_profile sums to 0: no hour with arrivals")
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

    price_per_kwh: HourlyProfile = Field(0.25, description="electricity price [currency/kWh]")
    carbon_kg_per_kwh: HourlyProfile = Field(0.4, description="carbon intensity [kg CO2/kWh]")
    carbon_price_per_kg: Annotated[float, Field(ge=0, description="cost of carbon [/kg]")] = 0.05
    price_csv: Path | None = Field(
        None,
        description="hourly prices (columns: timestamp, price_per_kwh; or ev2gym's "
        "Datetime (UTC), Price (EUR/MWhe)) replacing the 24-h profile",
    )

    @field_validator("price_per_kwh")
    @classmethod
    def _price(cls, v: HourlyProfile) -> HourlyProfile:
        return _check_profile(v, lo=float("-inf"), strict=False, what="price_per_kwh")

    @field_validator("carbon_kg_per_kwh")
    @classmethod
    def _carbon(cls, v: HourlyProfile) -> HourlyProfile:
        return _check_profile(v, lo=0.0, strict=False, what="carbon_kg_per_kwh")


class ChargerOutage(_Model):
    """Chargers out of service for a while (Table 4 of 000: 30 % charger failures)."""

    kind: Literal["charger_outage"] = "charger_outage"
    facility: str
    zone: str | None = Field(None, description="parking zone; None = every zone")
    fraction: Annotated[float, Field(gt=0, le=1, description="share of chargers down")] = 0.3
    start_h: Annotated[float, Field(ge=0)]
    end_h: Annotated[float, Field(gt=0)]


class GridLimitDrop(_Model):
    """A grid zone (or the whole city) loses part of its capacity for a while."""

    kind: Literal["grid_limit_drop"] = "grid_limit_drop"
    grid_zone: str = Field(description="grid zone id, or 'city' for the city-wide limit")
    factor: Annotated[float, Field(ge=0, le=1, description="remaining share of the limit")]
    start_h: Annotated[float, Field(ge=0)]
    end_h: Annotated[float, Field(gt=0)]


Event = Annotated[ChargerOutage | GridLimitDrop, Field(discriminator="kind")]


class Scenario(_Model):
    """A whole city: grid, facilities, drivers, prices, events, and the clock."""

    name: str = "scenario"
    description: str = ""
    horizon_days: Annotated[float, Field(gt=0, le=366)] = 1.0
    dt_min: Annotated[int, Field(gt=0, le=60, description="control period Δt [min]")] = 15
    seed: int = 0
    city_limit_kw: HourlyProfile = Field(description="city-wide EV charging limit [kW]")
    arrivals_per_day: Annotated[float, Field(ge=0, description="expected EV arrivals per day")]
    unmet_penalty_per_kwh: Annotated[
        float, Field(gt=0, description="cost of a kWh owed but not delivered at departure")
    ] = 2.0
    grid_zones: list[GridZone] = Field(min_length=1)
    facilities: list[Facility] = Field(min_length=1)
    cohorts: list[Cohort] = Field(min_length=1)
    prices: Prices = Prices()
    events: list[Event] = []

    @field_validator("city_limit_kw")
    @classmethod
    def _city(cls, v: HourlyProfile) -> HourlyProfile:
        return _check_profile(v, lo=0.0, strict=True, what="city_limit_kw")

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
        for i, f in enumerate(self.facilities):
            if f.grid_zone not in zones:
                raise ValueError(
                    f"facilities[{i}].grid_zone: {f.grid_zone!r} is not one of {zones}"
                )
        if not any(z.chargers.count for f in self.facilities for z in f.zones.values()):
            raise ValueError("facilities[*].zones[*].chargers.count: the city has no charger")
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
