"""Learned agents in the real system: the station policy as a ``Controller`` and the cohort
policy as a router, both from an exported bundle (``evgrid.agents.bundle``), torch only.

They compute exactly the features ``evgrid.envs.parallel`` trained them on and map the outputs
through the same safe mapping (``evgrid.envs.station_actions``: NaN reads 0, shares clipped to
[0, 1] of the useful power), so whatever the network outputs, no charger is asked for more than
it, its EV and its battery allow; zone and city limits are the simulator's projection's (or the
station's envelope's) job, as for every controller.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evgrid.agents.bundle import BundleError, BundleSpec, ExportedPolicy, load_policies
from evgrid.envs.interface import Observation
from evgrid.envs.parallel import ChoiceRouter, cohort_dim, cohort_features
from evgrid.envs.simulator import Arrivals
from evgrid.envs.station_actions import Layout, station_actions
from evgrid.envs.world import World

#: ``evgrid run --policy learned:DIR`` and ``--routing learned:DIR``.
LEARNED_PREFIX = "learned:"


def _grouped(policies: dict[str, ExportedPolicy], agents: list[str]
             ) -> list[tuple[ExportedPolicy, np.ndarray]]:
    """Rows of agents that share a policy file, to run each file once per step on a batch."""
    groups: dict[int, tuple[ExportedPolicy, list[int]]] = {}
    for row, a in enumerate(agents):
        pol = policies[a]
        groups.setdefault(id(pol), (pol, []))[1].append(row)
    return [(pol, np.array(rows)) for pol, rows in groups.values()]


class FrozenKind:
    """The learned policies of one kind of agent as one call on the kind's feature rows (the
    side that does not learn during an alternating phase: ``EvgridParallelEnv``'s
    ``station_policy`` / ``cohort_policy``)."""

    def __init__(self, folder: Path, kind: str, agents: list[str]) -> None:
        self.groups = _grouped(load_policies(folder, kind, agents), agents)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        outs = {int(r): o for pol, rows in self.groups
                for r, o in zip(rows, np.asarray(pol(x[rows])), strict=True)}
        return np.stack([outs[r] for r in range(x.shape[0])])


class LearnedStations:
    """Every station runs its learned policy on its own features (a ``Controller``)."""

    def __init__(self, world: World, folder: Path, *, name: str = "learned") -> None:
        spec = BundleSpec.load(folder)
        self.world, self.layout, self.name = world, Layout.of(world), name
        try:
            self.actions = station_actions(spec.station_action, self.layout)
        except ValueError as e:
            raise BundleError(f"{folder}: {e}") from None
        if spec.station_dim != self.actions.obs_dim:
            raise BundleError(
                f"{folder}: the station policy was trained on {spec.scenario!r} with "
                f"{spec.station_dim} features ({spec.station_action}, stations of up to "
                f"{spec.width} chargers); this scenario needs {self.actions.obs_dim}")
        agents = [f"station_{i}" for i in self.layout.ids]
        self.groups = _grouped(load_policies(folder, "station", agents), agents)

    def actions_for(self, obs: Observation) -> np.ndarray:
        """[n_stations, act_dim] what each station's policy outputs on its features."""
        x = self.actions.features(obs, self.world)
        act = np.zeros((x.shape[0], self.actions.act_dim))
        for pol, rows in self.groups:
            out = np.asarray(pol(x[rows]), dtype=float)
            if out.shape != (rows.size, self.actions.act_dim):
                raise BundleError(f"{pol.path}: returned {out.shape}, expected "
                                  f"{(rows.size, self.actions.act_dim)}")
            act[rows] = out
        return act

    def schedule(self, obs: Observation) -> np.ndarray:
        return self.actions.power(self.actions_for(obs), obs)


class LearnedRouter:
    """Each cohort routes its arriving drivers by its learned policy (a simulator router)."""

    def __init__(self, world: World, folder: Path) -> None:
        spec = BundleSpec.load(folder)
        names = [c.name for c in world.scenario.cohorts]
        if spec.cohort_dim != cohort_dim(spec.routes):
            raise BundleError(f"{folder}: cohort features of {spec.cohort_dim} values, this "
                              f"version computes {cohort_dim(spec.routes)}")
        self.world, self.routes = world, spec.routes
        agents = [f"cohort_{n}" for n in names]
        self.groups = _grouped(load_policies(folder, "cohort", agents), agents)
        self.choices = ChoiceRouter(len(names))

    def __call__(self, arrivals: Arrivals) -> np.ndarray:
        n = self.choices.choice.size
        hour = (arrivals.t * self.world.dt_h) % 24.0
        x = cohort_features(arrivals, n, hour, self.routes)
        for pol, rows in self.groups:
            out = np.asarray(pol(x[rows])).reshape(-1)
            self.choices.choice[rows] = np.clip(np.nan_to_num(out, nan=0.0), 0,
                                                self.routes - 1).astype(np.int64)
        return self.choices(arrivals)
