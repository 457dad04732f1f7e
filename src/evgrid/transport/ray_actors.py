"""Station agents and the coordinator as Ray actors; messages cross as serialized protobufs.

One actor per station by default; ``stations_per_actor`` packs many stations into one actor
(each pack solves all its EVs in one compiled call), which is what a 2-core machine needs
for a large city. The coordinator is an actor too. Every actor gets
``OPENBLAS_NUM_THREADS=1`` and ``NUMBA_NUM_THREADS=1`` so many processes on few cores do not
fight over BLAS or kernel threads (the actors are the parallelism).

Partial participation: a round waits for the packs until ``round_timeout_s``; a pack that is
late or dead is simply missing from that round (the coordinator keeps its last proposal and
drops its stations after ``drop_after`` missed rounds, reserving their fallback), and at the
end of the period the coordinator side executes the dead pack's stations itself with the same
least-laxity-first rule inside each station's agreed share, so no limit can break. Dead
actors are restarted by Ray (``max_restarts``) and get their state again next period; a pack
that could not take its state is unreachable for that period (dropped before round 0).

The coordinator actor is restartable too: the driver-side proxy keeps the coordinator's
state as of the last finished period, and when the actor dies mid-period it raises
``CoordinatorLost``; ``CoordinatedPolicy`` then restores the restarted actor from that state
and solves the period again (nothing of it was executed yet).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np
import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from evgrid.agents.cohort import CohortAgent
from evgrid.agents.coordinated import CoordinatedPolicy, station_chargers, station_specs
from evgrid.agents.dispatch import make_dispatch
from evgrid.agents.station import StationConfig, StationPack, StationState
from evgrid.coordinator.admm import AdmmConfig, AdmmStats, CoordinatorState, PowerCoordinator
from evgrid.coordinator.demand import DemandCharge
from evgrid.coordinator.driver import (
    CoordinatorLost,
    Executed,
    TransportStats,
    WarmTable,
    probation_grace,
)
from evgrid.coordinator.messages import ConsensusTargets, PowerProposals, Registration
from evgrid.transport import codec
from evgrid.transport.codec import MessageError
from evgrid.transport.pb import coordinator_pb2 as pb

log = logging.getLogger(__name__)

SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                     "NUMBA_NUM_THREADS": "1"}


def probe_address(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast when nothing listens at a Ray address (``ray.init`` waits minutes for a GCS
    that is not there): ``ConnectionError`` naming it. ``auto`` and ``local`` are Ray's own
    discovery and are left to it."""
    if address in {"auto", "local"}:
        return
    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConnectionError(f"{address!r} is not host:port or ray://host:port")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {address} ({exc.strerror or exc})") from None


