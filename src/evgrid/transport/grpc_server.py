"""The coordinator's gRPC server: edge stations over ``CoordinatorService``, as a station transport.

``create_server`` starts a ``grpc.aio`` server on an event loop of its own, in a background
thread, and returns a :class:`GrpcStations` hub that implements the ``StationTransport``
protocol (``evgrid.coordinator.driver``) for the edge stations connected to it. The hub's
methods are *synchronous*: the simulation thread calls them exactly as it calls an in-process
``StationPack`` and they hop onto the server's loop with ``run_coroutine_threadsafe``. So the
same ``solve_period`` / ``CoordinatedPolicy`` drive in-process, Ray and gRPC stations.

Protocol (one ``Exchange`` stream per station; the servicer is thin, the hub does the work):

* Credentials come first (``evgrid.transport.auth``): an interceptor refuses a call without
  them (UNAUTHENTICATED) before a byte of its message is read, and health checking needs none.
  Messages arrive as raw bytes and are parsed by the handlers, so undecodable bytes are
  INVALID_ARGUMENT, never UNKNOWN. A caller may act only as its own station
  (PERMISSION_DENIED); a shared token may act as any (loopback experiments).
* ``Register`` (unary) checks the registration against the coordinator's own city file: the
  zone, rated power and charger count are the file's, never the station's; a claim that differs
  is INVALID_ARGUMENT, an unknown facility NOT_FOUND. Then the station opens ``Exchange`` and
  sends ``Hello`` within ``hello_timeout_s`` (DEADLINE_EXCEEDED otherwise). An unregistered
  agent is refused with UNAUTHENTICATED; a second stream for a station whose stream is live is
  refused with ALREADY_EXISTS (it never takes over); more than ``streams_per_client`` streams
  of one caller are RESOURCE_EXHAUSTED.
* ``begin_period(states)`` stages each station's simulated state; the first ``propose`` of the
  period sends it a ``PeriodStart`` that carries the state *and* its round-0 target (one
  message instead of two). Later rounds send a bare ``ConsensusTarget``. A station that
  (re)connects mid-period gets a ``PeriodStart`` with the current round's target.
* ``propose`` waits up to ``round_timeout_s`` for the proposals (not for stations on
  probation). Each is checked by ``codec.check_proposal``; a bad one aborts *that* stream with
  the codec's status code and the others carry on. Late stations are simply missing (the
  coordinator keeps their last proposal, and drops them after a few rounds); a late answer
  that arrives after its deadline is dropped, not punished. Stations without a live stream are
  ``unreachable``: dropped before round 0, their fallback reserved.
* ``finish_period`` sends each station a done target whose z over the horizon is its envelope,
  and collects the executed ``SetpointSchedule`` (stations dropped this period are waited for
  only ``probation_grace``). A station that does not answer in time is executed on this side
  least laxity first within its agreed power: its edge node drew that (it got the done target)
  or nothing (it did not: it draws nothing at the step of a period it saw start and not finish),
  never more than the coordinator counted. Such a station is ``unconfirmed``: next period the
  larger of its old and new envelopes is what is reserved for it if it is silent.
* At the end of the run ``farewell`` tells every station, which then stops instead of running
  on its fallback.

Health checking reports ``evgrid.v1.CoordinatorService`` SERVING while the server runs;
keepalive and the message-size limits are set on both ends. Use TLS outside loopback: a
bearer token on a plaintext channel is readable by anyone on the path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import logging
import math
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import numpy as np
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from evgrid.agents.coordinated import station_chargers, station_specs
from evgrid.agents.dispatch import make_dispatch
from evgrid.agents.station import (
    Dispatch,
    StationConfig,
    StationPack,
    StationState,
    setpoints_within,
)
from evgrid.coordinator.driver import (
    Executed,
    MixedStations,
    StationTransport,
    TransportStats,
    WarmTable,
    probation_grace,
)
from evgrid.coordinator.fallback import Envelope
from evgrid.coordinator.messages import ConsensusTargets, PowerProposals, Registration
from evgrid.envs.world import World
from evgrid.transport import codec
from evgrid.transport.auth import ANY_STATION, Authenticator, may_act_as
from evgrid.transport.codec import MessageError
from evgrid.transport.pb import coordinator_pb2 as pb

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=Message)

#: The service name health checking reports.
SERVICE_NAME = "evgrid.v1.CoordinatorService"
#: Largest message a station receives: a PeriodStart of a big station (n EVs × H steps) fits.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: Largest message the coordinator receives: a proposal of a day at 1-min steps is ≈40 kB, the
#: set-points of a 100,000-charger station ≈1.2 MB; anything bigger is refused unread.
MAX_INBOUND_BYTES = 4 * 1024 * 1024
#: How long a new Exchange stream may take to say Hello (DEADLINE_EXCEEDED after).
HELLO_TIMEOUT_S = 10.0
#: Messages queued for one station before its stream is ended (RESOURCE_EXHAUSTED): a client
#: that keeps its connection alive but never reads must not pile up period starts of megabytes.
OUTBOX_MESSAGES = 64
#: Server keepalive: ping idle links every 20 s and drop them after 10 s without an answer, so a
#: vanished edge node is noticed; accept the clients' pings every 5 s (they ping every 10 s).
SERVER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_INBOUND_BYTES),
]
#: Slack on the sync side's wait beyond the loop-side timeout (thread hop, scheduling).
_BRIDGE_SLACK_S = 5.0


def status_code(name: str) -> grpc.StatusCode:
    """The gRPC status named by a ``MessageError.code`` (UNKNOWN for a name gRPC lacks)."""
    return grpc.StatusCode.__members__.get(name, grpc.StatusCode.UNKNOWN)


def host_port(host: str, port: int) -> str:
    """``host:port`` as gRPC parses it: an IPv6 literal goes in brackets (``[::1]:50051``)."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    h = host.strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


