"""The coordinator's gRPC server: edge stations over ``CoordinatorService``, as a station transport.

``create_server`` starts a ``grpc.aio`` server on an event loop of its own, in a background
thread, and returns a :class:`GrpcStations` hub that implements the ``StationTransport``
protocol (``evgrid.coordinator.driver``) for the edge stations connected to it. The hub's
methods are *synchronous*: the simulation thread calls them exactly as it calls an in-process
``StationPack`` and they hop onto the server's loop with ``run_coroutine_threadsafe``. So the
same ``solve_period`` / ``CoordinatedPolicy`` drive in-process, Ray and gRPC stations.

Protocol (one ``Exchange`` stream per station; the servicer is thin, the hub does the work):

* ``Register`` (unary) validates the registration with the codec; then the station opens
  ``Exchange`` and sends ``Hello``. An unregistered agent is refused with UNAUTHENTICATED.
* ``begin_period(states)`` stages each station's simulated state; the first ``propose`` of the
  period sends it a ``PeriodStart`` that carries the state *and* its round-0 target (one
  message instead of two). Later rounds send a bare ``ConsensusTarget``. A station that
  (re)connects mid-period gets a ``PeriodStart`` with the current round's target.
* ``propose`` waits up to ``round_timeout_s`` for the proposals. Each is checked by
  ``codec.check_proposal``; a bad one aborts *that* stream with the codec's status code and
  the others carry on. Late stations are simply missing (the coordinator keeps their last
  proposal); a late answer that arrives after its deadline is dropped, not punished.
* ``finish_period`` sends each station a done target whose z over the horizon is its agreed
  envelope, and collects the executed ``SetpointSchedule``. A station that does not answer in
  time gets, on this side, the same fallback its edge node executes
  (``evgrid.agents.edge.fallback_schedule``: least laxity first inside its last *acknowledged*
  envelope), so the simulated chargers always get a safe schedule. Caveat: that keeps the
  station within what *it* agreed, but the current period's consensus counted it at its last
  proposal, so a zone or the city can be over by the difference for the steps it is silent;
  the simulator's safety projection has the last word there (and reports the cut).

Every RPC needs ``authorization: Bearer <token>`` (UNAUTHENTICATED otherwise), health checking
reports ``evgrid.v1.CoordinatorService`` SERVING while the server runs, keepalive and the
message-size limits are set on both ends. Use ``server_credentials`` (TLS) outside loopback:
a bearer token on a plaintext channel is readable by anyone on the path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from evgrid.agents.coordinated import station_specs
from evgrid.agents.edge import fallback_schedule
from evgrid.agents.station import StationConfig, StationPack, StationState
from evgrid.coordinator.admm import PowerCoordinator
from evgrid.coordinator.driver import MixedStations, StationTransport
from evgrid.coordinator.messages import ConsensusTargets, PowerProposals, Registration
from evgrid.envs.world import World
from evgrid.transport import codec
from evgrid.transport.codec import MessageError
from evgrid.transport.pb import coordinator_pb2 as pb
from evgrid.transport.pb import coordinator_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The service name health checking reports.
SERVICE_NAME = "evgrid.v1.CoordinatorService"
#: Largest message either side accepts: a PeriodStart of a big station (n EVs × H steps) fits.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: Server keepalive: ping idle links every 20 s and drop them after 10 s without an answer, so a
#: vanished edge node is noticed; accept the clients' pings every 5 s (they ping every 10 s).
SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
#: Slack on the sync side's wait beyond the loop-side timeout (thread hop, scheduling).
_BRIDGE_SLACK_S = 5.0


def status_code(name: str) -> grpc.StatusCode:
    """The gRPC status named by a ``MessageError.code`` (UNKNOWN for a name gRPC lacks)."""
    return grpc.StatusCode.__members__.get(name, grpc.StatusCode.UNKNOWN)


# -- authentication -----------------------------------------------------------------------------
class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuse every RPC whose ``authorization`` metadata is not ``Bearer <token>``.

    The refusal keeps the method's own handler kind and (de)serialisers, so a stream call is
    answered as a stream call with UNAUTHENTICATED before any message is read.
    """

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("an empty token would let anyone in; give a non-empty token")
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        got: str | bytes = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                got = value
        got_b = got.encode() if isinstance(got, str) else got
        if hmac.compare_digest(got_b, self._expected):
            return handler
        return _refusal(handler)


