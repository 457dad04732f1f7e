"""Small worlds several test modules start from."""

from __future__ import annotations

from evgrid.agents.baselines import LeastLaxityFirst
from evgrid.envs import Observation, Simulator
from evgrid.scenario import load_scenario


def busy_period(name: str = "small", connected: int = 5) -> tuple[Simulator, Observation]:
    """Step the bundled scenario with LLF until ``connected`` EVs are plugged in."""
    sim = Simulator(load_scenario(name))
    llf = LeastLaxityFirst()
    obs = sim.reset()
    while obs.connected.sum() < connected:
        obs, _ = sim.step(llf.schedule(obs))
    return sim, obs