# -- authentication -----------------------------------------------------------------------------
async def _refuse_unauthenticated(_requests: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort(
        grpc.StatusCode.UNAUTHENTICATED,
        "missing or unknown credentials (metadata authorization: Bearer <token>, "
        "or a client certificate)",
    )


#: A stream handler reads nothing before it runs, whatever the method: the refusal of an
#: unauthenticated call costs no message read, let alone a parse.
_REFUSAL = grpc.stream_stream_rpc_method_handler(_refuse_unauthenticated)


#: The one call that needs no credentials: a load balancer or an operator's probe holds no
#: station's token. Only the unary Check: Watch is a stream that stays open, and unauthenticated
#: open streams would use up the calls the stations need.
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


class CredentialsInterceptor(grpc.aio.ServerInterceptor):
    """Refuse every call without credentials before any message is read (but health Check);
    ``on_refuse`` hears of each refusal (logged and counted, so an intruder is visible)."""

    def __init__(self, auth: Authenticator, on_refuse: Callable[[str], None] | None = None,
                 ) -> None:
        self.auth = auth
        self.on_refuse = on_refuse

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method or ""
        if method == HEALTH_CHECK or self.auth.admits(handler_call_details.invocation_metadata):
            return await continuation(handler_call_details)
        if self.on_refuse is not None:
            self.on_refuse(method)
        return _REFUSAL


def _parse(cls: type[M], raw: bytes) -> M:
    """A message from raw bytes; undecodable bytes are INVALID_ARGUMENT."""
    try:
        return cls.FromString(raw)
    except (DecodeError, RuntimeWarning) as exc:
        raise MessageError("INVALID_ARGUMENT",
                           f"undecodable {cls.__name__} ({len(raw)} bytes): {exc}") from None


# -- the hub ------------------------------------------------------------------------------------
#: Outbox items: a message to write, an error to abort with, or None to end the stream (OK).
_Outgoing = pb.ExchangeResponse | MessageError | None


@dataclass(eq=False)
class _Session:
    """One live Exchange stream (lives on the server loop)."""

    agent_id: str
    outbox: asyncio.Queue[_Outgoing] = field(
        default_factory=lambda: asyncio.Queue(maxsize=OUTBOX_MESSAGES))
    period: int = -1  # id of the last period whose PeriodStart this stream received
    start: int = -1  # horizon start of that period
    unanswered: set[tuple[int, int]] = field(default_factory=set)  # asked (start, round)
    proposal: asyncio.Future[PowerProposals | None] | None = None  # this round's answer, checked
    executed: asyncio.Future[np.ndarray | None] | None = None  # this period's set-points
    done_step: int = -1  # step of the last done target sent
    agreed_kw: float = 0.0  # agreed power of that done target
    closed: bool = False


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
        stations: Iterable[Registration],
        auth: Authenticator,
        hello_timeout_s: float = HELLO_TIMEOUT_S,
        streams_per_client: int = 2,
    ) -> None:
        self.loop = loop
        self.grid_zones = list(grid_zones)
        self.dt_h = dt_h
        self.round_timeout_s = round_timeout_s
        #: Field mode: stations claim their states (``begin_field_period``).
        self.field = False
        #: What the coordinator executes for a silent edge station (inside its agreed power):
        #: the rule, or its learned policy (``edge_transport`` with ``StationConfig.policy_dir``).
        self.dispatch: Dispatch = setpoints_within
        self.hello_timeout_s = hello_timeout_s
        self.auth = auth
        # The city file's stations: what a registration is checked against, and all it sets.
        self.specs: dict[str, Registration] = {r.agent_id: r for r in stations}
        # One live stream per station plus one reconnecting; a shared token holds them all.
        self.streams_per_client = streams_per_client
        self._streams: Counter[str] = Counter()  # open Exchange streams per principal
        self._last_refusal_log = -math.inf
        self._stats = TransportStats()
        self._registry: dict[str, Registration] = {}
        self._sessions: dict[str, _Session] = {}
        self._states: dict[str, StationState] = {}
        self._period = 0
        self._start = -1
        self._round = -1
        self._horizon = 0
        self._envelopes: dict[str, Envelope] = {}  # last envelope sent to each station
        self._telemetry: dict[str, pb.Telemetry] = {}
        self._closed = False  # registrations closed: the coordinator has sized its problem
        self.last_fallback: set[str] = set()  # stations the last finish_period fell back for

    @property
    def stats(self) -> TransportStats:
        """Refusals, late answers, fallbacks (read between periods, from the sim thread)."""
        return self._stats

    def _refused(self, code: str, what: str) -> None:
        """Count a refusal and say it in the log (an intruder must be visible), at most a few
        lines a second whatever the rate."""
        self._stats.refuse(code)
        now = self.loop.time()
        if now - self._last_refusal_log >= 0.2:
            self._last_refusal_log = now
            log.warning("refused (%s, %d so far): %s", code, sum(self._stats.refused.values()),
                        codec.clipped(what))

    # -- sync side (simulation thread) ----------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if _running_loop() is self.loop:
            raise RuntimeError("GrpcStations' sync methods block; call them off the server loop")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise

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

    def envelopes(self) -> dict[str, Envelope]:
        """Each station's last envelope sent: (start step, z [kW per step])."""
        return self._call(self._sync(lambda: dict(self._envelopes)), 10.0)

    def wait_for_stations(self, count: int, timeout_s: float) -> int:
        """Block until ``count`` stations are registered and connected, or ``timeout_s``;
        return how many are."""
        return self._call(self._wait_for(count, timeout_s), timeout_s + _BRIDGE_SLACK_S)

    def begin_period(self, states: Mapping[str, Any], *,
                     optional: frozenset[str] = frozenset()) -> None:
        """Stage this period's states; they travel with the first target (module docstring)."""
        self._call(self._sync(lambda: self._begin(states)), 10.0)

    def begin_field_period(self, horizon_start: int) -> None:
        """Open a field period: no states are sent, every connected station claims its own
        with its round-0 proposal (``evgrid.field.run``)."""

        def begin() -> None:
            self.field = True
            self._begin({})
            self._start = horizon_start

        self._call(self._sync(begin), 10.0)

    def warm_starts(self) -> WarmTable:
        """None here: each edge node keeps its own, and survives a coordinator restart."""
        return WarmTable.from_dict({})

    def load_warm_starts(self, warm: WarmTable) -> None:
        pass

    def farewell(self, reason: str, last_step: int, wait_s: float = 2.0) -> None:
        """Tell every connected station the run is over (they stop instead of falling back),
        and end their streams."""

        async def send() -> None:
            msg = pb.ExchangeResponse(farewell=pb.Farewell(reason=reason, last_step=last_step))
            sessions = list(self._sessions.values())
            for session in sessions:
                self._send(session, msg)
                self._end_after(session)
            deadline = self.loop.time() + wait_s
            while any(not s.outbox.empty() for s in sessions) and self.loop.time() < deadline:
                await asyncio.sleep(0.01)

        self._call(send(), wait_s + _BRIDGE_SLACK_S)

    def _end_after(self, session: _Session) -> None:
        """End a session once what is queued for it is written."""
        self._close(session)
        with contextlib.suppress(asyncio.QueueFull):
            session.outbox.put_nowait(None)

    def preregister(self, agent_ids: Iterable[str]) -> None:
        """Register stations on the city file's terms before they call (a resumed coordinator:
        its edge stations are out there on their fallback and will reconnect)."""

        def add() -> None:
            for a in agent_ids:
                self._registry[a] = self.specs[a]

        self._call(self._sync(add), 10.0)

    def unconfirmed(self) -> set[str]:
        """Stations whose done target of the last period went unanswered."""
        return set(self.last_fallback)

    def unreachable(self) -> set[str]:
        """Stations of this period without a live stream: not worth asking."""
        return self._call(self._sync(
            lambda: {a for a in (self._registry if self.field else self._states)
                     if a not in self._sessions}), 10.0)

    def propose(
        self, targets: ConsensusTargets, *, optional: frozenset[str] = frozenset()
    ) -> PowerProposals:
        """Send one round's targets; return the proposals that came back valid and in time
        (not waiting for ``optional`` stations)."""
        return self._call(self._propose(targets, optional),
                          self.round_timeout_s + _BRIDGE_SLACK_S)

    def finish_period(
        self, agreed_kw: Mapping[str, float] | None = None,
        envelopes: Mapping[str, np.ndarray] | None = None,
        *, optional: frozenset[str] = frozenset(),
    ) -> Executed:
        """Done targets out, executed set-points back; fallbacks for the silent ones (and
        ``optional`` ones, dropped this period, waited for only ``probation_grace``)."""
        return self._call(self._finish(dict(agreed_kw or {}), dict(envelopes or {}), optional),
                          self.round_timeout_s + _BRIDGE_SLACK_S)

    # -- loop side ------------------------------------------------------------------------------
    @staticmethod
    async def _sync(fn: Callable[[], T]) -> T:
        return fn()

    async def _wait_for(self, count: int, timeout_s: float) -> int:
        deadline = self.loop.time() + timeout_s
        while len(self._sessions) < count and self.loop.time() < deadline:
            await asyncio.sleep(0.01)
        return len(self._sessions)

    def register(self, raw: bytes, principal: str | None) -> pb.RegisterResponse:
        """Check a registration against the city file and record the file's terms (raises
        MessageError; module docstring)."""
        if principal is None:  # admitted by the handshake, but the certificate names no one
            raise MessageError("PERMISSION_DENIED", "the client certificate names no evgrid "
                               "station (SAN URI evgrid://station/<id>)")
        claim = codec.registration_from_proto(_parse(pb.RegisterRequest, raw), self.grid_zones)
        if claim.kind != "station":
            raise MessageError("INVALID_ARGUMENT", "this server hosts station agents only")
        if not may_act_as(principal, claim.agent_id):
            raise MessageError("PERMISSION_DENIED", f"the credentials of station {principal!r} "
                               f"cannot act as {claim.agent_id!r}")
        spec = self.specs.get(claim.agent_id)
        if spec is None:
            raise MessageError(
                "NOT_FOUND",
                f"{claim.agent_id!r} is not a facility of this scenario: one of "
                f"{sorted(self.specs)}",
            )
        codec.check_claim(claim, spec)
        old = self._registry.get(spec.agent_id)
        if old is None and self._closed:
            raise MessageError(
                "FAILED_PRECONDITION",
                f"registration is closed: the run started "
                f"without {spec.agent_id!r}; it can join the next one",
            )
        self._registry[spec.agent_id] = spec
        log.info("registered %s (zone %s, %.1f kW)", spec.agent_id, spec.grid_zone,
                 spec.max_power_kw)
        return pb.RegisterResponse(
            agent_id=spec.agent_id, grid_zones=self.grid_zones, dt_h=self.dt_h,
            grid_zone=spec.grid_zone, max_power_kw=spec.max_power_kw, chargers=spec.chargers)

    async def _refuse(self, context: grpc.aio.ServicerContext, code: str, why: str) -> None:
        """Count, log and end a stream before it is a session (abort raises)."""
        self._refused(code, f"Exchange from {context.peer()}: {why}")
        await context.abort(status_code(code), codec.clipped(why))

    async def serve_stream(self, context: grpc.aio.ServicerContext) -> None:
        """One station's Exchange: Hello, then a writer (here) and a reader (a task)."""
        principal = self.auth.principal(context.invocation_metadata(), context)
        if principal is None:  # the interceptor admitted it: only a certificate without an id
            await self._refuse(context, "PERMISSION_DENIED",
                               "the client certificate names no evgrid station")
        key = principal or ""
        limit = (self.streams_per_client if principal != ANY_STATION
                 else self.streams_per_client * max(len(self.specs), 1))
        if self._streams[key] >= limit:
            await self._refuse(context, "RESOURCE_EXHAUSTED",
                               f"{limit} Exchange streams of these credentials are open")
        self._streams[key] += 1
        try:
            await self._serve(context, principal)
        finally:
            self._streams[key] -= 1

    async def _serve(self, context: grpc.aio.ServicerContext, principal: str | None) -> None:
        try:
            raw = await asyncio.wait_for(context.read(), self.hello_timeout_s)
        except TimeoutError:
            await self._refuse(context, "DEADLINE_EXCEEDED",
                               f"no Hello within {self.hello_timeout_s:g} s")
            return
        first = None
        try:
            first = None if raw is grpc.aio.EOF else _parse(pb.ExchangeRequest, raw)
        except MessageError as exc:
            await self._refuse(context, "INVALID_ARGUMENT", str(exc))
        if first is None or first.WhichOneof("body") != "hello":
            await self._refuse(context, "INVALID_ARGUMENT",
                               "the first message on Exchange must be Hello")
            return
        agent = first.hello.agent_id
        if not may_act_as(principal, agent):
            await self._refuse(context, "PERMISSION_DENIED",
                               f"the credentials of station {principal!r} cannot act as {agent!r}")
        if agent not in self._registry:
            await self._refuse(context, "UNAUTHENTICATED",
                               f"agent {agent!r} is not registered: call Register first")
        if agent in self._sessions:
            # A live stream keeps its station: a second one never takes over (it would be
            # the way to hijack a station). A half-dead one ends by keepalive; retry then.
            await self._refuse(context, "ALREADY_EXISTS",
                               f"an Exchange stream for {agent!r} is live; a second one is "
                               "refused")
        session = self._open(agent)
        await context.write(pb.ExchangeResponse(welcome=pb.Welcome(agent_id=agent,
                                                                   step=self._start)))
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
                raw = await context.read()
                if raw is grpc.aio.EOF:
                    break
                try:
                    self._dispatch(session, _parse(pb.ExchangeRequest, raw))
                except MessageError as exc:
                    log.warning("refusing %s: %s %s", session.agent_id, exc.code, exc)
                    self._stats.refuse(exc.code)
                    self._end(session, exc)
                    return
        except asyncio.CancelledError:
            raise
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, ConnectionError) as exc:
            log.info("%s: stream ended: %r", session.agent_id, exc)  # same as a hang-up
        except Exception:  # evgrid's bug, not the station's: said loudly, never passed as OK
            log.exception("%s: internal error handling a message", session.agent_id)
            self._end(session, MessageError("INTERNAL", "internal error (logged)"))
            return
        self._end(session, None)

    def _send(self, session: _Session, msg: pb.ExchangeResponse) -> None:
        """Queue a message for a station; a station that does not read is cut off."""
        try:
            session.outbox.put_nowait(msg)
        except asyncio.QueueFull:
            log.warning("%s reads nothing: %d messages queued; ending its stream",
                        session.agent_id, OUTBOX_MESSAGES)
            self._stats.refuse("RESOURCE_EXHAUSTED")
            self._end(session, MessageError(
                "RESOURCE_EXHAUSTED", f"{OUTBOX_MESSAGES} messages unread: read your stream"))

    def _end(self, session: _Session, why: MessageError | None) -> None:
        """Close a session and tell its writer how the stream ends (None: OK)."""
        self._close(session)
        while not session.outbox.empty():  # what it did not read no longer matters
            session.outbox.get_nowait()
        session.outbox.put_nowait(why)

    def _dispatch(self, session: _Session, msg: pb.ExchangeRequest) -> None:
        kind = msg.WhichOneof("body")
        body = getattr(msg, kind) if kind else None
        if body is not None and kind in ("proposal", "executed", "telemetry", "claim") and (
                body.agent_id != session.agent_id):
            raise MessageError(
                "PERMISSION_DENIED",
                f"stream of {session.agent_id!r} sent a {kind} for {body.agent_id!r}",
            )
        if kind == "proposal":
            self._on_proposal(session, msg.proposal)
        elif kind == "executed":
            self._on_executed(session, msg.executed)
        elif kind == "claim":
            self._on_claim(session, msg.claim)
        elif kind == "telemetry":
            codec.check_telemetry(msg.telemetry, self._registry[session.agent_id])
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
            self._stats.late_proposals += 1
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

    def _on_claim(self, session: _Session, msg: pb.StationState) -> None:
        """Field mode: the station's own state for the period it was asked into without one."""
        if not self.field or (self._start, 0) not in session.unanswered:
            raise MessageError("FAILED_PRECONDITION", "a state claim outside a field period's "
                               "round 0")
        self._states[session.agent_id] = codec.check_state_claim(
            msg, self._registry[session.agent_id], horizon_start=self._start,
            horizon=self._horizon)

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

    def _begin(self, states: Mapping[str, Any]) -> None:
        self._states = dict(states)
        self._period += 1
        self._round = -1
        starts = {st.horizon_start for st in self._states.values()}
        if len(starts) > 1:
            raise ValueError(f"station states of one period start at different steps: {starts}")
        self._start = starts.pop() if starts else self._start

    async def _propose(
        self, targets: ConsensusTargets, optional: frozenset[str]
    ) -> PowerProposals:
        self._round, self._start = targets.round, targets.horizon_start
        self._horizon = int(targets.horizon)
        asked: dict[str, asyncio.Future[PowerProposals | None]] = {}
        for i, agent in enumerate(targets.agent_ids):
            session, state = self._sessions.get(agent), self._states.get(agent)
            if session is None or (state is None and not self.field):
                continue
            target = codec.target_to_proto(targets, i)
            if session.period != self._period:
                # In field mode the station reads its own state and claims it (_on_claim).
                msg = pb.ExchangeResponse(
                    period=pb.PeriodStart(
                        horizon_start=targets.horizon_start,
                        horizon_steps=self._horizon,
                        state=None if state is None else codec.state_to_proto(state),
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
            self._send(session, msg)
            asked[agent] = session.proposal
        required = [f for a, f in asked.items() if a not in optional]
        on_probation = [f for a, f in asked.items() if a in optional]
        t0 = self.loop.time()
        if required:
            await asyncio.wait(required, timeout=self.round_timeout_s)
        if on_probation:  # as long again as the others took (everyone on probation: as usual)
            grace = (probation_grace(self.loop.time() - t0) if required
                     else self.round_timeout_s)
            await asyncio.wait(on_probation, timeout=grace)
        answers: list[PowerProposals] = []
        for agent, fut in asked.items():
            session = self._sessions.get(agent)
            if session is not None and session.proposal is fut:
                session.proposal = None
            got = fut.result() if fut.done() and not fut.cancelled() else None
            if got is not None:
                answers.append(got)
            else:
                fut.cancel()  # missing: the coordinator counts it
        return PowerProposals.concat(answers, round=targets.round,
                                     horizon_start=targets.horizon_start, horizon=self._horizon)

    async def _finish(
        self, agreed_kw: dict[str, float], envelopes: dict[str, np.ndarray],
        optional: frozenset[str],
    ) -> Executed:
        asked: dict[str, asyncio.Future[np.ndarray | None]] = {}
        for agent, state in self._states.items():
            h = state.horizon
            env = envelopes.get(agent)
            env = (np.array(env, dtype=float) if env is not None and env.size == h
                   else np.zeros(h))
            agreed = max(agreed_kw.get(agent, 0.0), 0.0)
            if h:
                env[0] = agreed  # the executed power is what agreed_kw says, whatever z[0] was
            self._envelopes[agent] = Envelope(state.horizon_start, env)
            session = self._sessions.get(agent)
            if session is None or session.period != self._period:
                continue  # never got this period: it is running on its old envelope
            msg = pb.ExchangeResponse(
                target=pb.ConsensusTarget(
                    round=self._round + 1,
                    agent_id=agent,
                    horizon_start=state.horizon_start,
                    z_kw=env.tolist(),
                    u=[0.0] * h,
                    rho=0.0,
                    price_signal=[0.0] * h,
                    done=True,
                    alpha=1.0,  # nothing left to relax: this target is executed, not answered
                )
            )
            session.executed = self.loop.create_future()
            session.done_step, session.agreed_kw = state.horizon_start, agreed
            self._send(session, msg)
            asked[agent] = session.executed
        required = [f for a, f in asked.items() if a not in optional]
        late = [f for a, f in asked.items() if a in optional]
        t0 = self.loop.time()
        if required:
            await asyncio.wait(required, timeout=self.round_timeout_s)
        if late:
            await asyncio.wait(late, timeout=probation_grace(self.loop.time() - t0)
                               if required else self.round_timeout_s)
        out: Executed = {}
        self.last_fallback = set()
        for agent, state in self._states.items():
            fut = asked.get(agent)
            session = self._sessions.get(agent)
            if session is not None and fut is not None and session.executed is fut:
                session.executed = None
            kw = fut.result() if fut is not None and fut.done() and not fut.cancelled() else None
            if kw is not None:
                out[agent] = (state.charger, kw)
                continue
            if fut is not None:
                fut.cancel()
            # Silent: the simulation executes what the coordinator counted for it. Its edge node
            # draws that (it got the done target) or nothing (it did not: EdgeStation.fallback
            # at a pending step), never more.
            out[agent] = self.dispatch(state, max(agreed_kw.get(agent, 0.0), 0.0))
            self.last_fallback.add(agent)
            self._stats.fallbacks += 1
        return out


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


# -- servicer (thin) ----------------------------------------------------------------------------
class CoordinatorServicer:
    """Hands each RPC (raw bytes) to the hub; turns ``MessageError`` into the status it names."""

    def __init__(self, hub: GrpcStations) -> None:
        self.hub = hub

    async def Register(self, raw: bytes, context: grpc.aio.ServicerContext) -> pb.RegisterResponse:
        try:
            principal = self.hub.auth.principal(context.invocation_metadata(), context)
            return self.hub.register(raw, principal)
        except MessageError as exc:
            self.hub._refused(exc.code, f"Register from {context.peer()}: {exc}")
            await context.abort(status_code(exc.code), str(exc))
            raise  # unreachable: abort raises

    async def Exchange(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        await self.hub.serve_stream(context)

    def handler(self) -> grpc.GenericRpcHandler:
        """The service with raw-bytes requests: the handlers parse, so that bad bytes get
        INVALID_ARGUMENT and nothing is parsed before credentials are checked."""
        return grpc.method_handlers_generic_handler(SERVICE_NAME, {
            "Register": grpc.unary_unary_rpc_method_handler(
                self.Register, response_serializer=pb.RegisterResponse.SerializeToString),
            "Exchange": grpc.stream_stream_rpc_method_handler(
                self.Exchange, response_serializer=pb.ExchangeResponse.SerializeToString),
        })


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
            # What is left on the loop (a stream's reader) ends here, not destroyed pending.
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

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
    stations: Iterable[Registration],
    token: str | None = None,
    auth: Authenticator | None = None,
    round_timeout_s: float = 2.0,
    hello_timeout_s: float = HELLO_TIMEOUT_S,
    server_credentials: grpc.ServerCredentials | None = None,
    options: list[tuple[str, int]] | None = None,
) -> tuple[EdgeServer, int, GrpcStations]:
    """Start the coordinator's server on ``address`` ("host:port"; port 0 picks a free one;
    ``host_port`` brackets an IPv6 host).

    Returns (server, bound port, hub). ``stations`` are the city file's stations: the only ones
    that may register, on the file's terms. Credentials: ``auth``, or a shared ``token``
    (loopback experiments). ``round_timeout_s`` is how long a round waits for late stations.
    """
    auth = auth or Authenticator(shared_token=token)  # refuses no credentials before any thread
    if auth.client_certs and server_credentials is None:
        raise ValueError("client certificates need TLS: give server_credentials that require "
                         "them (tls.server_credentials(..., client_ca=...))")
    stations = list(stations)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="evgrid-grpc-server", daemon=True)
    thread.start()

    async def build() -> tuple[grpc.aio.Server, int, GrpcStations, health_aio.HealthServicer]:
        hub = GrpcStations(
            loop,
            grid_zones=grid_zones,
            dt_h=dt_h,
            round_timeout_s=round_timeout_s,
            stations=stations,
            auth=auth,
            hello_timeout_s=hello_timeout_s,
        )
        # Every call in flight holds at most one inbound message: bounded memory whatever
        # the callers do (a registered fleet needs two calls per station at most).
        interceptor = CredentialsInterceptor(
            auth, on_refuse=lambda method: hub._refused("UNAUTHENTICATED",
                                                        f"a call to {method} without credentials"))
        server = grpc.aio.server(interceptors=[interceptor],
                                 options=options or SERVER_OPTIONS,
                                 maximum_concurrent_rpcs=2 * len(stations) + 64)
        server.add_generic_rpc_handlers((CoordinatorServicer(hub).handler(),))
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
    local: Callable[..., StationTransport] | None = None,
) -> Callable[[World, StationConfig], StationTransport]:
    """A ``CoordinatedPolicy(stations=...)`` factory: the hub's registered edge stations plus
    ``local(ids, zones, caps, config, chargers=...)`` for every other facility of the world
    (default: an in-process ``StationPack``; ``RayStations`` gives the Ray-actors + gRPC-edge
    mix), as one transport.

    Building it closes the hub's registrations, so the split cannot change under the run.
    Edge nodes solve with their own ``StationConfig`` (built from the same scenario); the
    in-process pack gets the policy's.
    """

    def build(world: World, config: StationConfig) -> StationTransport:
        ids, zones, caps = station_specs(world)
        chargers = station_chargers(world)
        edge = {r.agent_id for r in hub.close_registrations()}
        if config.policy_dir is not None:
            hub.dispatch = make_dispatch(config.policy_dir, sorted(edge))
        parts: list[StationTransport] = [hub] if edge else []
        rest = [i for i, sid in enumerate(ids) if sid not in edge]
        if rest:
            parts.append((local or StationPack)(
                [ids[i] for i in rest], [zones[i] for i in rest], [caps[i] for i in rest], config,
                chargers=[chargers[i] for i in rest]))
        return MixedStations(parts)

    return build
