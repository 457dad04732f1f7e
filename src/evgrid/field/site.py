"""A station's own site, as its chargers report it over OCPP 2.0.1 (``evgrid.field.csms``).

The site file names the charge points a station owns (id, EVSEs, rating, the unit its
charging profiles take); the chargers tell the rest: which EVSE has an EV (``TransactionEvent``),
what the EV needs and when it leaves (``NotifyEVChargingNeeds``), what it has received and
draws (``MeterValues``: energy, power, SoC), and which connectors are out of order
(``StatusNotification`` Faulted/Unavailable, or a charger that lost its link). From that the
station builds its own :class:`~evgrid.coordinator.messages.StationState`: the state it
claims, instead of being told.

A charger that draws more than its set-point is *ignoring its profile*: it is flagged, and
its metered power, not the set-point, is what the site counts against its limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from evgrid.coordinator.messages import StationState
from evgrid.scenario.bounds import MAX_CHARGER_KW, MAX_SCENARIO_FILE_BYTES
from evgrid.scenario.loader import format_validation_error, yaml_problem

#: Above the set-point by more than this [kW, and share of it], a charger ignores its profile.
OVERDRAW_KW, OVERDRAW_SHARE = 0.5, 0.05
#: An EV that says nothing of its departure is planned for this long [h].
DEFAULT_DWELL_H = 8.0
#: The connector states in which an EVSE can charge.
USABLE = {"Available", "Occupied", "Reserved"}


class SiteError(ValueError):
    """A site file that cannot be used (one line)."""


class ChargerSpec(BaseModel):
    """One charge point of the site."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    evses: int = Field(ge=1, le=64, description="EVSEs (one EV each)")
    max_kw: float | list[float] = Field(
        description="rating of each EVSE [kW]: one for all, or one per EVSE")
    eta: float = Field(default=0.95, gt=0, le=1, description="charging efficiency")
    voltage_v: float = Field(default=230.0, gt=0, le=1500, description="for limits in A")
    phases: int = Field(default=3, ge=1, le=3, description="for limits in A")

    @model_validator(mode="after")
    def _ratings(self) -> ChargerSpec:
        kw = self.max_kw if isinstance(self.max_kw, list) else [self.max_kw]
        if isinstance(self.max_kw, list) and len(kw) != self.evses:
            raise ValueError(f"max_kw lists {len(kw)} ratings for {self.evses} EVSEs")
        if not all(0 < k <= MAX_CHARGER_KW for k in kw):
            raise ValueError(f"max_kw must be in (0, {MAX_CHARGER_KW:g}] kW")
        return self

    def rating_kw(self, evse_id: int) -> float:
        """The rating of EVSE ``evse_id`` (1-based, as OCPP numbers them)."""
        return float(self.max_kw[evse_id - 1] if isinstance(self.max_kw, list) else self.max_kw)


class SiteFile(BaseModel):
    """``evgrid station --site SITE.yaml``: what a station owns."""

    model_config = ConfigDict(extra="forbid")
    station_id: str = Field(min_length=1, max_length=64)
    chargers: list[ChargerSpec] = Field(min_length=1, max_length=1000)


