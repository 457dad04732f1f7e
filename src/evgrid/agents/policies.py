"""The policy registry: names a user can pass to ``evgrid run --policy``."""

from __future__ import annotations

from collections.abc import Callable

from evgrid.agents.baselines import (
    EarliestDeadlineFirst,
    FirstComeFirstServed,
    LeastLaxityFirst,
    RoundRobin,
    Uncontrolled,
)
from evgrid.envs.interface import Controller
from evgrid.envs.world import World

BASELINES: dict[str, Callable[[], Controller]] = {
    "uncontrolled": Uncontrolled,
    "fcfs": FirstComeFirstServed,
    "round_robin": RoundRobin,
    "edf": EarliestDeadlineFirst,
    "llf": LeastLaxityFirst,
}


def _coordinated(world: World) -> Controller:
    from evgrid.agents.coordinated import CoordinatedPolicy

    return CoordinatedPolicy(world)


def _mpc(world: World) -> Controller:
    from evgrid.agents.mpc import MpcPolicy

    return MpcPolicy(world)


#: Policies that need the compiled world (their agents are built per facility).
WORLD_POLICIES: dict[str, Callable[[World], Controller]] = {"coordinated": _coordinated,
                                                            "mpc": _mpc}


#: ``learned:DIR``: the station policy exported by ``evgrid train --out DIR``.
LEARNED = "learned:"


def policy_names() -> list[str]:
    return [*BASELINES, *WORLD_POLICIES, LEARNED + "DIR"]


def check_policy_names(names: list[str]) -> None:
    """Raise ValueError listing the valid names if any of ``names`` is unknown or repeated, or
    names a learned policy folder without an exported bundle."""
    if len(set(names)) != len(names):
        raise ValueError(f"policy given twice: {names}")
    if sum(n.startswith(LEARNED) for n in names) > 1:
        raise ValueError("give at most one learned:DIR policy per run")
    for name in names:
        if name.startswith(LEARNED):
            from pathlib import Path

            from evgrid.agents.bundle import check_bundle

            check_bundle(Path(name[len(LEARNED):]), "station")
        elif name not in BASELINES and name not in WORLD_POLICIES:
            raise ValueError(f"unknown policy {name!r}: choose from {policy_names()}")


def make_policy(name: str, world: World | None = None) -> Controller:
    """Build a policy by name; an unknown name lists the valid ones."""
    check_policy_names([name])
    if name in BASELINES:
        return BASELINES[name]()
    if world is None:
        raise ValueError(f"policy {name!r} needs the world: make_policy({name!r}, world)")
    if name.startswith(LEARNED):
        from pathlib import Path

        from evgrid.agents.learned import LearnedStations

        return LearnedStations(world, Path(name[len(LEARNED):]))
    return WORLD_POLICIES[name](world)