def ensure_ray(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Start embedded local Ray (or join ``address`` / $RAY_ADDRESS) unless already up."""
    # The actors are the parallelism now: the calling thread (the coordinator's) keeps one
    # kernel thread, so no idle kernel worker spins on a core an actor needs (measured: +40 ms
    # a solve at 1,000 stations). Per thread, and also when Ray was started by someone else.
    numba.set_num_threads(1)
    if ray.is_initialized():
        if address:  # a wrong address is the user's error even where Ray is already up
            probe_address(address)
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
        probe_address(address)
        ray.init(address=address, **kwargs)
    else:
        # One actor per station means more worker processes than cores by design; let the
        # local raylet start them together instead of warning about each doubling.
        os.environ.setdefault("RAY_worker_maximum_startup_concurrency", "64")
        # A pack's answer (≈0.6 MB at 500 stations × 96 steps) goes back inline with the task's
        # reply instead of through the object store: ≈2 ms less per round (measured).
        ray.init(num_cpus=num_cpus, _system_config={"max_direct_call_object_size": 4 << 20},
                 **kwargs)


#: What one station pack actor takes of ``--station-resource``: a node that offers 1,000
#: hosts up to 1,000 packs.
STATION_RESOURCE_SHARE = 0.001


def _spawn(actor_class: Any, *args: Any, resources: dict[str, float] | None = None) -> Any:
    """Start an actor of ``actor_class`` (a ``ray.remote`` class) with one BLAS and one kernel
    thread: the actors are the parallelism. ``resources``: custom resources it needs (where
    it may be placed)."""
    return actor_class.options(runtime_env={"env_vars": SINGLE_THREAD_ENV},
                               resources=resources or {}).remote(*args)


def _states_to_bytes(states: dict[str, StationState]) -> list[bytes]:
    return [codec.state_to_proto(s).SerializeToString() for s in states.values()]


@ray.remote(max_restarts=3, num_cpus=0)
class StationPackActor:
    """A :class:`StationPack` behind an actor boundary; protobuf bytes in and out."""

    def __init__(self, ids: list[str], zones: list[str], caps: list[float], config: StationConfig,
                 chargers: list[int]):
        self.pack = StationPack(ids, zones, caps, config, chargers=chargers)

    def begin_period(self, states: list[bytes]) -> bool:
        decoded = [codec.state_from_proto(pb.StationState.FromString(b)) for b in states]
        self.pack.begin_period({s.station_id: s for s in decoded})
        return True

    def propose(self, targets: bytes) -> bytes:
        batch = pb.TargetBatch.FromString(targets)
        answer = self.pack.propose(codec.targets_from_proto(batch))
        return codec.proposals_to_proto(
            answer, with_participants=not batch.participants_known).SerializeToString()

    def finish_period(self, agreed_kw: dict[str, float]) -> tuple[Executed, WarmTable]:
        """The set-points, and the warm starts they leave (what a checkpoint keeps: sent
        here, no call of its own, which a hung pack would have made wait)."""
        return self.pack.finish_period(agreed_kw), self.pack.warm_starts()

    def load_warm_starts(self, warm: WarmTable) -> bool:
        self.pack.load_warm_starts(warm)
        return True

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        """The Ray node this pack runs on (where ``--station-resource`` placed it)."""
        return str(ray.get_runtime_context().get_node_id())


class RayStations:
    """The StationTransport over Ray actors (see module docstring)."""

    def __init__(
        self,
        ids: list[str],
        zones: list[str],
        caps: list[float],
        config: StationConfig,
        *,
        chargers: list[int] | None = None,
        stations_per_actor: int = 1,
        round_timeout_s: float = 10.0,
        start_timeout_s: float = 120.0,
        resource: str | None = None,
    ) -> None:
        """``resource``: a custom Ray resource every pack needs (a share of it), which places
        the packs on the nodes that offer it (``evgrid run --station-resource``)."""
        if stations_per_actor < 1:
            raise ValueError(f"stations_per_actor {stations_per_actor} is not >= 1")
        self.ids, self.zones, self.caps = list(ids), list(zones), list(caps)
        self.chargers = list(chargers) if chargers is not None else [0] * len(self.ids)
        self.id_tuple = tuple(self.ids)
        self.config = config
        #: What this side executes for a station whose pack died or stayed silent: the
        #: station's own dispatch (its learned policy, if it runs one), inside its agreed power.
        self.dispatch = make_dispatch(config.policy_dir, self.ids)
        self.round_timeout_s = round_timeout_s
        self.groups = [list(range(i, min(i + stations_per_actor, len(ids))))
                       for i in range(0, len(ids), stations_per_actor)]
        self.actors = [
            _spawn(StationPackActor,
                [ids[i] for i in g], [zones[i] for i in g], [caps[i] for i in g], config,
                [self.chargers[i] for i in g],
                resources=None if resource is None else {resource: STATION_RESOURCE_SHARE})
            for g in self.groups
        ]
        self.states: dict[str, StationState] = {}
        # Per pack: the stations and participant counts of its last answer this period.
        self._participants: dict[int, tuple[tuple[str, ...], np.ndarray]] = {}
        self.alive = [True] * len(self.actors)
        self._horizon = 0
        self._stats = TransportStats()
        self._down: set[int] = set()  # packs whose outage was logged
        self._warm: dict[int, WarmTable] = {}  # each pack's warm starts, as last reported
        self._reg = {r.agent_id: r for r in self.registrations()}
        # The actors start in the background (a process each); the first period waits for
        # them, so building this early overlaps their start with other work.
        self._starting: list[Any] | None = [a.pid.remote() for a in self.actors]
        self.start_timeout_s = start_timeout_s

    def _started(self) -> None:
        """Wait once for the actors to be up; fail with a clear error if they cannot start."""
        if self._starting is None:
            return
        refs, self._starting = self._starting, None
        try:
            ray.get(refs, timeout=self.start_timeout_s)
        except (RayActorError, GetTimeoutError) as exc:
            raise RuntimeError(f"the station actors did not start within "
                               f"{self.start_timeout_s:g} s ({type(exc).__name__})") from exc

    def node_ids(self) -> list[str]:
        """The Ray node of every pack, in pack order."""
        self._started()
        return list(ray.get([a.node_id.remote() for a in self.actors],
                            timeout=self.start_timeout_s))

    @property
    def stats(self) -> TransportStats:
        return self._stats

    def unconfirmed(self) -> set[str]:
        return set()  # a silent pack's stations are executed here, on what was agreed

    def unreachable(self) -> set[str]:
        """Stations of packs that could not take this period's state (dead, restarting)."""
        return {self.ids[i] for k, g in enumerate(self.groups) if not self.alive[k] for i in g}

    def registrations(self) -> list[Registration]:
        return [Registration(agent_id=a, kind="station", grid_zone=z, max_power_kw=c, chargers=n)
                for a, z, c, n in zip(self.ids, self.zones, self.caps, self.chargers, strict=True)]

    def _arrivals(
        self, calls: list[tuple[int, Any]], optional: Iterable[int] = ()
    ) -> Iterator[tuple[int, Any]]:
        """(actor index, result) for each call as its result arrives, then (index, None) for
        each actor that is dead or missed the round's deadline. ``optional`` actors (on
        probation) are waited for only as long again as the others took (``probation_grace``);
        when every call is optional, the round waits as usual."""
        pending = {ref: k for k, ref in calls}
        skip = set(optional)
        t0 = time.monotonic()
        deadline = t0 + self.round_timeout_s
        graced = all(k in skip for k in pending.values())
        while pending:
            if not graced and all(k in skip for k in pending.values()):
                deadline = min(deadline, time.monotonic() + probation_grace(time.monotonic() - t0))
                graced = True
            ready, _ = ray.wait(list(pending), num_returns=1,
                                timeout=max(deadline - time.monotonic(), 0.0))
            if not ready:
                break
            for ref in ready:
                k = pending.pop(ref)
                yield k, self._result(k, ref)
        for k in pending.values():
            yield k, None

    def _result(self, k: int, ref: Any) -> Any:
        """A ready call's result, or None (counted) when its actor died or the call failed."""
        try:
            return ray.get(ref, timeout=0)
        except (RayActorError, RayTaskError, GetTimeoutError) as exc:
            # Said once per outage: a pack Ray gave up restarting fails every period after.
            if k not in self._down:
                log.warning("station pack %d failed: %s; its stations run on their fallback "
                            "until it answers again", k, type(exc).__name__)
            self._down.add(k)
            self.alive[k] = False
            return None

    def _call(self, calls: list[tuple[int, Any]], optional: frozenset[str] = frozenset(),
              ) -> dict[int, Any]:
        """Every call's result (None: dead or late), by actor index; packs whose stations are
        all ``optional`` (on probation) are waited for only ``probation_grace``."""
        skip = [k for k, _ in calls if optional and all(
            self.ids[i] in optional for i in self.groups[k])]
        return dict(self._arrivals(calls, skip))

    def begin_period(self, states: Mapping[str, Any], *,
                     optional: frozenset[str] = frozenset()) -> None:
        self._started()
        self.states = dict(states)
        self._participants = {}
        self._horizon = next(iter(states.values())).horizon if states else 0
        calls = [(k, a.begin_period.remote(
                    _states_to_bytes({self.ids[i]: states[self.ids[i]] for i in g})))
                 for k, (a, g) in enumerate(zip(self.actors, self.groups, strict=True))]
        # A restarted actor that took its state again is back in the game; one that did not
        # sits this period out and its stations are executed on its behalf.
        done = self._call(calls, optional)
        self.alive = [done[k] is not None for k in range(len(self.actors))]
        for k in [k for k in self._down if self.alive[k]]:
            log.warning("station pack %d is back", k)
            self._down.discard(k)

    def propose(
        self, targets: ConsensusTargets, *, optional: frozenset[str] = frozenset()
    ) -> PowerProposals:
        everyone = targets.agent_ids == self.id_tuple  # the usual case: packs take slices
        pos = {} if everyone else {a: i for i, a in enumerate(targets.agent_ids)}
        calls, known, skip = [], {}, []
        for k, (a, g) in enumerate(zip(self.actors, self.groups, strict=True)):
            rows = [pos[self.ids[i]] for i in g if self.ids[i] in pos]
            if not self.alive[k] or not (everyone or rows):
                continue
            part = targets.take(slice(g[0], g[-1] + 1) if everyone
                                else np.array(rows, dtype=np.int64))
            known[k] = self._participants.get(k, ((), None))[0] == part.agent_ids
            batch = codec.targets_to_proto(part, participants_known=known[k])
            calls.append((k, a.propose.remote(batch.SerializeToString())))
            if optional and all(s in optional for s in part.agent_ids):
                skip.append(k)
        parts = {}
        for k, raw in self._arrivals(calls, skip):  # decode each answer while others compute
            if raw is not None:
                try:
                    got = codec.proposals_from_proto(
                        pb.ProposalBatch.FromString(raw), registry=self._reg,
                        round=targets.round, horizon_start=targets.horizon_start,
                        horizon=targets.horizon,
                        participants=self._participants[k][1] if known[k] else None)
                except MessageError as exc:  # refused like a gRPC message: counted, missing
                    log.warning("station pack %d: refused its answer: %s %s", k, exc.code, exc)
                    self._stats.refuse(exc.code)
                    continue
                # Participant counts are fixed for the period: kept from a pack's first
                # answer, and not sent again while it answers for the same stations.
                self._participants[k] = (got.agent_ids, got.participants)
                parts[k] = got
        # In pack order, so the coordinator sees its stations in the order it knows them.
        return PowerProposals.concat([parts[k] for k in sorted(parts)], round=targets.round,
                                     horizon_start=targets.horizon_start,
                                     horizon=targets.horizon)

    def finish_period(
        self, agreed_kw: Mapping[str, float] | None = None,
        envelopes: Mapping[str, np.ndarray] | None = None,
        *, optional: frozenset[str] = frozenset(),
    ) -> Executed:
        agreed_kw = agreed_kw or {}
        calls = [(k, self.actors[k].finish_period.remote(
            {self.ids[i]: agreed_kw.get(self.ids[i], 0.0) for i in self.groups[k]}))
            for k in range(len(self.actors)) if self.alive[k]]
        out: Executed = {}
        for k, res in self._call(calls, optional).items():
            if res is not None:
                executed, self._warm[k] = res
                out.update(executed)
        # Stations whose pack died or stayed silent: executed here, same rule, same budget.
        for sid in self.ids:
            if sid not in out and sid in self.states:
                out[sid] = self.dispatch(self.states[sid], agreed_kw.get(sid, 0.0))
                self._stats.fallbacks += 1
        for k in range(len(self.actors)):
            self.alive[k] = True  # try again next period (Ray restarts dead actors)
        return out

    def warm_starts(self) -> WarmTable:
        """As each pack last reported them (with its set-points): no call, no wait."""
        return WarmTable.concat(list(self._warm.values()))

    def load_warm_starts(self, warm: WarmTable) -> None:
        self._started()
        got = self._call([(k, a.load_warm_starts.remote(warm))
                          for k, a in enumerate(self.actors)])
        if any(v is None for v in got.values()):
            log.warning("a station pack did not take its warm starts: it starts cold")

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a)


