"""The gRPC service under attack: credentials before work, one identity per station, claims
checked against the city file, absurd numbers refused, hung stations dropped, IPv6, and TLS
mismatches named. Real servers on loopback, real clients; nothing of ours is mocked."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from evgrid.coordinator.driver import solve_period
from evgrid.coordinator.messages import Registration
from evgrid.transport.auth import Authenticator, token_digest
from evgrid.transport.certs import init_ca, issue
from evgrid.transport.grpc_station import Backoff, StationRefused, auth_metadata
from evgrid.transport.pb import coordinator_pb2 as pb
from evgrid.transport.tls import channel_credentials, server_credentials
from tests.grpc_harness import (
    MD,
    TLS,
    echo_proposal,
    rogue,
    roster,
    toy_coordinator,
    toy_state,
    wait_until,
)

pytestmark = pytest.mark.grpc

REGISTER = "/evgrid.v1.CoordinatorService/Register"
EXCHANGE = "/evgrid.v1.CoordinatorService/Exchange"


def station_reg(sid: str, zone: str = "z1", cap: float = 22.0, chargers: int = 0) -> bytes:
    return pb.RegisterRequest(agent_id=sid, kind=pb.AGENT_KIND_STATION, grid_zone=zone,
                              max_power_kw=cap, chargers=chargers).SerializeToString()


def status_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


# -- credentials before work --------------------------------------------------------------------
def test_no_message_is_read_before_credentials_and_garbage_is_invalid_argument(serve) -> None:
    _, port, hub = serve(["z1"])
    with grpc.insecure_channel(f"127.0.0.1:{port}",
                               options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        register = ch.unary_unary(REGISTER)
        big = b"\x00" * (3 << 20)
        # Refused unread: a stream handler that aborts before it reads, for any method.
        assert status_of(lambda: register(big, timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
        # With credentials, beyond the coordinator's inbound limit: refused by gRPC itself.
        assert status_of(lambda: register(b"\x00" * (5 << 20), metadata=MD, timeout=5)) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED)
        # Undecodable bytes: INVALID_ARGUMENT, never UNKNOWN.
        with pytest.raises(grpc.RpcError) as info:
            register(b"\xff\xff\xff\xff", metadata=MD, timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "undecodable RegisterRequest" in info.value.details()
        exchange = ch.stream_stream(EXCHANGE)
        replies = exchange(iter([b"\xff\xfe garbage"]), metadata=MD, timeout=5)
        with pytest.raises(grpc.RpcError) as info:
            next(replies)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Nothing registered, and every refusal counted (the oversized call never reached us).
    assert hub.registrations() == []
    assert hub.stats.refused == {"UNAUTHENTICATED": 1, "INVALID_ARGUMENT": 2}


def test_hello_timeout_and_the_per_client_stream_limit(serve) -> None:
    tokens = {"s1": "token-of-s1"}
    auth = Authenticator(station_tokens={token_digest(t): s for s, t in tokens.items()})
    _, port, _ = serve(["z1"], auth=auth, hello_timeout_s=0.5)
    md = auth_metadata(tokens["s1"])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        exchange = ch.stream_stream(EXCHANGE)
        t0 = time.perf_counter()
        silent = exchange(_forever(), metadata=md, timeout=10)
        with pytest.raises(grpc.RpcError) as info:
            next(silent)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "no Hello within 0.5 s" in info.value.details()
        assert time.perf_counter() - t0 < 3.0
    # Two streams of one station may be open (one live, one reconnecting); a third is refused.
    _, port, _ = serve(["z1"], auth=auth, hello_timeout_s=5.0)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        exchange = ch.stream_stream(EXCHANGE)
        held = [exchange(_forever(), metadata=md, timeout=10) for _ in range(2)]
        time.sleep(0.3)
        third = exchange(_forever(), metadata=md, timeout=10)
        with pytest.raises(grpc.RpcError) as info:
            next(third)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for call in held:
            call.cancel()


def _forever() -> Iterator[bytes]:
    """A request stream that never sends anything (gRPC stops it with the call)."""
    while True:
        time.sleep(0.05)
        yield from ()


# -- identity -----------------------------------------------------------------------------------
def test_a_second_stream_for_a_live_station_is_refused_and_never_wins(serve, edges) -> None:
    _, port, hub = serve(["z1"])
    good = edges.station(port, "good", "z1", 33.0)
    assert hub.wait_for_stations(1, 5) == 1
    thief = edges.submit(rogue(port, "good", lambda k, m: echo_proposal("good", m), cap=33.0))
    assert thief.result(5) == grpc.StatusCode.ALREADY_EXISTS
    # The first stream keeps its station and is served.
    coord, zone, city = toy_coordinator(hub)
    hub.begin_period({"good": toy_state("good")})
    props = hub.propose(coord.begin(40, zone, city))
    assert props.agent_ids == ("good",) and good.link.connected and good.link.connects == 1


def test_per_station_tokens_act_only_as_their_own_station(serve, edges) -> None:
    tokens = {"s1": "t-one", "s2": "t-two"}
    auth = Authenticator(station_tokens={token_digest(t): s for s, t in tokens.items()})
    _, port, hub = serve(["z1"], auth=auth)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        register = ch.unary_unary(REGISTER)
        one = auth_metadata(tokens["s1"])
        assert status_of(lambda: register(station_reg("s2"), metadata=one, timeout=5)) == (
            grpc.StatusCode.PERMISSION_DENIED)
        assert status_of(lambda: register(station_reg("s1"), metadata=auth_metadata("t-x"),
                                          timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
        register(station_reg("s1"), metadata=one, timeout=5)
        register(station_reg("s2"), metadata=auth_metadata(tokens["s2"]), timeout=5)
        # s1's credentials cannot open s2's stream either.
        replies = ch.stream_stream(EXCHANGE)(
            iter([pb.ExchangeRequest(hello=pb.Hello(agent_id="s2")).SerializeToString()]),
            metadata=one, timeout=5)
        with pytest.raises(grpc.RpcError) as info:
            next(replies)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # The real edge station with its own token is served.
    edges.station(port, "s1", "z1", 22.0, token=tokens["s1"])
    assert hub.wait_for_stations(1, 5) == 1 and hub.connected() == ["s1"]


def test_client_certificates_name_the_station(serve, edges, tmp_path) -> None:
    ca = init_ca(tmp_path)
    server = issue(tmp_path, "coordinator", kind="coordinator")
    s1 = issue(tmp_path, "s1", kind="station")
    creds = server_credentials(server.cert, server.key, client_ca=ca.cert)
    _, port, hub = serve(["z1"], auth=Authenticator(client_certs=True), server_credentials=creds)
    mine = channel_credentials(ca.cert, cert=s1.cert, key=s1.key)
    with grpc.secure_channel(f"localhost:{port}", mine) as ch:
        register = ch.unary_unary(REGISTER)
        assert status_of(lambda: register(station_reg("s2"), timeout=5)) == (
            grpc.StatusCode.PERMISSION_DENIED)
        register(station_reg("s1"), timeout=5)
    # Without a client certificate the handshake itself fails.
    with grpc.secure_channel(f"localhost:{port}", channel_credentials(ca.cert)) as ch:
        assert status_of(lambda: ch.unary_unary(REGISTER)(station_reg("s1"), timeout=5)) == (
            grpc.StatusCode.UNAVAILABLE)
    edge = edges.station(port, "s1", "z1", 22.0, token=None, host="localhost", credentials=mine)
    assert hub.wait_for_stations(1, 5) == 1 and edge.link.connected


# -- claims -------------------------------------------------------------------------------------
def test_registrations_are_checked_against_the_city_file(serve) -> None:
    city = [Registration("s1", "station", "z1", 22.0, chargers=4)]
    _, port, hub = serve(["z1", "z2"], stations=city)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        register = ch.unary_unary(REGISTER)
        for claim, says in ((station_reg("s1", zone="z2"), "grid zone 'z2' (the city file: 'z1')"),
                            (station_reg("s1", cap=1e6), "max_power_kw 1e+06"),
                            (station_reg("s1", chargers=40), "chargers 40 (the city file: 4)")):
            with pytest.raises(grpc.RpcError) as info:
                register(claim, metadata=MD, timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert says in info.value.details()
        reply = pb.RegisterResponse.FromString(register(station_reg("s1"), metadata=MD, timeout=5))
        assert (reply.grid_zone, reply.max_power_kw, reply.chargers) == ("z1", 22.0, 4)
    assert hub.registrations() == city, "the file's terms, not the station's"


def test_absurd_numbers_are_refused_and_counted(serve, edges) -> None:
    """A finite but absurd warm start once wrecked ρ and the duals for a day; NaN energy and
    negative EVs in telemetry were taken without a word."""
    _, port, hub = serve(["z1"])

    def huge_start(k: int, msg: pb.ExchangeResponse) -> pb.Proposal:
        p = echo_proposal("warm", msg)
        p.start_kw[0] = 1e12
        return p

    def telemetry(sid: str, **bad: Any) -> Any:
        return lambda k: pb.ExchangeRequest(telemetry=pb.Telemetry(agent_id=sid, **bad))

    codes = {
        "warm": edges.submit(rogue(port, "warm", huge_start)),
        "tele": edges.submit(rogue(port, "tele", lambda k, m: echo_proposal("tele", m),
                                   extra=telemetry("tele", energy_owed_kwh=float("nan")))),
        "s1": edges.submit(rogue(port, "s1", lambda k, m: echo_proposal("s1", m), cap=22.0,
                                 extra=telemetry("s1", connected_evs=-7))),
    }
    assert hub.wait_for_stations(3, 5) == 3
    coord, zone, city = toy_coordinator(hub)
    hub.begin_period({s: toy_state(s) for s in codes})
    hub.propose(coord.begin(40, zone, city))
    assert {s: f.result(5) for s, f in codes.items()} == dict.fromkeys(
        codes, grpc.StatusCode.INVALID_ARGUMENT)
    assert hub.stats.refused == {"INVALID_ARGUMENT": 3}


# -- dead and slow stations ---------------------------------------------------------------------
def test_a_hung_station_costs_its_wait_once(serve, edges) -> None:
    """A station that connects and then never answers: the first period waits for it
    ``drop_after`` rounds and drops it; the next asks it but waits for nobody."""
    _, port, hub = serve(["z1"], round_timeout_s=0.3)
    edges.station(port, "good", "z1", 33.0)
    hung = edges.submit(mute(port, "s2"))
    assert hub.wait_for_stations(2, 5) == 2
    coord, zone, city = toy_coordinator(hub)
    states = {s: toy_state(s) for s in ("good", "s2")}
    periods = []
    optional: frozenset[str] = frozenset()
    for _ in range(2):  # the whole period: begin, rounds, done targets and set-points
        t0 = time.perf_counter()
        hub.begin_period(states, optional=optional)
        stats = solve_period(coord, hub, horizon_start=40, zone_limit_kw=zone,
                             city_limit_kw=city, optional=optional)
        optional = frozenset(stats.dropped)
        hub.finish_period(*coord.settle(), optional=optional)
        periods.append((time.perf_counter() - t0, stats))
    (first, s1), (second, s2) = periods
    assert s1.dropped == ("s2",) and s2.dropped == ("s2",)
    assert 0.9 <= first < 3.0, "three rounds of 0.3 s, then dropped"
    assert second < 0.8, "on probation: waited for only as long again as the others took"
    assert s1.converged and s2.converged
    hung.cancel()


async def mute(port: int, sid: str) -> None:
    """A station that registers, says Hello, reads everything and answers nothing."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await channel.unary_unary(REGISTER)(station_reg(sid), metadata=MD, timeout=5)
        call = channel.stream_stream(EXCHANGE)(metadata=MD, timeout=30)
        await call.write(pb.ExchangeRequest(hello=pb.Hello(agent_id=sid)).SerializeToString())
        while await call.read() is not grpc.aio.EOF:
            pass