def load_site(path: Path) -> SiteFile:
    """The site file at ``path``, or a one-line :class:`SiteError`."""
    try:
        if not Path(path).exists():
            raise SiteError(f"{path}: no such site file")
        # Not a FIFO or a device (it could block or never end), and text-sized.
        if not Path(path).is_file() or Path(path).stat().st_size > MAX_SCENARIO_FILE_BYTES:
            raise SiteError(f"{path}: not a site file (a regular YAML file of at most "
                            f"{MAX_SCENARIO_FILE_BYTES // 2**20} MiB)")
        site = SiteFile.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
    except OSError as e:
        raise SiteError(f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise SiteError(f"{path}: not a UTF-8 text file; a site file is YAML text") from None
    except yaml.YAMLError as e:
        raise SiteError(f"{path}: not valid YAML: {yaml_problem(e)}") from None
    except ValidationError as e:
        raise SiteError(f"{path}: {format_validation_error(e).splitlines()[0]}") from None
    ids = [c.id for c in site.chargers]
    if len(set(ids)) != len(ids):
        raise SiteError(f"{path}: a charge point id appears twice: {ids}")
    return site


@dataclass
class Evse:
    """One EVSE as its charger last reported it."""

    charger: str
    evse_id: int
    index: int  # the station's charger number (its row in set-points)
    spec: ChargerSpec
    status: str = "Unavailable"  # until the charger says otherwise
    online: bool = False  # its charge point's link is up
    transaction: str | None = None
    arrived_s: float = math.nan
    departure_s: float = math.nan
    requested_kwh: float = math.nan
    ev_max_kw: float = math.nan
    start_wh: float = math.nan
    energy_wh: float = math.nan
    power_kw: float = 0.0
    soc_pct: float = math.nan
    setpoint_kw: float | None = None
    ignoring: bool = False  # drew above its set-point

    @property
    def max_kw(self) -> float:
        return self.spec.rating_kw(self.evse_id)

    @property
    def usable(self) -> bool:
        return self.online and self.status in USABLE

    @property
    def delivered_kwh(self) -> float:
        """Into the battery: the metered energy (grid side) × the charger's efficiency."""
        if math.isnan(self.energy_wh) or math.isnan(self.start_wh):
            return 0.0
        return max(self.energy_wh - self.start_wh, 0.0) / 1000.0 * self.spec.eta

    def metered(self, power_kw: float) -> None:
        """A power reading: flag the EVSE if it draws above its set-point."""
        self.power_kw = max(power_kw, 0.0)
        sp = self.setpoint_kw
        if sp is not None and self.power_kw > sp + max(OVERDRAW_KW, OVERDRAW_SHARE * sp):
            self.ignoring = True

    @property
    def counted_kw(self) -> float:
        """What the site counts for this EVSE: its set-point, or what it draws if more."""
        return max(self.power_kw, self.setpoint_kw or 0.0)


@dataclass
class Site:
    """Every EVSE of a site (see module docstring)."""

    file: SiteFile
    evses: list[Evse] = field(default_factory=list)
    #: charge point id -> the unit its charging profiles take ("W" or "A"), once it said.
    rate_unit: dict[str, Literal["W", "A"]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.evses:
            for spec in self.file.chargers:
                for e in range(1, spec.evses + 1):
                    self.evses.append(Evse(spec.id, e, len(self.evses), spec))
        self._by = {(e.charger, e.evse_id): e for e in self.evses}
        self.specs = {c.id: c for c in self.file.chargers}

    def evse(self, charger: str, evse_id: int) -> Evse | None:
        return self._by.get((charger, evse_id))

    def set_online(self, charger: str, online: bool) -> None:
        for e in self.evses:
            if e.charger == charger:
                e.online = online

    @property
    def rated_kw(self) -> float:
        return float(sum(e.max_kw for e in self.evses))

    def counted_kw(self) -> float:
        return float(sum(e.counted_kw for e in self.evses))

    def state(self, start: int, t0_s: float, dt_h: float, price_per_kwh: np.ndarray,
              carbon_kg_per_kwh: np.ndarray) -> StationState:
        """The station's state from step ``start`` over the horizon of ``price_per_kwh``
        (steps of ``dt_h``; step 0 at ``t0_s``): one row per EV on a usable EVSE that is still
        owed energy. An EV that gave no energy need is owed what its charger could give it
        before it leaves; one that gave no departure leaves after :data:`DEFAULT_DWELL_H`."""
        step_s = dt_h * 3600.0
        rows: list[tuple[int, int, int, float, float, float]] = []
        for e in self.evses:
            if e.transaction is None or not e.usable:
                continue
            cap = e.max_kw if math.isnan(e.ev_max_kw) else min(e.max_kw, e.ev_max_kw)
            leave_s = (e.departure_s if not math.isnan(e.departure_s)
                       else e.arrived_s + DEFAULT_DWELL_H * 3600.0)
            dep = max(math.ceil((leave_s - t0_s) / step_s - 1e-9), start + 1)
            need = (e.requested_kwh if not math.isnan(e.requested_kwh)
                    else cap * e.spec.eta * (dep - start) * dt_h)
            owed = max(need - e.delivered_kwh, 0.0)
            if owed <= 1e-9:
                continue
            arr = (math.floor((e.arrived_s - t0_s) / step_s) if not math.isnan(e.arrived_s)
                   else start)
            rows.append((e.index, min(arr, start), dep, cap, e.spec.eta, owed))
        cols = list(zip(*rows, strict=True)) or [()] * 6
        dep_a = np.array(cols[2], dtype=np.int64)
        cap_a = np.array(cols[3], dtype=float)
        steps = np.arange(price_per_kwh.size)[None, :]
        return StationState(
            station_id=self.file.station_id, horizon_start=start, dt_h=dt_h,
            charger=np.array(cols[0], dtype=np.int64),
            arrival_step=np.array(cols[1], dtype=np.int64), departure_step=dep_a,
            upper_kw=np.where(steps < (dep_a - start)[:, None], cap_a[:, None], 0.0),
            eta=np.array(cols[4], dtype=float), owed_kwh=np.array(cols[5], dtype=float),
            price_per_kwh=np.asarray(price_per_kwh, dtype=float),
            carbon_kg_per_kwh=np.asarray(carbon_kg_per_kwh, dtype=float),
        )
