"""The edge process: one station agent talking to the coordinator over ``CoordinatorService``.

``run_station`` registers (with a deadline), opens the ``Exchange`` stream, says ``Hello`` and
then answers the coordinator through an :class:`~evgrid.agents.edge.EdgeStation`: a
``PeriodStart`` (state + round-0 target) or a ``ConsensusTarget`` gets a ``Proposal``; a done
target gets the executed ``SetpointSchedule`` and a ``Telemetry``.

When the link drops it logs, marks itself in fallback, and reconnects with exponential backoff
(bounded delay, jittered so a fleet does not reconnect in lockstep); meanwhile it keeps the
chargers on its fallback (``EdgeStation.fallback``: its last envelope, then its safe share) if
it owns a clock (``step_s``; in a sim-in-the-loop run the coordinator's simulation owns time
and computes the same fallback on its side). A step is set on the chargers once: a done
target for a step it already executed (a coordinator that restarted and solved the step
again) is answered with the set-points but not applied twice. Errors that retrying cannot fix
(wrong credentials, a registration the coordinator refuses, a TLS setting the coordinator does
not share) end it with an exception; a second stream for the same station is refused by the
coordinator and retried here (the first one may be a half-dead link that keepalive ends).

Edge nodes are small: BLAS threads are pinned to one (``OPENBLAS_NUM_THREADS``,
``OMP_NUM_THREADS``) unless the environment says otherwise. Kernel threads are the host
process's choice: ``evgrid station`` keeps one (``NUMBA_NUM_THREADS=1``, set before numba
loads); setting that here, at import, broke a host whose kernel threads already ran.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads its BLAS
os.environ.setdefault("OMP_NUM_THREADS", "1")

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import numpy as np

from evgrid.agents.edge import EdgeStation
from evgrid.agents.station import StationConfig, StationState
from evgrid.transport import codec
from evgrid.transport.grpc_server import MAX_MESSAGE_BYTES
from evgrid.transport.pb import coordinator_pb2 as pb
from evgrid.transport.pb import coordinator_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

#: Client keepalive: ping every 10 s (the server accepts one per 5 s), give up after 5 s
#: without an answer, so a dead link is noticed within ~15 s even when no period is running.
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Reconnection is ours (with the backoff below); the channel's own should not pile on.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]

#: Register refusals that retrying cannot fix (wrong credentials, a registration it refuses).
_FATAL_REGISTER = {
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
}
#: Connection failures that name a TLS setting the two ends do not share: (text in the
#: error, what it means). Fatal after ``_TLS_STRIKES`` in a row (one could be a restart).
_TLS_MISMATCH = [
    ("WRONG_VERSION_NUMBER", "the coordinator does not speak TLS: drop --tls/--tls-ca, or "
     "start the coordinator with --tls-cert/--tls-key"),
    ("CERTIFICATE_VERIFY_FAILED", "the coordinator's certificate is not signed by the CA this "
     "station trusts (--tls-ca)"),
    ("CERTIFICATE_REQUIRED", "the coordinator requires a client certificate: give "
     "--tls-cert/--tls-key (evgrid certs issue STATION)"),
]
#: A plaintext channel whose connections the coordinator closes at once: likely a TLS
#: coordinator (logged as a hint, not fatal: a restarting server looks the same).
_PLAINTEXT_HINT = ("Socket closed", "the coordinator closes the connection at once: it may "
                   "serve TLS (give --tls-ca CA.pem or --tls)")
_TLS_STRIKES = 3

#: Called with (step, charger indices, kW, fallback?) whenever the station sets its chargers.
SetpointSink = Callable[[int, np.ndarray, np.ndarray, bool], None]
#: A field deployment's reader of its own chargers: (horizon_start, H) -> StationState.
StateReader = Callable[[int, int], StationState]


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The call metadata every RPC to the coordinator needs (none with a client certificate
    alone: the TLS handshake names the station)."""
    return (("authorization", f"Bearer {token}"),) if token else ()


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: initial_s, ×factor after each failed try, never above max_s."""

    initial_s: float = 0.1
    factor: float = 2.0
    max_s: float = 5.0
    jitter: float = 0.2  # ± share of each delay, so a fleet does not reconnect in lockstep

    def delays(self) -> _Delays:
        return _Delays(self)


class _Delays:
    def __init__(self, b: Backoff) -> None:
        self.b, self.next_s = b, b.initial_s

    def take(self) -> float:
        d = self.next_s
        self.next_s = min(self.next_s * self.b.factor, self.b.max_s)
        return d * (1 + self.b.jitter * (2 * random.random() - 1))

    def reset(self) -> None:
        self.next_s = self.b.initial_s


@dataclass
class LinkState:
    """What the edge node's link is doing (read it from another task, e.g. for telemetry)."""

    connected: bool = False
    fallback: bool = False  # running on the last agreed envelope (link lost)
    connects: int = 0  # successful Hellos
    fallback_steps: int = 0  # steps executed in fallback
    executed_step: int = -1  # last step set on the chargers
    applied_at: float = -math.inf  # loop time it was set (the fallback clock runs from there)
    repeats_refused: int = 0  # done targets for a step already executed (not applied again)
    farewell: str = ""  # why the coordinator ended the run, when it did
    last_error: str = ""
    hint: str = ""  # what a repeated connection failure most likely means
    strikes: int = 0  # connection failures in a row with the same TLS cause


