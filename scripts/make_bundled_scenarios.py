"""Regenerate the bundled scenario YAML files (src/evgrid/scenario/bundled/).

The YAML files are the source users read and copy; this script only documents how the
larger ones were laid out (facility positions and charger mixes drawn once, seed 7).
Run: python scripts/make_bundled_scenarios.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

OUT = Path(__file__).resolve().parents[1] / "src" / "evgrid" / "scenario" / "bundled"

# Time-of-use price [currency/kWh] and carbon [kg/kWh], hour 0..23.
PRICE = [0.12] * 7 + [0.22] * 4 + [0.18] * 6 + [0.35] * 5 + [0.15] * 2
CARBON = [0.35] * 7 + [0.30] * 3 + [0.22] * 6 + [0.30] + [0.50] * 5 + [0.40] * 2
# Share of a feeder left for EV charging: the evening residential peak leaves least.
FEEDER_SHAPE = [1.0] * 6 + [0.85] * 3 + [0.8] * 8 + [0.5] * 5 + [0.8] * 2


def cohorts(mix: tuple[float, float, float]) -> list[dict]:
    """Seed 001's private car / taxi / tourist types; departure floors 0.6 / 0.7 / 0.9."""
    commute = [0.2] * 6 + [1, 3, 4, 2] + [1] * 6 + [2, 3, 3, 2] + [1, 0.6, 0.4, 0.3]
    taxi = [1.0] * 24
    tourist = [0.1] * 8 + [1, 2, 3, 3, 3, 3, 3, 2, 2, 1] + [0.5] * 4 + [0.1] * 2
    return [
        dict(
            name="private",
            share=mix[0],
            arrival_profile=commute,
            dwell_h=dict(mean=5.0, std=2.5, low=1.0, high=11.0),
            arrival_soc=dict(mean=0.45, std=0.18, low=0.1, high=0.95),
            battery_kwh=60.0,
            max_charge_kw=11.0,
            departure_floor=0.6,
            reservation_share=0.1,
            value_of_time_per_h=15.0,
        ),
        dict(
            name="taxi",
            share=mix[1],
            arrival_profile=taxi,
            dwell_h=dict(mean=1.2, std=0.5, low=0.5, high=3.0),
            arrival_soc=dict(mean=0.3, std=0.12, low=0.1, high=0.7),
            battery_kwh=50.0,
            max_charge_kw=22.0,
            departure_floor=0.7,
            reservation_share=0.3,
            value_of_time_per_h=30.0,
        ),
        dict(
            name="tourist",
            share=mix[2],
            arrival_profile=tourist,
            dwell_h=dict(mean=2.5, std=1.0, low=0.75, high=6.0),
            arrival_soc=dict(mean=0.4, std=0.15, low=0.1, high=0.9),
            battery_kwh=75.0,
            max_charge_kw=11.0,
            departure_floor=0.9,
            reservation_share=0.0,
            value_of_time_per_h=10.0,
        ),
    ]


def soc_zones(a: int, b: int, c: int, g: int, kw: tuple[float, float, float, float]) -> dict:
    """Seed 000 §3.1 zones: A [0.85,0.95], B [0.55,0.75], C [0.30,0.50], general the rest."""

    def zone(n: int, p: float, rng: list[float] | None, walk: float) -> dict:
        z = dict(
            spaces=int(n * 1.3) + 2, chargers=dict(count=n, max_kw=p, efficiency=0.95), walk_km=walk
        )
        if rng is not None:
            z["soc_range"] = rng
        return z

    return {
        "A": zone(a, kw[0], [0.85, 0.95], 0.15),
        "B": zone(b, kw[1], [0.55, 0.75], 0.1),
        "C": zone(c, kw[2], [0.30, 0.50], 0.05),
        "general": zone(g, kw[3], None, 0.12),
    }


def city_congested() -> dict:
    """The city whose feeders leave too little room all day: even the offline optimum meets
    only about 68 % of demand. Kept to show that coordination is no worse when congested."""
    return {**city_layout(feeder_share=0.42, city_share=0.36), "name": "city-congested",
            "description": "About 20 facilities and 1,000 chargers in a 12 km x 12 km city on "
            "4 feeders whose EV headroom halves in the evening peak and is short all day "
            "(even the offline optimum meets about 68 % of demand); seed 001's public-lot mix."}


