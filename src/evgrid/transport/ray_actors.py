"""Station agents and the coordinator as Ray actors; messages cross as serialized protobufs.

One actor per station by default; ``stations_per_actor`` packs many stations into one actor
(each pack solves all its EVs in one compiled call), which is what a 2-core machine needs
for a large city. The coordinator is an actor too. Every actor gets
``OPENBLAS_NUM_THREADS=1`` and ``NUMBA_NUM_THREADS=1`` so many processes on few cores do not
fight over BLAS or kernel threads (the actors are the parallelism).

Partial participation: a round waits for the packs until ``round_timeout_s``; a pack that is
late or dead is simply missing from that round (the coordinator keeps its last proposal), and
at the end of the period the coordinator side executes the dead pack's stations itself with
the same least-laxity-first rule inside each station's agreed share, so no limit can break.
Dead actors are restarted by Ray (``max_restarts``) and get their state again next period.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import numba
import numpy as np
import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from evgrid.agents.cohort import CohortAgent
from evgrid.agents.coordinated import CoordinatedPolicy, station_specs
from evgrid.agents.station import StationConfig, StationPack, StationState, setpoints_within
from evgrid.coordinator.admm import AdmmConfig, AdmmStats, PowerCoordinator
from evgrid.coordinator.messages import ConsensusTargets, PowerProposals, Registration
from evgrid.transport import codec
from evgrid.transport.pb import coordinator_pb2 as pb

log = logging.getLogger(__name__)

SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                     "NUMBA_NUM_THREADS": "1"}


def ensure_ray(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Start embedded local Ray (or join ``address`` / $RAY_ADDRESS) unless already up."""
    # The actors are the parallelism now: the calling thread (the coordinator's) keeps one
    # kernel thread, so no idle kernel worker spins on a core an actor needs (measured: +40 ms
    # a solve at 1,000 stations). Per thread, and also when Ray was started by someone else.
    numba.set_num_threads(1)
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs: dict[str, Any] = {"runtime_env": {"env_vars": SINGLE_THREAD_ENV},
                              "include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.WARNING}
    # Ray warns at every start that its token auth is on (it is; that is fine): keep the
    # user's terminal for the progress bar and the KPI table.
    quiet = logging.getLogger("ray._private.authentication.authentication_token_setup")
    quiet.setLevel(logging.ERROR)
    if address:
        ray.init(address=address, **kwargs)
    else:
        # One actor per station means more worker processes than cores by design; let the
        # local raylet start them together instead of warning about each doubling.
        os.environ.setdefault("RAY_worker_maximum_startup_concurrency", "64")
        # A pack's answer (≈0.6 MB at 500 stations × 96 steps) goes back inline with the task's
        # reply instead of through the object store: ≈2 ms less per round (measured).
        ray.init(num_cpus=num_cpus, _system_config={"max_direct_call_object_size": 4 << 20},
                 **kwargs)


def _states_to_bytes(states: dict[str, StationState]) -> list[bytes]:
    return [codec.state_to_proto(s).SerializeToString() for s in states.values()]


@ray.remote(max_restarts=3, num_cpus=0)
class StationPackActor:
    """A :class:`StationPack` behind an actor boundary; protobuf bytes in and out."""

    def __init__(self, ids: list[str], zones: list[str], caps: list[float], config: StationConfig):
        self.pack = StationPack(ids, zones, caps, config)

    def begin_period(self, states: list[bytes]) -> bool:
        decoded = [codec.state_from_proto(pb.StationState.FromString(b)) for b in states]
        self.pack.begin_period({s.station_id: s for s in decoded})
        return True

    def propose(self, targets: bytes) -> bytes:
        batch = pb.TargetBatch.FromString(targets)
        answer = self.pack.propose(codec.targets_from_proto(batch))
        return codec.proposals_to_proto(
            answer, with_participants=not batch.participants_known).SerializeToString()

    def finish_period(self, agreed_kw: dict[str, float]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return self.pack.finish_period(agreed_kw)

    def pid(self) -> int:
        return os.getpid()


class RayStations:
    """The StationTransport over Ray actors (see module docstring)."""

    def __init__(
        self,
        ids: list[str],
        zones: list[str],
        caps: list[float],
        config: StationConfig,
        *,
        stations_per_actor: int = 1,
        round_timeout_s: float = 10.0,
    ) -> None:
        if stations_per_actor < 1:
            raise ValueError(f"stations_per_actor {stations_per_actor} is not >= 1")
        self.ids, self.zones, self.caps = list(ids), list(zones), list(caps)
        self.id_tuple = tuple(self.ids)
        self.config = config
        self.round_timeout_s = round_timeout_s
        self.groups = [list(range(i, min(i + stations_per_actor, len(ids))))
                       for i in range(0, len(ids), stations_per_actor)]
        self.actors = [
            StationPackActor.options(runtime_env={"env_vars": SINGLE_THREAD_ENV}).remote(
                [ids[i] for i in g], [zones[i] for i in g], [caps[i] for i in g], config)
            for g in self.groups
        ]
        self.states: dict[str, StationState] = {}
        # Per pack: the stations and participant counts of its last answer this period.
        self._participants: dict[int, tuple[tuple[str, ...], np.ndarray]] = {}
        self.alive = [True] * len(self.actors)
        self.rounds_missed = 0
        self._horizon = 0
        ray.get([a.pid.remote() for a in self.actors])  # fail early if actors cannot start

    def registrations(self) -> list[Registration]:
        return [Registration(agent_id=a, kind="station", grid_zone=z, max_power_kw=c)
                for a, z, c in zip(self.ids, self.zones, self.caps, strict=True)]

    def _arrivals(self, calls: list[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
        """(actor index, result) for each call as its result arrives, then (index, None) for
        each actor that is dead or missed the round's deadline."""
        pending = {ref: k for k, ref in calls}
        deadline = time.monotonic() + self.round_timeout_s
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1,
                                timeout=max(deadline - time.monotonic(), 0.0))
            if not ready:
                break
            for ref in ready:
                k = pending.pop(ref)
                try:
                    yield k, ray.get(ref, timeout=0)
                except (RayActorError, RayTaskError, GetTimeoutError) as exc:
                    log.warning("station pack %d failed this round: %s", k, type(exc).__name__)
                    self.alive[k] = False
                    self.rounds_missed += 1
                    yield k, None
        for k in pending.values():
            self.rounds_missed += 1
            yield k, None

    def _call(self, calls: list[tuple[int, Any]]) -> dict[int, Any]:
        """Every call's result (None: dead or late), by actor index."""
        return dict(self._arrivals(calls))

    def begin_period(self, states: dict[str, Any]) -> None:
        self.states = dict(states)
        self._participants = {}
        self._horizon = next(iter(states.values())).horizon if states else 0
        calls = [(k, a.begin_period.remote(
                    _states_to_bytes({self.ids[i]: states[self.ids[i]] for i in g})))
                 for k, (a, g) in enumerate(zip(self.actors, self.groups, strict=True))]
        # A restarted actor that took its state again is back in the game; one that did not
        # sits this period out and its stations are executed on its behalf.
        done = self._call(calls)
        self.alive = [done[k] is not None for k in range(len(self.actors))]

    def propose(self, targets: ConsensusTargets) -> PowerProposals:
        everyone = targets.agent_ids == self.id_tuple  # the usual case: packs take slices
        pos = {} if everyone else {a: i for i, a in enumerate(targets.agent_ids)}
        calls, known = [], {}
        for k, (a, g) in enumerate(zip(self.actors, self.groups, strict=True)):
            mine: list[int] | slice = (slice(g[0], g[-1] + 1) if everyone else
                                       [pos[self.ids[i]] for i in g if self.ids[i] in pos])
            if (everyone or mine) and self.alive[k]:
                part = targets.take(mine if everyone else np.array(mine))
                known[k] = self._participants.get(k, ((), None))[0] == part.agent_ids
                batch = codec.targets_to_proto(part, participants_known=known[k])
                calls.append((k, a.propose.remote(batch.SerializeToString())))
        parts = {}
        for k, raw in self._arrivals(calls):  # decode each answer while others still compute
            if raw is not None:
                got = codec.proposals_from_proto(
                    pb.ProposalBatch.FromString(raw), registry=self._registry(),
                    round=targets.round, horizon_start=targets.horizon_start,
                    horizon=targets.horizon,
                    participants=self._participants[k][1] if known[k] else None)
                # Participant counts are fixed for the period: kept from a pack's first
                # answer, and not sent again while it answers for the same stations.
                self._participants[k] = (got.agent_ids, got.participants)
                parts[k] = got
        # In pack order, so the coordinator sees its stations in the order it knows them.
        return PowerProposals.concat([parts[k] for k in sorted(parts)], round=targets.round,
                                     horizon_start=targets.horizon_start,
                                     horizon=targets.horizon)

    def _registry(self) -> dict[str, Registration]:
        if not hasattr(self, "_reg"):
            self._reg = {r.agent_id: r for r in self.registrations()}
        return self._reg

    def finish_period(
        self, agreed_kw: dict[str, float] | None = None
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        agreed_kw = agreed_kw or {}
        calls = [(k, self.actors[k].finish_period.remote(
            {self.ids[i]: agreed_kw.get(self.ids[i], 0.0) for i in self.groups[k]}))
            for k in range(len(self.actors)) if self.alive[k]]
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for res in self._call(calls).values():
            if res is not None:
                out.update(res)
        # Stations whose pack died or stayed silent: executed here, same rule, same budget.
        for sid in self.ids:
            if sid not in out and sid in self.states:
                out[sid] = setpoints_within(self.states[sid], agreed_kw.get(sid, 0.0))
        for k in range(len(self.actors)):
            self.alive[k] = True  # try again next period (Ray restarts dead actors)
        return out

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a)


@ray.remote(num_cpus=0)
class CoordinatorActor:
    """:class:`PowerCoordinator` behind an actor boundary; protobuf bytes in and out."""

    def __init__(self, grid_ids: list[str], config: AdmmConfig) -> None:
        self.c = PowerCoordinator(grid_ids, config)

    def register(self, regs: list[bytes]) -> None:
        for raw in regs:
            self.c.register(codec.registration_from_proto(pb.RegisterRequest.FromString(raw),
                                                          self.c.grid_ids))

    def begin(self, horizon_start: int, zone_limit_kw: np.ndarray, city_limit_kw: np.ndarray) -> bytes:
        return codec.targets_to_proto(self.c.begin(horizon_start, zone_limit_kw, city_limit_kw),
                                     with_z=True).SerializeToString()

    def update(self, proposals: bytes) -> tuple[bytes, AdmmStats]:
        batch = codec.proposals_from_proto(
            pb.ProposalBatch.FromString(proposals), registry=self.c.registry, round=self.c.round,
            horizon_start=self.c.horizon_start, horizon=self.c.horizon)
        targets = self.c.update(batch)
        return codec.targets_to_proto(targets, with_z=True).SerializeToString(), self.c.stats

    def consensus(self) -> dict[str, np.ndarray]:
        return self.c.consensus()

    def executable_now(self) -> dict[str, float]:
        return self.c.executable_now()


class RayCoordinator:
    """A driver-side proxy with :class:`PowerCoordinator`'s interface, backed by an actor."""

    def __init__(self, grid_ids: list[str], config: AdmmConfig | None = None) -> None:
        self.grid_ids = list(grid_ids)
        self.config = config or AdmmConfig()
        self.actor = CoordinatorActor.options(runtime_env={"env_vars": SINGLE_THREAD_ENV}).remote(
            self.grid_ids, self.config)
        self.stats = AdmmStats()
        self._pending: list[bytes] = []

    def register(self, reg: Registration) -> None:
        ray.get(self.actor.register.remote([codec.registration_to_proto(reg).SerializeToString()]))

    def begin(self, horizon_start: int, zone_limit_kw: np.ndarray, city_limit_kw: np.ndarray) -> ConsensusTargets:
        raw = ray.get(self.actor.begin.remote(horizon_start, zone_limit_kw, city_limit_kw))
        return codec.targets_from_proto(pb.TargetBatch.FromString(raw))

    def update(self, proposals: PowerProposals) -> ConsensusTargets:
        raw, self.stats = ray.get(self.actor.update.remote(
            codec.proposals_to_proto(proposals).SerializeToString()))
        return codec.targets_from_proto(pb.TargetBatch.FromString(raw))

    def consensus(self) -> dict[str, np.ndarray]:
        return ray.get(self.actor.consensus.remote())

    def executable_now(self) -> dict[str, float]:
        return ray.get(self.actor.executable_now.remote())


def default_stations_per_actor(n_stations: int) -> int:
    """Pack stations onto as many actors as Ray has CPUs (one actor per station costs ≈2–3 ms
    per actor per round on a 2-core machine)."""
    cpus = max(1, int(ray.available_resources().get("CPU", 1))) if ray.is_initialized() else 2
    return max(1, math.ceil(n_stations / cpus))


def ray_coordinated_policy(
    world: Any, *, stations_per_actor: int | None = None, admm: AdmmConfig | None = None,
    round_timeout_s: float = 10.0,
) -> CoordinatedPolicy:
    """The coordinated policy with station packs and the coordinator as Ray actors."""
    ids, zones, caps = station_specs(world)
    spa = stations_per_actor or default_stations_per_actor(len(ids))

    def stations(w: Any, config: StationConfig) -> RayStations:
        return RayStations(ids, zones, caps, config, stations_per_actor=spa,
                           round_timeout_s=round_timeout_s)

    return CoordinatedPolicy(world, admm=admm or AdmmConfig(), stations=stations,
                             coordinator_factory=RayCoordinator)


@ray.remote(num_cpus=0)
class CohortActor:
    """A :class:`CohortAgent` behind an actor boundary (claims are a few dozen floats)."""

    def __init__(self, agent: CohortAgent) -> None:
        self.agent = agent

    def propose(self, z: np.ndarray, u: np.ndarray, rho: float) -> tuple[np.ndarray, np.ndarray]:
        return self.agent.propose(z, u, rho)

    def get(self) -> CohortAgent:
        return self.agent


def ray_cohort_host(agents: list[CohortAgent]) -> tuple[list[Any], Any, Any]:
    """``cohort_router(host=...)``: one actor per cohort; rounds gathered with ``ray.get``."""
    actors = [CohortActor.options(runtime_env={"env_vars": SINGLE_THREAD_ENV}).remote(a)
              for a in agents]

    class Proxy:
        def __init__(self, actor: Any) -> None:
            self.actor = actor

        def propose(self, z: np.ndarray, u: np.ndarray, rho: float) -> Any:
            return self.actor.propose.remote(z, u, rho)

    def fetch() -> list[CohortAgent]:
        got = ray.get([a.get.remote() for a in actors])
        for a in actors:
            ray.kill(a)
        return got

    return [Proxy(a) for a in actors], ray.get, fetch