class StationRefused(RuntimeError):
    """The coordinator refused this station for good (retrying cannot help)."""


class _Stop(Exception):
    """The stop event fired."""


class _Farewell(Exception):
    """The coordinator's run is over (it said so)."""


def _log_setpoints(step: int, chargers: np.ndarray, kw: np.ndarray, fallback: bool) -> None:
    log.debug(
        "step %d: %.2f kW on %d chargers%s",
        step,
        float(np.sum(kw)),
        len(chargers),
        " (fallback)" if fallback else "",
    )


async def run_station(
    address: str,
    *,
    token: str | None,
    station_id: str,
    grid_zone: str,
    max_power_kw: float,
    stop: asyncio.Event | None = None,
    config: StationConfig | None = None,
    edge: EdgeStation | None = None,
    link: LinkState | None = None,
    backoff: Backoff | None = None,
    call_timeout_s: float = 5.0,
    stream_timeout_s: float = 24 * 3600.0,
    step_s: float | None = None,
    read_state: StateReader | None = None,
    read_power: Callable[[], float] | None = None,
    on_setpoints: SetpointSink | None = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> EdgeStation:
    """Serve one station until ``stop`` is set (see module docstring); return its agent.

    ``call_timeout_s`` is the deadline of Register; ``stream_timeout_s`` that of one Exchange
    stream (it is reopened when it expires, the agent keeps its state). ``step_s`` is the
    real length of a control step: with it the node keeps stepping its fallback while the
    link is down. ``read_state`` serves a PeriodStart without a simulated state (field mode:
    the station claims what it read); ``read_power`` is its metered power, for telemetry
    (default: the set-points it executed).
    """
    edge = edge or EdgeStation(station_id, grid_zone, max_power_kw, config)
    link = link if link is not None else LinkState()
    stop = stop or asyncio.Event()
    sink = on_setpoints or _log_setpoints
    delays = (backoff or Backoff()).delays()
    clock: list[asyncio.Task[None]] = []  # the fallback clock while the link is down

    def connected() -> None:
        while clock:
            clock.pop().cancel()

    try:
        while not stop.is_set():
            try:
                await _serve_once(
                    address,
                    token=token,
                    edge=edge,
                    link=link,
                    stop=stop,
                    sink=sink,
                    delays=delays,
                    call_timeout_s=call_timeout_s,
                    stream_timeout_s=stream_timeout_s,
                    read_state=read_state,
                    read_power=read_power,
                    credentials=credentials,
                    on_connected=connected,
                )
                link.last_error = "the coordinator ended the stream"
            except _Stop:
                break
            except _Farewell as bye:
                link.farewell = str(bye)
                log.info("%s: %s", station_id, bye)
                break
            except grpc.aio.AioRpcError as exc:
                if stop.is_set():
                    break
                link.last_error = f"{exc.code().name}: {exc.details()}"
                _diagnose(exc, link, station_id, secure=credentials is not None)
            except ValueError as exc:  # a message this agent could not use: resync
                log.exception("%s: bad message from the coordinator", station_id)
                link.last_error = f"bad message: {exc}"
            if stop.is_set():
                break
            link.connected = False
            if not link.fallback:
                log.warning(
                    "%s: link to %s lost (%s); fallback on the last envelope",
                    station_id,
                    address,
                    link.last_error,
                )
            link.fallback = True
            if link.hint:
                log.error("%s: %s", station_id, link.hint)
            if step_s is not None and (not clock or clock[0].done()):
                clock[:] = [asyncio.create_task(
                    _fallback_clock(edge, link, step_s, read_state, sink))]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delays.take())
    finally:
        connected()
        link.connected = False
    return edge