@ray.remote(num_cpus=0, max_restarts=3)
class CoordinatorActor:
    """:class:`PowerCoordinator` behind an actor boundary; protobuf bytes in and out.

    Restartable: Ray runs ``__init__`` again after a crash, and the proxy then calls
    ``restore`` with the registrations and the state of the last finished period."""

    def __init__(self, grid_ids: list[str], config: AdmmConfig) -> None:
        self.c = PowerCoordinator(grid_ids, config)

    def register(self, regs: list[bytes]) -> None:
        for raw in regs:
            self.c.register(codec.registration_from_proto(pb.RegisterRequest.FromString(raw),
                                                          self.c.grid_ids))

    def restore(self, regs: list[bytes], state: CoordinatorState) -> None:
        self.c.registry.clear()
        self.register(regs)
        self.c.restore(state)

    def begin(self, horizon_start: int, zone_limit_kw: np.ndarray, city_limit_kw: np.ndarray,
              absent: list[str], demand: DemandCharge | None = None) -> bytes:
        targets = self.c.begin(horizon_start, zone_limit_kw, city_limit_kw, absent=absent,
                               demand=demand)
        return codec.targets_to_proto(targets, with_z=True).SerializeToString()

    def update(self, proposals: bytes) -> tuple[bytes, AdmmStats]:
        batch = codec.proposals_from_proto(
            pb.ProposalBatch.FromString(proposals), registry=self.c.registry, round=self.c.round,
            horizon_start=self.c.horizon_start, horizon=self.c.horizon)
        targets = self.c.update(batch)
        return codec.targets_to_proto(targets, with_z=True).SerializeToString(), self.c.stats

    def settle(self) -> tuple[dict[str, float], dict[str, np.ndarray], CoordinatorState]:
        agreed, envelopes = self.c.settle()
        return agreed, envelopes, self.c.state()

    def unconfirmed(self, agent_ids: list[str]) -> CoordinatorState:
        self.c.unconfirmed(agent_ids)
        return self.c.state()

    def pid(self) -> int:
        return os.getpid()


