"""Scenario schema, YAML loading and bundled scenarios."""

from evgrid.scenario.loader import ScenarioError, bundled_names, load_scenario, parse_scenario
from evgrid.scenario.schema import (
    ChargerOutage,
    Chargers,
    Cohort,
    Distribution,
    Facility,
    GridLimitDrop,
    GridZone,
    ParkingZone,
    Prices,
    Scenario,
)

__all__ = [
    "ChargerOutage",
    "Chargers",
    "Cohort",
    "Distribution",
    "Facility",
    "GridLimitDrop",
    "GridZone",
    "ParkingZone",
    "Prices",
    "Scenario",
    "ScenarioError",
    "bundled_names",
    "load_scenario",
    "parse_scenario",
]