def city() -> dict:
    """The headline city: the same facilities and drivers, feeders sized so that the grid is no
    longer what leaves demand unmet (the offline optimum delivers what the drivers' stays
    allow: about 75 % of what they ask, as LLF does) but binds at the evening peak, the city
    limit is the sum of the feeders', and each feeder is billed SCE TOU-EV-4 with its demand
    charge."""
    data = city_layout(feeder_share=0.8, city_share=None)
    data.pop("prices")
    return {**data, "name": "city",
            "description": "About 20 facilities and 1,000 chargers in a 12 km x 12 km city on "
            "4 feeders that bind at the evening peak; each feeder billed SCE TOU-EV-4 "
            "(time-of-use energy and a 15.51 $/kW demand charge); seed 001's public-lot mix.",
            "prices": dict(carbon_kg_per_kwh=CARBON, carbon_price_per_kg=0.05),
            "tariff": "sce_tou_ev_4", "start_date": "2019-07-01",
            # A kWh a driver leaves without costs them a detour to a fast charger: priced
            # above a kW of the month's peak spread over a few hours' charging.
            "unmet_penalty_per_kwh": 5.0}


def city_layout(*, feeder_share: float, city_share: float | None) -> dict:
    """20 facilities (positions and charger mixes drawn once, seed 7) on 4 feeders whose EV
    headroom is ``feeder_share`` of their chargers' rating, shaped by FEEDER_SHAPE; the city
    limit is ``city_share`` of all ratings (None: the sum of the feeders')."""
    rng = np.random.default_rng(7)
    facilities, zones = [], ["north", "east", "south", "west"]
    for i in range(20):
        x, y = rng.uniform(0, 12, size=2)
        gz = zones[(1 if x > 6 else 0) * 2 + (1 if y > 6 else 0)]
        n = int(rng.integers(38, 63))
        a, b, c = max(2, n // 8), n // 4, n // 3
        facilities.append(
            dict(
                id=f"F{i:02d}",
                x_km=round(float(x), 2),
                y_km=round(float(y), 2),
                grid_zone=gz,
                fee_per_kwh=round(float(rng.uniform(0.05, 0.15)), 3),
                zones=soc_zones(a, b, c, n - a - b - c, (7.4, 11.0, 22.0, 11.0)),
            )
        )
    chargers = {z: 0.0 for z in zones}
    for f in facilities:
        chargers[f["grid_zone"]] += sum(
            z["chargers"]["count"] * z["chargers"]["max_kw"] for z in f["zones"].values()
        )
    grid = [
        dict(id=z, limit_kw=[round(feeder_share * chargers[z] * s) for s in FEEDER_SHAPE])
        for z in zones
    ]
    total = sum(chargers.values())
    city_limit = ([round(city_share * total * s) for s in FEEDER_SHAPE] if city_share is not None
                  else [sum(g["limit_kw"][h] for g in grid) for h in range(24)])
    return dict(
        name="city",
        description="",
        horizon_days=1,
        dt_min=15,
        seed=0,
        city_limit_kw=city_limit,
        arrivals_per_day=2600,
        unmet_penalty_per_kwh=2.0,
        grid_zones=grid,
        facilities=facilities,
        cohorts=cohorts((0.6, 0.3, 0.1)),
        prices=dict(price_per_kwh=PRICE, carbon_kg_per_kwh=CARBON, carbon_price_per_kg=0.05),
        events=[],
    )


def small() -> dict:
    facilities = [
        dict(
            id="depot",
            x_km=0.0,
            y_km=0.0,
            grid_zone="feeder-1",
            zones=soc_zones(2, 3, 4, 3, (7.4, 11.0, 22.0, 11.0)),
        ),
        dict(
            id="mall",
            x_km=3.0,
            y_km=1.0,
            grid_zone="feeder-1",
            zones=soc_zones(2, 3, 3, 4, (7.4, 11.0, 22.0, 11.0)),
        ),
        dict(
            id="station",
            x_km=1.5,
            y_km=4.0,
            grid_zone="feeder-2",
            zones=soc_zones(1, 2, 4, 3, (7.4, 11.0, 22.0, 11.0)),
        ),
    ]
    return dict(
        name="small",
        description="3 facilities, 2 feeders, 3 cohorts, 1 day: the test city.",
        horizon_days=1,
        dt_min=15,
        seed=0,
        city_limit_kw=[round(260 * s) for s in FEEDER_SHAPE],
        arrivals_per_day=120,
        grid_zones=[
            dict(id="feeder-1", limit_kw=[round(170 * s) for s in FEEDER_SHAPE]),
            dict(id="feeder-2", limit_kw=[round(90 * s) for s in FEEDER_SHAPE]),
        ],
        facilities=facilities,
        cohorts=cohorts((0.6, 0.3, 0.1)),
        prices=dict(price_per_kwh=PRICE, carbon_kg_per_kwh=CARBON),
        events=[
            dict(
                kind="charger_outage",
                facility="mall",
                zone="C",
                fraction=0.34,
                start_h=12,
                end_h=15,
            )
        ],
    )


def lot2102() -> dict:
    """Seed 000's 120 m x 180 m, 2,102-space commercial lot (Fig. 3): zones 1-4 = A, B, C, general."""

    def z(spaces: int, n: int, kw: float, rng: list[float] | None, walk: float) -> dict:
        d = dict(spaces=spaces, chargers=dict(count=n, max_kw=kw, efficiency=0.95), walk_km=walk)
        if rng is not None:
            d["soc_range"] = rng
        return d

    lot = dict(
        id="lot",
        x_km=0.0,
        y_km=0.0,
        grid_zone="substation",
        zones={
            "A": z(300, 60, 7.4, [0.85, 0.95], 0.03),
            "B": z(500, 150, 11.0, [0.55, 0.75], 0.05),
            "C": z(500, 200, 22.0, [0.30, 0.50], 0.04),
            "general": z(802, 90, 11.0, None, 0.09),
        },
    )
    return dict(
        name="lot2102",
        description="Seed 000's single 2,102-space commercial parking lot, 120 m x 180 m, "
        "zones A/B/C by arrival SoC plus general; one substation.",
        horizon_days=1,
        dt_min=15,
        seed=0,
        city_limit_kw=[round(2600 * s) for s in FEEDER_SHAPE],
        arrivals_per_day=1500,
        grid_zones=[dict(id="substation", limit_kw=[round(2600 * s) for s in FEEDER_SHAPE])],
        facilities=[lot],
        cohorts=cohorts((0.6, 0.3, 0.1)),
        prices=dict(price_per_kwh=PRICE, carbon_kg_per_kwh=CARBON),
        events=[dict(kind="charger_outage", facility="lot", fraction=0.3, start_h=14, end_h=17)],
    )


def one_site(name: str, description: str, *, chargers: int, kw: float, limit_kw: list[float] | float,
             cohort: dict, arrivals: float, tariff: str, days: float, penalty: float) -> dict:
    """One facility on a grid connection of its own (billed alone), one cohort, a tariff."""
    site = dict(id="site", x_km=0.0, y_km=0.0, grid_zone="connection",
                zones={"general": dict(spaces=chargers, walk_km=0.05,
                                       chargers=dict(count=chargers, max_kw=kw, efficiency=0.95))})
    return dict(
        name=name, description=description, horizon_days=days, dt_min=15, seed=0,
        city_limit_kw=limit_kw, arrivals_per_day=arrivals, unmet_penalty_per_kwh=penalty,
        grid_zones=[dict(id="connection", limit_kw=limit_kw)], facilities=[site],
        cohorts=[dict(share=1.0, reservation_share=0.0, value_of_time_per_h=15.0, **cohort)],
        prices=dict(carbon_kg_per_kwh=CARBON, carbon_price_per_kg=0.05), tariff=tariff,
        start_date="2019-07-01", events=[],
    )


def hours(*on: int, base: float = 0.0) -> list[float]:
    """A 24-h arrival profile: weight 1 in the given hours, ``base`` elsewhere."""
    return [1.0 if h in on else base for h in range(24)]


def workplace() -> dict:
    """A campus garage: commuters 7-10 h for 6-10 h, 5-25 kWh each (SoC 0.48-0.82 to 0.9 of
    60 kWh), SCE TOU-EV-4 with its 15.51 $/kW demand charge; the connection is not the limit."""
    return one_site(
        "workplace", "A campus garage, 60 chargers of 7.2 kW on its own 300 kW connection: "
        "commuters arrive 7-10 h and stay 6-10 h; SCE TOU-EV-4 prices and demand charge.",
        chargers=60, kw=7.2, limit_kw=300.0, arrivals=55.0, tariff="sce_tou_ev_4", days=1,
        penalty=5.0,
        cohort=dict(name="commuter", arrival_profile=hours(7, 8, 9),
                    dwell_h=dict(mean=8.0, std=1.2, low=6.0, high=10.0),
                    arrival_soc=dict(mean=0.65, std=0.1, low=0.48, high=0.82),
                    battery_kwh=60.0, max_charge_kw=11.0, departure_floor=0.6, target_soc=0.9))


def residential() -> dict:
    """Overnight at home: arrive 17-21 h, leave 6-8 h; the feeder has least room at the
    evening peak; evening-peak time-of-use prices and a demand charge."""
    limit = [240.0] * 17 + [110.0] * 5 + [240.0] * 2
    return one_site(
        "residential", "An apartment block's garage, 40 chargers of 7.2 kW: residents arrive "
        "17-21 h and leave 6-8 h; the feeder leaves 110 kW at the evening peak; evening-peak "
        "TOU and a demand charge. A day and a half: one night's sessions whole.",
        chargers=40, kw=7.2, limit_kw=limit * 1, arrivals=38.0, tariff="evening_peak",
        days=1.5, penalty=5.0,
        cohort=dict(name="resident", arrival_profile=hours(17, 18, 19, 20),
                    dwell_h=dict(mean=12.5, std=1.0, low=9.0, high=15.0),
                    arrival_soc=dict(mean=0.45, std=0.12, low=0.2, high=0.8),
                    battery_kwh=60.0, max_charge_kw=7.2, departure_floor=0.6, target_soc=0.9))


def depot() -> dict:
    """A delivery fleet back at 18-20 h and out again at 5-6 h (known schedules: small
    spread), 200 kWh vans needing about 120 kWh each, 50 kW chargers, a demand charge. A
    charger per van (36 for a fleet of about 22 a night): a van that found none would queue,
    which no station sees (README: what is not modelled)."""
    return one_site(
        "depot", "A delivery fleet's depot, 36 chargers of 50 kW on a 900 kW connection: vans "
        "return 18-20 h and leave 5-6 h needing about 120 kWh; SCE TOU-EV-4.",
        chargers=36, kw=50.0, limit_kw=900.0, arrivals=22.0, tariff="sce_tou_ev_4", days=1.5,
        penalty=5.0,
        cohort=dict(name="van", arrival_profile=hours(18, 19),
                    dwell_h=dict(mean=10.5, std=0.4, low=9.5, high=11.5),
                    arrival_soc=dict(mean=0.3, std=0.05, low=0.2, high=0.4),
                    battery_kwh=200.0, max_charge_kw=50.0, departure_floor=0.8,
                    target_soc=0.9))


def solar_hybrid() -> dict:
    """Seed 001's hybrid-energy grid (Table 3) on the workplace garage: PV at midday lowers the
    feeder's net load (more headroom 10-15 h), its carbon and its price (solar_midday tariff);
    the carbon weight slightly reduced."""
    data = workplace()
    pv = [0.0] * 9 + [0.4, 0.8, 1.0, 1.0, 0.8, 0.4] + [0.0] * 9
    data.update(
        name="solar-hybrid", tariff="solar_midday",
        description="Seed 001's hybrid (solar) grid on the workplace garage: PV raises the "
        "connection's headroom and cuts carbon and price at midday; evening ramp dearest.",
        city_limit_kw=[round(150 + 250 * p) for p in pv],
        grid_zones=[dict(id="connection", limit_kw=[round(150 + 250 * p) for p in pv])],
        prices=dict(carbon_kg_per_kwh=[round(0.45 - 0.35 * p, 3) for p in pv],
                    carbon_price_per_kg=0.04))
    return data


def high_carbon() -> dict:
    """Seed 001's high-carbon grid (Table 3) on the workplace garage: thermal generation, a
    carbon intensity twice the hybrid's with an evening peak, a fixed high carbon price."""
    data = workplace()
    data.update(
        name="high-carbon",
        description="Seed 001's high-carbon grid on the workplace garage: thermal generation "
        "(0.75-0.95 kg/kWh, dirtiest in the evening) and a carbon price of 0.10 per kg.",
        prices=dict(carbon_kg_per_kwh=[0.8] * 7 + [0.75] * 9 + [0.95] * 5 + [0.85] * 3,
                    carbon_price_per_kg=0.10))
    return data


HEADER = """# evgrid bundled scenario '{name}' (generated by scripts/make_bundled_scenarios.py).
# Units are in the field names: _kw [kW], _kwh [kWh], _km [km], _h [hours], dt_min [minutes].
# Profiles are 24 hourly values (hour 0 = 00:00-01:00) or one constant.
# Positive power charges the vehicle. Copy this file and edit it to make your own city.
"""


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for make in (small, city, city_congested, lot2102, workplace, residential, depot,
                 solar_hybrid, high_carbon):
        data = make()
        body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
        (OUT / f"{data['name']}.yaml").write_text(HEADER.format(name=data["name"]) + body)


if __name__ == "__main__":
    main()