class RayCoordinator:
    """A driver-side proxy for a :class:`PowerCoordinator` in an actor (``Coordinator``).

    Every call that finds the actor dead raises ``CoordinatorLost``; ``restore`` waits for
    Ray to restart it and hands it the registrations and the given state."""

    def __init__(self, grid_ids: list[str], config: AdmmConfig | None = None,
                 *, restart_timeout_s: float = 60.0) -> None:
        self.grid_ids = list(grid_ids)
        self.config = config or AdmmConfig()
        self.restart_timeout_s = restart_timeout_s
        self.actor = _spawn(CoordinatorActor, self.grid_ids, self.config)
        self._stats = AdmmStats()
        self._regs: list[bytes] = []
        self._state = CoordinatorState(self.config.rho, np.zeros((len(self.grid_ids), 0)), -1, {})

    @property
    def stats(self) -> AdmmStats:
        return self._stats

    def _get(self, ref: Any, timeout: float | None = None) -> Any:
        try:
            return ray.get(ref, timeout=timeout)
        except (RayActorError, GetTimeoutError) as exc:
            raise CoordinatorLost(f"the coordinator actor is gone: {type(exc).__name__}") from exc

    def register(self, reg: Registration) -> None:
        raw = codec.registration_to_proto(reg).SerializeToString()
        self._get(self.actor.register.remote([raw]))
        self._regs.append(raw)

    def begin(self, horizon_start: int, zone_limit_kw: np.ndarray, city_limit_kw: np.ndarray,
              *, absent: Iterable[str] = (), demand: DemandCharge | None = None,
              ) -> ConsensusTargets:
        raw = self._get(self.actor.begin.remote(horizon_start, zone_limit_kw, city_limit_kw,
                                                list(absent), demand))
        return codec.targets_from_proto(pb.TargetBatch.FromString(raw))

    def update(self, proposals: PowerProposals) -> ConsensusTargets:
        raw, self._stats = self._get(self.actor.update.remote(
            codec.proposals_to_proto(proposals).SerializeToString()))
        return codec.targets_from_proto(pb.TargetBatch.FromString(raw))

    def settle(self) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        agreed, envelopes, self._state = self._get(self.actor.settle.remote())
        return agreed, envelopes

    def unconfirmed(self, agent_ids: Iterable[str]) -> None:
        ids = list(agent_ids)
        if ids:
            self._state = self._get(self.actor.unconfirmed.remote(ids))

    def state(self) -> CoordinatorState:
        return self._state

    def restore(self, state: CoordinatorState) -> None:
        """Wait for the restarted actor (``restart_timeout_s``) and hand it ``state``."""
        deadline = time.monotonic() + self.restart_timeout_s
        while True:
            try:
                ray.get(self.actor.restore.remote(self._regs, state),
                        timeout=max(deadline - time.monotonic(), 0.1))
                break
            except (RayActorError, GetTimeoutError) as exc:
                if time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"the coordinator actor did not come back within "
                        f"{self.restart_timeout_s:g} s ({type(exc).__name__}); Ray restarts it "
                        "at most 3 times") from exc
                time.sleep(0.2)
        self._state = state