def _refusal(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    async def refuse(_request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "missing or wrong bearer token (metadata authorization: Bearer <token>)",
        )

    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(bool(handler.request_streaming), bool(handler.response_streaming))]
    return make(
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


# -- the hub ------------------------------------------------------------------------------------
#: Outbox items: a message to write, an error to abort with, or None to end the stream (OK).
_Outgoing = pb.ExchangeResponse | MessageError | None


@dataclass(eq=False)
class _Session:
    """One live Exchange stream (lives on the server loop)."""

    agent_id: str
    outbox: asyncio.Queue[_Outgoing] = field(default_factory=asyncio.Queue)
    period: int = -1  # id of the last period whose PeriodStart this stream received
    start: int = -1  # horizon start of that period
    unanswered: set[tuple[int, int]] = field(default_factory=set)  # asked (start, round)
    proposal: asyncio.Future[PowerProposals | None] | None = None  # this round's answer, checked
    executed: asyncio.Future[np.ndarray | None] | None = None  # this period's set-points
    done_step: int = -1  # step of the last done target sent
    agreed_kw: float = 0.0  # agreed power of that done target
    closed: bool = False


@dataclass
class HubStats:
    """What the hub refused, dropped or replaced (for logs, KPIs and tests)."""

    refused: dict[str, int] = field(default_factory=dict)  # status code -> streams aborted
    late_proposals: int = 0  # answers that arrived after their round's deadline (dropped)
    missing_proposals: int = 0  # targets sent but not answered in time
    fallbacks: int = 0  # stations whose schedule this side computed from their envelope


class GrpcStations:
    """The edge stations connected to one server, as a ``StationTransport`` (module docstring).

    Public methods are synchronous and must be called from outside the server's loop (the
    simulation thread); everything they touch lives on that loop, so no locks are needed.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        grid_zones: list[str],
        dt_h: float,
        round_timeout_s: float,
        station_ids: Iterable[str] | None = None,
    ) -> None:
        self.loop = loop
        self.grid_zones = list(grid_zones)
        self.dt_h = dt_h
        self.round_timeout_s = round_timeout_s
        self.station_ids = None if station_ids is None else set(station_ids)
        self.stats = HubStats()
        self._registry: dict[str, Registration] = {}
        self._sessions: dict[str, _Session] = {}
        self._states: dict[str, StationState] = {}
        self._period = 0
        self._start = -1
        self._round = -1
        self._horizon = 0
        self._plans: dict[str, np.ndarray] = {}
        self._envelopes: dict[str, tuple[int, np.ndarray]] = {}  # last acknowledged (start, z)
        self._telemetry: dict[str, pb.Telemetry] = {}
        self._coordinator: PowerCoordinator | None = None
        self._closed = False  # registrations closed: the coordinator has sized its problem
        self.last_fallback: set[str] = set()  # stations the last finish_period fell back for

    # -- sync side (simulation thread) ----------------------------------------------------------
    def _call(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        if _running_loop() is self.loop:
            raise RuntimeError("GrpcStations' sync methods block; call them off the server loop")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise

    def attach(self, coordinator: PowerCoordinator) -> None:
        """Read the agreed envelopes (z over the horizon) from ``coordinator`` in
        ``finish_period``: the protocol's ``agreed_kw`` only carries the first step, and the
        envelope is what a station falls back on. Without it the envelope is the agreed power
        for this step and 0 after it (safe, but the fallback then stops after one step)."""
        self._coordinator = coordinator

    def registrations(self) -> list[Registration]:
        """The stations registered so far (registration order)."""
        return self._call(self._sync(lambda: list(self._registry.values())), 10.0)

    def close_registrations(self) -> list[Registration]:
        """Freeze the set of edge stations and return it: the coordinator sizes its problem
        on it, so a station that registers later is refused (FAILED_PRECONDITION) instead of
        silently joining half a run. Registered stations may still re-register and reconnect."""

        def close() -> list[Registration]:
            self._closed = True
            return list(self._registry.values())

        return self._call(self._sync(close), 10.0)

    def connected(self) -> list[str]:
        """Stations with a live Exchange stream."""
        return self._call(self._sync(lambda: list(self._sessions)), 10.0)

    def telemetry(self) -> dict[str, pb.Telemetry]:
        """The last telemetry message of each station."""
        return self._call(self._sync(lambda: dict(self._telemetry)), 10.0)

    def envelopes(self) -> dict[str, tuple[int, np.ndarray]]:
        """Each station's last acknowledged envelope: (start step, z [kW per step])."""
        return self._call(self._sync(lambda: dict(self._envelopes)), 10.0)

    def wait_for_stations(self, count: int, timeout_s: float) -> int:
        """Block until ``count`` stations are registered and connected, or ``timeout_s``;
        return how many are."""
        return self._call(self._wait_for(count, timeout_s), timeout_s + _BRIDGE_SLACK_S)

    def begin_period(self, states: dict[str, Any]) -> None:
        """Stage this period's states; they travel with the first target (module docstring)."""
        self._call(self._sync(lambda: self._begin(states)), 10.0)

    def propose(self, targets: ConsensusTargets) -> PowerProposals:
        """Send one round's targets; return the proposals that came back valid and in time."""
        return self._call(self._propose(targets), self.round_timeout_s + _BRIDGE_SLACK_S)

    def finish_period(
        self, agreed_kw: dict[str, float] | None = None
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Done targets out, executed set-points back; fallbacks for the silent ones."""
        c = self._coordinator
        consensus = c.consensus() if c is not None else {}
        meta = (c.round if c is not None else self._round + 1, c.rho if c is not None else 0.0)
        return self._call(
            self._finish(agreed_kw, consensus, *meta), self.round_timeout_s + _BRIDGE_SLACK_S
        )

    # -- loop side ------------------------------------------------------------------------------
    @staticmethod
    async def _sync(fn: Callable[[], T]) -> T:
        return fn()

    async def _wait_for(self, count: int, timeout_s: float) -> int:
        deadline = self.loop.time() + timeout_s
        while len(self._sessions) < count and self.loop.time() < deadline:
            await asyncio.sleep(0.01)
        return len(self._sessions)

    def register(self, request: pb.RegisterRequest) -> pb.RegisterResponse:
        """Validate and record a registration (raises MessageError)."""
        reg = codec.registration_from_proto(request, self.grid_zones)
        if reg.kind != "station":
            raise MessageError("INVALID_ARGUMENT", "this server hosts station agents only")
        if self.station_ids is not None and reg.agent_id not in self.station_ids:
            raise MessageError(
                "NOT_FOUND",
                f"{reg.agent_id!r} is not a facility of this "
                f"scenario: one of {sorted(self.station_ids)}",
            )
        old = self._registry.get(reg.agent_id)
        if old is None and self._closed:
            raise MessageError(
                "FAILED_PRECONDITION",
                f"registration is closed: the run started "
                f"without {reg.agent_id!r}; it can join the next one",
            )
        if old is not None and old != reg:
            # The coordinator sized its problem on the first registration; a changed zone or
            # limit needs a new run, not a silent swap.
            raise MessageError("ALREADY_EXISTS", f"{reg.agent_id!r} is registered as {old}")
        self._registry[reg.agent_id] = reg
        log.info("registered %s (zone %s, %.1f kW)", reg.agent_id, reg.grid_zone, reg.max_power_kw)
        return pb.RegisterResponse(
            agent_id=reg.agent_id, grid_zones=self.grid_zones, dt_h=self.dt_h
        )

    async def serve_stream(self, context: grpc.aio.ServicerContext) -> None:
        """One station's Exchange: Hello, then a writer (here) and a reader (a task)."""
        first = await context.read()
        if first is grpc.aio.EOF or first.WhichOneof("body") != "hello":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first message on Exchange must be Hello"
            )
        agent = first.hello.agent_id
        if agent not in self._registry:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                f"agent {agent!r} is not registered: call Register first",
            )
        session = self._open(agent)
        reader = asyncio.create_task(self._read_loop(context, session))
        try:
            while True:
                item = await session.outbox.get()
                if item is None:
                    return
                if isinstance(item, MessageError):
                    await context.abort(status_code(item.code), str(item))
                await context.write(item)
        finally:
            reader.cancel()
            self._close(session)

    def _open(self, agent: str) -> _Session:
        old = self._sessions.get(agent)
        if old is not None:
            # The newest stream wins (a half-dead one may linger until keepalive notices); the
            # old one is told why, so a second process with the same id stops instead of
            # fighting for the slot.
            self._close(old)
            old.outbox.put_nowait(
                MessageError("ALREADY_EXISTS", f"a newer Exchange stream for {agent!r} took over")
            )
        session = _Session(agent)
        self._sessions[agent] = session
        log.info("%s connected", agent)
        return session

    def _close(self, session: _Session) -> None:
        """Forget a stream: it counts as missing from now on (idempotent)."""
        if session.closed:
            return
        session.closed = True
        if self._sessions.get(session.agent_id) is session:
            del self._sessions[session.agent_id]
            log.info("%s disconnected", session.agent_id)
        for fut in (session.proposal, session.executed):
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def _read_loop(self, context: grpc.aio.ServicerContext, session: _Session) -> None:
        try:
            while True:
                msg = await context.read()
                if msg is grpc.aio.EOF:
                    break
                try:
                    self._dispatch(session, msg)
                except MessageError as exc:
                    log.warning("refusing %s: %s %s", session.agent_id, exc.code, exc)
                    self.stats.refused[exc.code] = self.stats.refused.get(exc.code, 0) + 1
                    self._close(session)
                    session.outbox.put_nowait(exc)
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the stream broke under us: same as a hang-up
            log.info("%s: stream ended: %r", session.agent_id, exc)
        self._close(session)
        session.outbox.put_nowait(None)

    def _dispatch(self, session: _Session, msg: pb.ExchangeRequest) -> None:
        kind = msg.WhichOneof("body")
        body = getattr(msg, kind) if kind else None
        if kind in ("proposal", "executed", "telemetry") and body.agent_id != session.agent_id:
            raise MessageError(
                "PERMISSION_DENIED",
                f"stream of {session.agent_id!r} sent a {kind} for {body.agent_id!r}",
            )
        if kind == "proposal":
            self._on_proposal(session, msg.proposal)
        elif kind == "executed":
            self._on_executed(session, msg.executed)
        elif kind == "telemetry":
            self._telemetry[session.agent_id] = msg.telemetry
        else:
            raise MessageError(
                "INVALID_ARGUMENT", f"unexpected {kind or 'empty'} message after Hello"
            )

    def _on_proposal(self, session: _Session, msg: pb.Proposal) -> None:
        key = (msg.horizon_start, msg.round)
        current = key == (self._start, self._round)
        waiting = session.proposal is not None and not session.proposal.done()
        if key in session.unanswered and not (current and waiting):
            # Asked, never answered, deadline passed: slow is not malicious, just missing.
            session.unanswered.discard(key)
            self.stats.late_proposals += 1
            return
        decoded = codec.check_proposal(
            msg,
            registry=self._registry,
            round=self._round,
            horizon_start=self._start,
            horizon=self._horizon,
        )
        if key not in session.unanswered or session.proposal is None:
            raise MessageError(
                "FAILED_PRECONDITION",
                f"round {msg.round} at step {msg.horizon_start} was not asked or "
                "was already answered",
            )
        session.unanswered.discard(key)
        session.proposal.set_result(decoded)

    def _on_executed(self, session: _Session, msg: pb.SetpointSchedule) -> None:
        fut = session.executed
        if fut is None or fut.done():
            if msg.step == session.done_step:
                return  # the answer to a done target whose deadline passed
            raise MessageError(
                "FAILED_PRECONDITION", f"no set-points were asked for step {msg.step}"
            )
        state = self._states.get(session.agent_id)
        if state is None:
            raise MessageError("FAILED_PRECONDITION", "no period is open for this station")
        fut.set_result(codec.check_executed(msg, state=state, agreed_kw=session.agreed_kw))

    def _begin(self, states: dict[str, Any]) -> None:
        self._states = dict(states)
        self._period += 1
        self._round = -1
        starts = {st.horizon_start for st in self._states.values()}
        if len(starts) > 1:
            raise ValueError(f"station states of one period start at different steps: {starts}")
        self._start = starts.pop() if starts else self._start

    async def _propose(self, targets: ConsensusTargets) -> PowerProposals:
        self._round, self._start = targets.round, targets.horizon_start
        self._horizon = int(targets.horizon)
        asked: dict[str, asyncio.Future[PowerProposals | None]] = {}
        for i, agent in enumerate(targets.agent_ids):
            session, state = self._sessions.get(agent), self._states.get(agent)
            if session is None or state is None:
                continue
            target = codec.target_to_proto(targets, i)
            if session.period != self._period:
                msg = pb.ExchangeResponse(
                    period=pb.PeriodStart(
                        horizon_start=targets.horizon_start,
                        horizon_steps=self._horizon,
                        state=codec.state_to_proto(state),
                        target=target,
                    )
                )
                # Keep only the previous period's open asks (their late answers are dropped
                # quietly); older ones can no longer arrive in a sane stream.
                session.unanswered = {k for k in session.unanswered if k[0] == session.start}
                session.period, session.start = self._period, targets.horizon_start
            else:
                msg = pb.ExchangeResponse(target=target)
            session.proposal = self.loop.create_future()
            session.unanswered.add((targets.horizon_start, targets.round))
            session.outbox.put_nowait(msg)
            asked[agent] = session.proposal
        if asked:
            await asyncio.wait(asked.values(), timeout=self.round_timeout_s)
        answers = []
        for agent, fut in asked.items():
            session = self._sessions.get(agent)
            if session is not None and session.proposal is fut:
                session.proposal = None
            if fut.done() and fut.result() is not None:
                answers.append(fut.result())
            else:
                fut.cancel()
                self.stats.missing_proposals += 1
        props = PowerProposals.concat(answers, round=targets.round,
                                      horizon_start=targets.horizon_start, horizon=self._horizon)
        for i, agent in enumerate(props.agent_ids):
            self._plans[agent] = props.plan_kw[i]
        return props

    async def _finish(
        self,
        agreed_kw: dict[str, float] | None,
        consensus: dict[str, np.ndarray],
        round: int,
        rho: float,
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        asked: dict[str, tuple[asyncio.Future[np.ndarray | None], np.ndarray]] = {}
        for agent, state in self._states.items():
            session = self._sessions.get(agent)
            if session is None or session.period != self._period:
                continue  # never got this period: it is running on its old envelope
            h = state.horizon
            plan = self._plans.get(agent)
            first = float(plan[0]) if plan is not None and plan.size == h and h else 0.0
            agreed = max((agreed_kw or {}).get(agent, first), 0.0)
            z = consensus.get(agent)
            env = np.array(z, dtype=float) if z is not None and z.size == h else np.zeros(h)
            if h:
                env[0] = agreed  # the executed power is what agreed_kw says, whatever z[0] was
            msg = pb.ExchangeResponse(
                target=pb.ConsensusTarget(
                    round=round,
                    agent_id=agent,
                    horizon_start=state.horizon_start,
                    z_kw=env.tolist(),
                    u=[0.0] * h,
                    rho=rho,
                    price_signal=[0.0] * h,
                    done=True,
                    alpha=1.0,  # nothing left to relax: this target is executed, not answered
                )
            )
            session.executed = self.loop.create_future()
            session.done_step, session.agreed_kw = state.horizon_start, agreed
            session.outbox.put_nowait(msg)
            asked[agent] = (session.executed, env)
        if asked:
            await asyncio.wait([f for f, _ in asked.values()], timeout=self.round_timeout_s)
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.last_fallback = set()
        for agent, state in self._states.items():
            fut, env = asked.get(agent, (None, None))
            session = self._sessions.get(agent)
            if session is not None and session.executed is fut:
                session.executed = None
            if fut is not None and fut.done() and fut.result() is not None and env is not None:
                out[agent] = (state.charger, fut.result())
                self._envelopes[agent] = (state.horizon_start, env)
                continue
            if fut is not None:
                fut.cancel()
            start, env_old = self._envelopes.get(agent, (-1, np.zeros(0)))
            out[agent] = fallback_schedule(state, env_old, start, state.horizon_start)
            self.last_fallback.add(agent)
            self.stats.fallbacks += 1
        return out


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# -- servicer (thin) ----------------------------------------------------------------------------
class CoordinatorServicer(pb_grpc.CoordinatorServiceServicer):
    """Hands each RPC to the hub; turns ``MessageError`` into the status it names."""

    def __init__(self, hub: GrpcStations) -> None:
        self.hub = hub

    async def Register(
        self, request: pb.RegisterRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterResponse:
        try:
            return self.hub.register(request)
        except MessageError as exc:
            await context.abort(status_code(exc.code), str(exc))
            raise  # unreachable: abort raises

    async def Exchange(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        await self.hub.serve_stream(context)


# -- server -------------------------------------------------------------------------------------
class EdgeServer:
    """The aio server and the thread running its loop; ``stop()`` ends both (idempotent)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        thread: threading.Thread,
        server: grpc.aio.Server,
        health: health_aio.HealthServicer,
    ) -> None:
        self.loop, self.thread, self.server, self.health = loop, thread, server, health
        self._stopped = False

    def stop(self, grace_s: float | None = 0.5) -> None:
        if self._stopped:
            return
        self._stopped = True

        async def shutdown() -> None:
            await self.health.enter_graceful_shutdown()
            await self.server.stop(grace_s)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result((grace_s or 0) + 10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            if not self.thread.is_alive():
                self.loop.close()

    def __enter__(self) -> EdgeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def create_server(
    address: str,
    *,
    grid_zones: list[str],
    dt_h: float,
    token: str,
    round_timeout_s: float = 2.0,
    station_ids: Iterable[str] | None = None,
    server_credentials: grpc.ServerCredentials | None = None,
    options: list[tuple[str, int]] | None = None,
) -> tuple[EdgeServer, int, GrpcStations]:
    """Start the coordinator's server on ``address`` ("host:port"; port 0 picks a free one).

    Returns (server, bound port, hub). ``station_ids`` (the scenario's facilities) restricts
    who may register; ``round_timeout_s`` is how long a round waits for late stations.
    """
    interceptor = BearerTokenInterceptor(token)  # refuses an empty token before any thread starts
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="evgrid-grpc-server", daemon=True)
    thread.start()

    async def build() -> tuple[grpc.aio.Server, int, GrpcStations, health_aio.HealthServicer]:
        hub = GrpcStations(
            loop,
            grid_zones=grid_zones,
            dt_h=dt_h,
            round_timeout_s=round_timeout_s,
            station_ids=station_ids,
        )
        server = grpc.aio.server(interceptors=[interceptor], options=options or SERVER_OPTIONS)
        pb_grpc.add_CoordinatorServiceServicer_to_server(CoordinatorServicer(hub), server)
        health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        if server_credentials is not None:
            port = server.add_secure_port(address, server_credentials)
        else:
            port = server.add_insecure_port(address)
        await server.start()
        await health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        return server, port, hub, health

    try:
        server, port, hub, health = asyncio.run_coroutine_threadsafe(build(), loop).result(30)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        raise
    log.info("coordinator listening on port %d", port)
    return EdgeServer(loop, thread, server, health), port, hub


def edge_transport(
    hub: GrpcStations,
    local: Callable[[list[str], list[str], list[float], StationConfig], StationTransport]
    | None = None,
) -> Callable[[World, StationConfig], StationTransport]:
    """A ``CoordinatedPolicy(stations=...)`` factory: the hub's registered edge stations plus
    ``local(ids, zones, caps, config)`` for every other facility of the world (default: an
    in-process ``StationPack``; ``RayStations`` gives the Ray-actors + gRPC-edge mix), as one
    transport.

    Building it closes the hub's registrations, so the split cannot change under the run.
    Edge nodes solve with their own ``StationConfig`` (built from the same scenario); the
    in-process pack gets the policy's.
    """

    def build(world: World, config: StationConfig) -> StationTransport:
        ids, zones, caps = station_specs(world)
        edge = {r.agent_id for r in hub.close_registrations()}
        parts: list[StationTransport] = [hub] if edge else []
        rest = [i for i, sid in enumerate(ids) if sid not in edge]
        if rest:
            parts.append((local or StationPack)(
                [ids[i] for i in rest], [zones[i] for i in rest], [caps[i] for i in rest], config))
        return MixedStations(parts)

    return build
