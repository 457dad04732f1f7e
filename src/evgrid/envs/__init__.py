"""The vectorised city simulator, its controller interface, safety projection and KPIs."""

from evgrid.envs.interface import Controller, Observation
from evgrid.envs.sessions import Sessions
from evgrid.envs.simulator import SimResult, Simulator
from evgrid.envs.world import World, build_world

__all__ = [
    "Controller",
    "Observation",
    "Sessions",
    "SimResult",
    "Simulator",
    "World",
    "build_world",
]