#: Memory a station-pack actor process takes beyond its stations' arrays (Ray worker, numpy,
#: numba kernels; measured ≈200 MB), with room to spare.
ACTOR_MEMORY_BYTES = 400 * 2**20


def default_stations_per_actor(n_stations: int) -> int:
    """Pack stations onto as many actors as the machine has room for: one CPU is the driver's
    (it runs the coordinator and the simulator), and each actor process needs memory of its
    own. On 2 cores that is one pack: measured on ``city``, one actor per station costs
    ≈2–3 ms per actor per round, and two packs beside the driver are slower than one (a day
    8.2 s against 6.8 s)."""
    from evgrid.scenario.resources import available_memory

    cpus = max(1, int(ray.cluster_resources().get("CPU", 1))) if ray.is_initialized() else 2
    packs = max(1, cpus - 1)
    room = available_memory()
    if room is not None:
        packs = min(packs, max(1, room[0] // ACTOR_MEMORY_BYTES))
    return max(1, math.ceil(n_stations / min(packs, max(n_stations, 1))))


def ray_coordinated_policy(
    world: Any, *, stations_per_actor: int | None = None, admm: AdmmConfig | None = None,
    round_timeout_s: float = 10.0, coordinator_actor: bool = False,
    station_policy: Path | None = None, station_resource: str | None = None,
) -> CoordinatedPolicy:
    """The coordinated policy with station packs as Ray actors; the coordinator runs in the
    driver, or with ``coordinator_actor`` as a restartable actor of its own (one more hop per
    round: a ``city`` day on 2 cores took 13.4 s against 6.8 s in the driver)."""
    ids, zones, caps = station_specs(world)
    spa = stations_per_actor or default_stations_per_actor(len(ids))

    def stations(w: Any, config: StationConfig) -> RayStations:
        return RayStations(ids, zones, caps, config, chargers=station_chargers(world),
                           stations_per_actor=spa, round_timeout_s=round_timeout_s,
                           resource=station_resource)

    return CoordinatedPolicy(world, admm=admm or AdmmConfig(), stations=stations,
                             coordinator_factory=RayCoordinator if coordinator_actor
                             else PowerCoordinator, station_policy=station_policy,
                             name="coordinated" if station_policy is None
                             else "coordinated+learned")


@ray.remote(num_cpus=0)
class CohortPackActor:
    """Cohort agents behind one actor boundary (claims are a few dozen floats each): a round
    is one call per pack, as station packs are."""

    def __init__(self, agents: list[CohortAgent]) -> None:
        self.agents = agents

    def propose(
        self, asks: list[tuple[int, np.ndarray, np.ndarray, float]]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        return [self.agents[i].propose(z, u, rho) for i, z, u, rho in asks]

    def get(self) -> list[CohortAgent]:
        return self.agents


@dataclass(frozen=True)
class _CohortAsk:
    """One cohort's x-update, deferred until ``gather`` sends each pack its cohorts' asks."""

    pack: int
    index: int  # the cohort within its pack
    args: tuple[np.ndarray, np.ndarray, float]


def ray_cohort_host(
    agents: list[CohortAgent], *, cohorts_per_actor: int | None = None
) -> tuple[list[Any], Any, Any]:
    """``cohort_router(host=...)``: the cohorts in packs of actors (default: as many packs as
    the CPUs less the driver's, like station packs: on 2 cores one actor, one call a round;
    three actors cost ≈13 ms a round against ≈3), each round one call per pack."""
    per = cohorts_per_actor or math.ceil(len(agents) / max(
        1, int(ray.cluster_resources().get("CPU", 2)) - 1))
    groups = [agents[i:i + per] for i in range(0, len(agents), max(per, 1))]
    actors = [_spawn(CohortPackActor, g) for g in groups]

    class Proxy:
        def __init__(self, pack: int, index: int) -> None:
            self.pack, self.index = pack, index

        def propose(self, z: np.ndarray, u: np.ndarray, rho: float) -> _CohortAsk:
            return _CohortAsk(self.pack, self.index, (z, u, rho))

    def gather(asks: list[_CohortAsk]) -> list[tuple[np.ndarray, np.ndarray]]:
        calls = {k: actors[k].propose.remote([(a.index, *a.args) for a in asks if a.pack == k])
                 for k in sorted({a.pack for a in asks})}
        answers = dict(zip(calls, ray.get(list(calls.values())), strict=True))
        taken = dict.fromkeys(calls, 0)
        out = []
        for a in asks:  # each pack answered its asks in the order they were asked
            out.append(answers[a.pack][taken[a.pack]])
            taken[a.pack] += 1
        return out

    def fetch() -> list[CohortAgent]:
        got = [agent for pack in ray.get([a.get.remote() for a in actors]) for agent in pack]
        for a in actors:
            ray.kill(a)
        return got

    proxies = [Proxy(k, i) for k, g in enumerate(groups) for i in range(len(g))]
    return proxies, gather, fetch