def _diagnose(exc: grpc.aio.AioRpcError, link: LinkState, station_id: str, *,
              secure: bool) -> None:
    """Name a TLS mismatch (fatal once it repeats) or hint at one; else clear the hint."""
    text = exc.details() or ""
    for needle, meaning in _TLS_MISMATCH:
        if needle in text:
            link.strikes = link.strikes + 1 if link.hint == meaning else 1
            link.hint = meaning
            if link.strikes >= _TLS_STRIKES:
                raise StationRefused(f"{station_id}: cannot connect: {meaning}") from exc
            return
    needle, meaning = _PLAINTEXT_HINT
    if not secure and exc.code() == grpc.StatusCode.UNAVAILABLE and needle in text:
        # A TLS server closes a plaintext connection at once; a restarting one refuses it.
        link.strikes += 1
        link.hint = meaning if link.strikes >= _TLS_STRIKES else ""
        if link.strikes >= 2 * _TLS_STRIKES:
            raise StationRefused(f"{station_id}: cannot connect: {meaning}") from exc
        return
    if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
        link.hint = ("another stream serves this station (a half-dead link ends within ~30 s; "
                     "if it persists, a second process runs with this station's credentials)")
    else:
        link.hint = ""
    link.strikes = 0


async def _serve_once(
    address: str,
    *,
    token: str | None,
    edge: EdgeStation,
    link: LinkState,
    stop: asyncio.Event,
    sink: SetpointSink,
    delays: _Delays,
    call_timeout_s: float,
    stream_timeout_s: float,
    read_state: StateReader | None,
    read_power: Callable[[], float] | None,
    credentials: grpc.ChannelCredentials | None,
    on_connected: Callable[[], None],
) -> None:
    """One connection: Register, Exchange, answer until the stream ends or ``stop``."""
    md = auth_metadata(token)
    channel = (
        grpc.aio.secure_channel(address, credentials, options=CHANNEL_OPTIONS)
        if credentials is not None
        else grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
    )
    async with channel:
        stub = pb_grpc.CoordinatorServiceStub(channel)
        try:
            reply = await stub.Register(
                codec.registration_to_proto(edge.registration), timeout=call_timeout_s, metadata=md
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _FATAL_REGISTER:
                raise StationRefused(
                    f"coordinator refused {edge.station_id!r}: {exc.code().name}: {exc.details()}"
                ) from exc
            raise
        log.info("%s registered (coordinator dt %.3f h)", edge.station_id, reply.dt_h)
        call = stub.Exchange(metadata=md, timeout=stream_timeout_s)
        watcher = asyncio.create_task(_cancel_on(stop, call))
        try:
            await call.write(pb.ExchangeRequest(hello=pb.Hello(agent_id=edge.station_id)))
            if link.fallback:
                await call.write(pb.ExchangeRequest(telemetry=_telemetry(edge, link, fallback=True)))
            first = True
            while True:
                msg = await call.read()
                if msg is grpc.aio.EOF:
                    return
                if first:  # connected is when the coordinator speaks, not when Hello is sent:
                    # a refused stream (a half-dead one still held) must not stop the clock
                    first = False
                    link.connected, link.connects = True, link.connects + 1
                    link.hint, link.strikes, link.fallback = "", 0, False
                    on_connected()
                    delays.reset()
                for out in _answer(edge, link, msg, read_state, sink, read_power):
                    await call.write(out)
        except asyncio.CancelledError:
            if stop.is_set():
                raise _Stop from None
            raise
        finally:
            watcher.cancel()


async def _cancel_on(stop: asyncio.Event, call: grpc.aio.StreamStreamCall) -> None:
    await stop.wait()
    call.cancel()


def _answer(
    edge: EdgeStation,
    link: LinkState,
    msg: pb.ExchangeResponse,
    read_state: StateReader | None,
    sink: SetpointSink,
    read_power: Callable[[], float] | None = None,
) -> list[pb.ExchangeRequest]:
    """The station's reply to one coordinator message (pure apart from the agent's state)."""
    kind = msg.WhichOneof("body")
    if kind == "farewell":
        raise _Farewell(f"the coordinator ended its run after step {msg.farewell.last_step}: "
                        f"{msg.farewell.reason}")
    if kind == "period":
        ps = msg.period
        claim: list[pb.ExchangeRequest] = []
        if ps.HasField("state"):
            state = codec.state_from_proto(ps.state)
        elif read_state is not None:  # field mode: the station's own chargers, claimed
            state = read_state(int(ps.horizon_start), int(ps.horizon_steps))
            claim = [pb.ExchangeRequest(claim=codec.state_to_proto(state))]
        else:
            raise ValueError("PeriodStart without a state and no read_state to read the chargers")
        p = edge.on_period(state, codec.targets_from_proto([ps.target]))
        return [*claim, pb.ExchangeRequest(proposal=codec.proposal_to_proto(p, 0))]
    if kind != "target":
        return []
    targets = codec.targets_from_proto([msg.target])
    if targets.agent_ids[0] != edge.station_id:
        raise ValueError(f"target for {targets.agent_ids[0]!r} sent to {edge.station_id!r}")
    if not targets.done:
        p = edge.on_target(targets)
        return [pb.ExchangeRequest(proposal=codec.proposal_to_proto(p, 0))]
    chargers, kw, env = edge.on_done(targets)
    step = targets.horizon_start
    if step > link.executed_step:
        sink(step, chargers, kw, False)
        link.executed_step, link.applied_at = step, time.monotonic()
    else:  # solved again by a restarted coordinator: answered, never applied twice
        link.repeats_refused += 1
        log.warning("%s: step %d was already executed; not applied again", edge.station_id, step)
    return [
        pb.ExchangeRequest(
            executed=codec.executed_to_proto(edge.station_id, step, chargers, kw, env)
        ),
        pb.ExchangeRequest(
            telemetry=_telemetry(edge, link, fallback=False, power_kw=float(
                kw.sum() if read_power is None else read_power()))
        ),
    ]


def _telemetry(
    edge: EdgeStation, link: LinkState, *, fallback: bool, power_kw: float | None = None
) -> pb.Telemetry:
    st = edge.state
    return pb.Telemetry(
        agent_id=edge.station_id,
        step=link.executed_step,
        power_kw=0.0 if power_kw is None else power_kw,
        connected_evs=0 if st is None else int(st.charger.size),
        energy_owed_kwh=0.0 if st is None else float(st.owed_kwh.sum()),
        fallback=fallback,
    )


async def _fallback_clock(
    edge: EdgeStation,
    link: LinkState,
    step_s: float,
    read_state: StateReader | None,
    sink: SetpointSink,
) -> None:
    """While the link is down, set the chargers each step from the last envelope (then the safe
    share), each step ``step_s`` after the one before: a step is applied when it starts, never
    early (the first fallback step is due one step after the last step set). A station that
    has no step yet (a fresh process that never heard from the coordinator and has no log of
    its own) has no clock to run on: it waits for the coordinator instead of guessing."""
    while True:
        start = edge.state.horizon_start if edge.state is not None else edge.envelope.start
        if start < 0 and link.executed_step < 0:
            await asyncio.sleep(step_s)
            continue
        now = time.monotonic()
        if not math.isfinite(link.applied_at):  # a step from its log, its time unknown
            link.applied_at = now
        due = link.applied_at + step_s
        if due > now:
            await asyncio.sleep(due - now)
        step = max(link.executed_step + 1, start)
        try:
            state = read_state(step, 1) if read_state is not None else None
            chargers, kw = edge.fallback(step, state)
            sink(step, chargers, kw, True)
        except Exception:  # a charger that cannot be read or set: said, and the clock goes on
            log.exception("%s: fallback step %d failed", edge.station_id, step)
        link.executed_step, link.applied_at = step, due
        link.fallback_steps += 1
