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

BASELINES: dict[str, Callable[[], Controller]] = {
    "uncontrolled": Uncontrolled,
    "fcfs": FirstComeFirstServed,
    "round_robin": RoundRobin,
    "edf": EarliestDeadlineFirst,
    "llf": LeastLaxityFirst,
}


def policy_names() -> list[str]:
    return list(BASELINES)


def make_policy(name: str) -> Controller:
    """Build a policy by name; an unknown name lists the valid ones."""
    try:
        return BASELINES[name]()
    except KeyError:
        raise ValueError(f"unknown policy {name!r}: choose from {policy_names()}") from None
