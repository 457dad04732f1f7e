"""Scenario schema, YAML loading and bundled scenarios.

Loading checks the file; whether a *run* of it fits this machine is a separate question
(``check_memory``), asked by the commands that run it (``evgrid validate``, ``run``,
``coordinator``, ``replay``), not by an edge node that needs one facility of a large city.
"""

from evgrid.scenario.loader import ScenarioError, bundled_names, load_scenario, parse_scenario
from evgrid.scenario.resources import check_memory
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
    "check_memory",
    "load_scenario",
    "parse_scenario",
]
