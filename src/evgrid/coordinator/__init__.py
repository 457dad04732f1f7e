"""The ADMM coordinator: pure updates, residuals, stopping; messages as dataclasses.

Nothing here imports ray or grpc (``evgrid.transport`` wraps it).
"""

from evgrid.coordinator.admm import AdmmConfig, AdmmStats, PowerCoordinator, zone_city_prices
from evgrid.coordinator.driver import MixedStations, StationTransport, solve_period

__all__ = [
    "AdmmConfig",
    "AdmmStats",
    "MixedStations",
    "PowerCoordinator",
    "StationTransport",
    "solve_period",
    "zone_city_prices",
]
