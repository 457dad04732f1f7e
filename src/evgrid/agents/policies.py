"""The policy registry: names a user can pass to ``evgrid run --policy``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
#: ``coordinated+learned:DIR``: the coordinated stations, each executing its agreed power by
#: that policy (``evgrid.agents.dispatch``) instead of by its plan.
COORDINATED_LEARNED = "coordinated+" + LEARNED


def policy_names() -> list[str]:
    return [*BASELINES, *WORLD_POLICIES, LEARNED + "DIR", COORDINATED_LEARNED + "DIR"]


def learned_folder(name: str) -> Path | None:
    """The bundle folder of a ``learned:DIR`` or ``coordinated+learned:DIR`` name, else None."""
    for prefix in (LEARNED, COORDINATED_LEARNED):
        if name.startswith(prefix):
            return Path(name[len(prefix):])
    return None


def check_policy_names(names: list[str]) -> None:
    """Raise ValueError listing the valid names if any of ``names`` is unknown or repeated, or
    names a learned policy folder without an exported bundle."""
    if len(set(names)) != len(names):
        raise ValueError(f"policy given twice: {names}")
    for prefix in (LEARNED, COORDINATED_LEARNED):
        if sum(n.startswith(prefix) for n in names) > 1:
            raise ValueError(f"give at most one {prefix}DIR policy per run")
    for name in names:
        folder = learned_folder(name)
        if folder is not None:
            from evgrid.agents.bundle import check_bundle

            spec = check_bundle(folder, "station")
            if name.startswith(COORDINATED_LEARNED) and spec.station_action != "budget":
                raise ValueError(f"{folder}: a {spec.station_action!r} station policy runs as "
                                 "learned:DIR only; coordinated stations run 'budget' policies")
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
        from evgrid.agents.learned import LearnedStations

        return LearnedStations(world, Path(name[len(LEARNED):]))
    if name.startswith(COORDINATED_LEARNED):
        from evgrid.agents.coordinated import CoordinatedPolicy

        return CoordinatedPolicy(world, station_policy=Path(name[len(COORDINATED_LEARNED):]),
                                 name="coordinated+learned")
    return WORLD_POLICIES[name](world)
