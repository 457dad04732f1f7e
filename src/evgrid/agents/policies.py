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


def policy_names() -> list[str]:
    return [*BASELINES, *WORLD_POLICIES]


def check_policy_names(names: list[str]) -> None:
    """Raise ValueError listing the valid names if any of ``names`` is unknown or repeated."""
    if len(set(names)) != len(names):
        raise ValueError(f"policy given twice: {names}")
    for name in names:
        if name not in BASELINES and name not in WORLD_POLICIES:
            raise ValueError(f"unknown policy {name!r}: choose from {policy_names()}")


def make_policy(name: str, world: World | None = None) -> Controller:
    """Build a policy by name; an unknown name lists the valid ones."""
    check_policy_names([name])
    if name in BASELINES:
        return BASELINES[name]()
    if world is None:
        raise ValueError(f"policy {name!r} needs the world: make_policy({name!r}, world)")
    return WORLD_POLICIES[name](world)
