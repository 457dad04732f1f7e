"""Sane upper bounds on scenario and recorded-data values, in one place.

A bound here is not a modelling limit: it is the point past which a value is far more likely a
unit slip (Wh for kWh, g for kg, W for kW) or a corrupted file than a real city, and past which
the simulator's arrays or float sums stop being meaningful. Each is generous for the largest
real thing of its kind, and the field descriptions in :mod:`evgrid.scenario.schema` quote it,
so ``evgrid validate`` and the schema documentation say the same.

Pure constants (no imports), so the CSV readers can share them without pulling in pydantic.
"""

from __future__ import annotations

#: Rating of one charger or an EV's on-board charger [kW]. The Megawatt Charging System for
#: heavy trucks tops out at 3.75 MW (3,000 A x 1,250 V); a kW figure above 4,000 is a W slip.
MAX_CHARGER_KW = 4_000.0
#: Battery capacity [kWh], and the most energy one recorded session may ask for. Heavy trucks
#: and buses carry 0.5-1 MWh; 2,000 kWh leaves room for the largest, and catches Wh for kWh.
MAX_BATTERY_KWH = 2_000.0
#: Chargers, or parking spaces, in one parking zone. The largest car parks in the world hold
#: about 20,000 spaces.
MAX_ZONE_COUNT = 100_000
#: Walk from a parking zone to its exit [km].
MAX_WALK_KM = 10.0
#: A facility's coordinate, east or north of the city's origin [km]: a quarter of the Earth's
#: circumference, far past any city and anything a routing distance should add up.
MAX_COORD_KM = 10_000.0
#: A grid-zone or city power limit [kW]: 10 GW, more than the whole peak load of most countries'
#: largest cities.
MAX_LIMIT_KW = 1e7
#: Smallest positive power limit [kW]: 1 W. The safety projection lets 1e-9 kW through over
#: any limit as float slack, so a limit far below a watt is not enforced as written, and a
#: load over a subnormal one overflows the utilisation KPI to inf (the scenario fuzzer found
#: 5e-324 kW). A limit of 0 is written as a grid_limit_drop with factor 0.
MIN_LIMIT_KW = 1e-3
#: Expected EV arrivals per day in the whole city: ten million, more than all the cars of the
#: largest metropolitan areas arriving every day.
MAX_ARRIVALS_PER_DAY = 1e7
#: A relative hourly arrival weight (profiles are normalised, only ratios matter): a million to
#: one between two hours is already extreme, and keeps the 24-h sum finite.
MAX_PROFILE_WEIGHT = 1e6
#: Magnitude of any money per kWh (electricity price, facility fee, unmet-energy penalty) and
#: of the carbon price per kg: 10,000 currency units covers every currency's kWh price.
MAX_PRICE_PER_KWH = 1e4
#: Cost of an hour waiting, in currency units per hour.
MAX_VALUE_OF_TIME_PER_H = 1e6
#: Grid carbon intensity [kg CO2/kWh]: lignite plants emit about 1.2; above 10 is a g/kWh slip.
MAX_CARBON_KG_PER_KWH = 10.0
#: Longest parking stay [h]: 30 days.
MAX_DWELL_H = 720.0
#: Longest horizon [days]: one (leap) year.
MAX_HORIZON_DAYS = 366
#: Latest event start or end [h from the horizon start]: the longest horizon.
MAX_EVENT_H = MAX_HORIZON_DAYS * 24.0
#: Largest random seed: one signed 64-bit integer, so every consumer can store it.
MAX_SEED = 2**63 - 1
#: Largest scenario file read [bytes]: 64 MiB is about 200,000 facilities of YAML; a bigger
#: file is not a hand- or script-written scenario, and reading it would itself cost memory.
MAX_SCENARIO_FILE_BYTES = 64 * 2**20