# -- the network --------------------------------------------------------------------------------
def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6(), reason="this machine has no IPv6 loopback")
def test_ipv6_loopback_binds_and_serves(serve, edges) -> None:
    from evgrid.transport.grpc_server import host_port

    _, port, hub = serve(["z1"], address=host_port("::1", 0))
    edges.station(port, "s1", "z1", 22.0, host="[::1]")
    assert hub.wait_for_stations(1, 5) == 1


def test_a_tls_mismatch_is_named(serve, edges) -> None:
    _, plain, _ = serve(["z1"])
    fast = Backoff(initial_s=0.02, max_s=0.05)
    edge = edges.station(plain, "s1", "z1", 22.0, backoff=fast,
                         credentials=channel_credentials(TLS / "localhost.crt"))
    with pytest.raises(StationRefused, match="does not speak TLS"):
        edge.future.result(10)
    _, secure, _ = serve(["z1"], server_credentials=server_credentials(
        TLS / "localhost.crt", TLS / "localhost.key"))
    edge = edges.station(secure, "s2", "z1", 22.0, backoff=fast)
    wait_until(lambda: "may serve TLS" in edge.link.hint, 10)
    assert not edge.link.connected


def test_a_station_outside_the_roster_is_not_found(serve) -> None:
    _, port, _ = serve(["z1"], stations=roster({"s1": ("z1", 22.0)}))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        assert status_of(lambda: ch.unary_unary(REGISTER)(station_reg("s9"), metadata=MD,
                                                          timeout=5)) == grpc.StatusCode.NOT_FOUND
