"""Real gRPC on loopback: auth, refusals as status codes, health, equivalence, link loss.

Servers bind port 0 on 127.0.0.1; edge stations are the real ``run_station`` coroutines on an
event loop in a background thread (the server has its own), misbehaving stations are raw
``grpc.aio`` clients. Nothing of ours is mocked.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from typing import Any

import grpc
import numpy as np
import pytest
import typer
from grpc_health.v1 import health_pb2, health_pb2_grpc
from typer.testing import CliRunner

from evgrid import cli_edge
from evgrid.agents.baselines import LeastLaxityFirst
from evgrid.agents.edge import EdgeStation, fallback_schedule
from evgrid.agents.station import StationPack, station_states
from evgrid.coordinator.admm import PowerCoordinator
from evgrid.coordinator.driver import MixedStations, solve_period
from evgrid.envs import Simulator
from evgrid.transport import codec
from evgrid.transport.grpc_server import SERVICE_NAME
from evgrid.transport.grpc_station import (
    Backoff,
    StationRefused,
    auth_metadata,
)
from evgrid.transport.pb import coordinator_pb2 as pb
from evgrid.transport.pb import coordinator_pb2_grpc as pb_grpc
from evgrid.transport.tls import channel_credentials, server_credentials
from tests.grpc_harness import (
    MD,
    TLS,
    TOKEN,
    Script,
    echo_proposal,
    free_port,
    ordered_coordinator,
    rogue,
    roster,
    serve_small,
    start_small_edges,
    toy_coordinator,
    toy_state,
    wait_until,
)

pytestmark = pytest.mark.grpc


# -- (a) authentication -------------------------------------------------------------------------
def test_missing_token_and_unregistered_agent_are_unauthenticated(serve, edges) -> None:
    _, port, hub = serve(["z1"])
    reg = pb.RegisterRequest(
        agent_id="s1", kind=pb.AGENT_KIND_STATION, grid_zone="z1", max_power_kw=22.0
    )
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.CoordinatorServiceStub(channel)
        for md in ((), auth_metadata("wrong"), (("authorization", TOKEN),)):
            with pytest.raises(grpc.RpcError) as info:
                stub.Register(reg, metadata=md, timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, md
        assert hub.registrations() == []
        # A registered-looking Hello from an agent that never registered.
        replies = stub.Exchange(
            iter([pb.ExchangeRequest(hello=pb.Hello(agent_id="ghost"))]), metadata=MD, timeout=5
        )
        with pytest.raises(grpc.RpcError) as info:
            next(replies)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "Register first" in info.value.details()
        # The stream without a token is refused before its first message is read.
        replies = stub.Exchange(iter([]), timeout=5)
        with pytest.raises(grpc.RpcError) as info:
            next(replies)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # With the token, the same registration goes through; a bad one names the field.
        assert stub.Register(reg, metadata=MD, timeout=5).grid_zones == ["z1"]
        bad = pb.RegisterRequest(
            agent_id="s2", kind=pb.AGENT_KIND_STATION, grid_zone="nowhere", max_power_kw=22.0
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.Register(bad, metadata=MD, timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "grid_zone 'nowhere'" in info.value.details()
    # An edge node with the wrong token stops with a clear error instead of retrying forever.
    edge = edges.station(port, "s3", "z1", 22.0, token="wrong")
    with pytest.raises(StationRefused, match="UNAUTHENTICATED"):
        edge.future.result(5)


# -- (b) stale round, impersonation -------------------------------------------------------------
def test_stale_round_is_failed_precondition_and_impersonation_denied(serve, edges) -> None:
    _, port, hub = serve(["z1"])
    good = edges.station(port, "good", "z1", 33.0)

    def stale(k: int, msg: pb.ExchangeResponse) -> pb.Proposal:
        p = echo_proposal("stale", msg)
        if k == 1:
            p.round -= 1  # answers round 1 with its round-0 proposal again
        return p

    def imposter(k: int, msg: pb.ExchangeResponse) -> pb.Proposal:
        p = echo_proposal("imposter", msg)
        p.agent_id = "good"
        return p

    codes = {
        "stale": edges.submit(rogue(port, "stale", stale)),
        "imposter": edges.submit(rogue(port, "imposter", imposter)),
    }
    assert hub.wait_for_stations(3, 5) == 3
    coord, zone, city = toy_coordinator(hub)
    hub.begin_period({s: toy_state(s) for s in ("good", "stale", "imposter")})
    targets = coord.begin(40, zone, city)
    props = hub.propose(targets)
    assert props.agent_ids == ("good", "stale")
    assert codes["imposter"].result(5) == grpc.StatusCode.PERMISSION_DENIED
    targets = coord.update(props)
    props = hub.propose(targets)
    assert props.agent_ids == ("good",) and props.round == 1
    assert codes["stale"].result(5) == grpc.StatusCode.FAILED_PRECONDITION
    assert hub.connected() == ["good"]
    assert hub.stats.refused == {"PERMISSION_DENIED": 1, "FAILED_PRECONDITION": 1}
    assert good.link.connected


# -- (c) malformed proposals --------------------------------------------------------------------
def test_malformed_proposals_are_invalid_argument_and_others_keep_going(serve, edges) -> None:
    _, port, hub = serve(["z1"])
    good = edges.station(port, "good", "z1", 33.0)
    cap = 20.0

    def corrupt(how: str) -> Script:
        def script(k: int, msg: pb.ExchangeResponse) -> pb.Proposal:
            p = echo_proposal(how, msg)
            if how == "nan":
                p.plan_kw[3] = float("nan")
            elif how == "short":
                del p.plan_kw[-1]
            elif how == "over":
                p.plan_kw[0] = 2 * cap  # beyond the registered max_power_kw
            return p

        return script

    bad = {
        how: edges.submit(rogue(port, how, corrupt(how), cap=cap))
        for how in ("nan", "short", "over")
    }
    assert hub.wait_for_stations(4, 5) == 4
    coord, zone, city = toy_coordinator(hub)
    hub.begin_period({s: toy_state(s) for s in ("good", *bad)})
    targets = coord.begin(40, zone, city)
    t0 = time.perf_counter()
    props = hub.propose(targets)
    assert time.perf_counter() - t0 < 2.0, "a refused stream must not hold the round up"
    assert props.agent_ids == ("good",)
    assert {how: f.result(5) for how, f in bad.items()} == dict.fromkeys(
        bad, grpc.StatusCode.INVALID_ARGUMENT
    )
    for _ in range(4):  # the well-behaved station is still served, round after round
        targets = coord.update(props)
        props = hub.propose(targets)
        assert props.agent_ids == ("good",) and props.round == targets.round
        assert props.participants[0].max() == 3 and np.isfinite(props.plan_kw).all()
    assert hub.stats.refused == {"INVALID_ARGUMENT": 3}
    # Refused streams are not asked again: missing for three rounds, then dropped.
    assert coord.stats.missing == 9 and set(coord.stats.dropped) == set(bad)
    assert hub.connected() == ["good"] and good.link.connected


# -- (d) health ---------------------------------------------------------------------------------
def test_health_needs_no_credentials(serve) -> None:
    """A load balancer or an operator's probe holds no station's token."""
    _, port, _ = serve(["z1"])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for md in (MD, ()):
            reply = health.Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), metadata=md, timeout=5
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


# -- (e) in-process == gRPC ---------------------------------------------------------------------
@pytest.mark.parametrize("learned", [False, True], ids=["plans", "learned-dispatch"])
def test_grpc_period_equals_in_process(serve, edges, small, learned, tmp_path) -> None:
    """The same period over gRPC edge nodes as in one pack, following the plans or executing
    by a learned station policy (its context crossed the wire with the state)."""
    from dataclasses import replace

    from tests.bundles import Constant, write_bundle

    obs, h, states = small["obs"], small["h"], small["states"]
    config = small["config"]
    if learned:
        # 5 % of its rating: below the agreement, unless the context went missing (then LLF)
        config = replace(config, policy_dir=str(write_bundle(tmp_path / "b", Constant(0.05))))
    limits = dict(
        horizon_start=obs.t,
        zone_limit_kw=obs.zone_limit_kw[:h],
        city_limit_kw=obs.city_limit_kw[:h],
    )
    assert all(st.charger.size for st in states.values()), "pick a step with EVs everywhere"

    pack = StationPack(small["ids"], small["zones"], small["caps"], config)
    local = PowerCoordinator(small["world"].grid_ids)
    for reg in pack.registrations():
        local.register(reg)
    pack.begin_period(states)
    want = solve_period(local, pack, **limits)

    _, port, hub = serve_small(serve, small, round_timeout_s=5.0)
    start_small_edges(edges, port, small, config)
    assert hub.wait_for_stations(3, 5) == 3
    remote = ordered_coordinator(hub, small)
    transport = MixedStations([hub])
    transport.begin_period(states)
    t0 = time.perf_counter()
    got = solve_period(remote, transport, **limits)
    per_round_ms = 1000 * (time.perf_counter() - t0) / got.iterations
    print(f"gRPC: {got.iterations} rounds, {per_round_ms:.2f} ms per round")

    assert got.iterations == want.iterations and got.missing == 0
    assert got.converged == want.converged
    # The certificate travelled too: every edge node's dual came back over its stream.
    assert math.isfinite(got.gap_bound) and got.gap_bound == pytest.approx(want.gap_bound, rel=1e-9)
    for name in ("consensus", "plans"):
        a, b = getattr(local, name)(), getattr(remote, name)()
        assert a.keys() == b.keys()
        for sid in a:
            np.testing.assert_allclose(
                b[sid], a[sid], rtol=1e-6, atol=1e-9, err_msg=f"{name} {sid}"
            )
    agreed, envs = local.settle()
    executed_local = pack.finish_period(agreed)
    executed_remote = transport.finish_period(agreed, envs)
    assert hub.last_fallback == set()
    for sid, (chargers, kw) in executed_local.items():
        np.testing.assert_array_equal(executed_remote[sid][0], chargers)
        np.testing.assert_allclose(executed_remote[sid][1], kw, rtol=1e-6, atol=1e-9)
        assert kw.sum() <= agreed[sid] + 1e-9
    if learned:  # the policy, not the plan, set the power: below the agreement somewhere
        assert pack.dispatch is not None
        assert any(kw.sum() < agreed[s] - 1e-6 for s, (_, kw) in executed_local.items())
    envelopes = hub.envelopes()
    for sid, z in remote.consensus().items():
        env = envelopes[sid]
        assert env.start == obs.t and env.kw[0] == agreed[sid]
        # The envelope is the consensus made executable: never below 0 (z may dip below it
        # where a station plans to wait), and the converged shares already meet the limits.
        np.testing.assert_allclose(env.kw[1:], np.maximum(z[1:], 0.0), rtol=1e-6, atol=1e-6)
    wait_until(lambda: set(hub.telemetry()) == set(small["ids"]))
    tel = hub.telemetry()["mall"]
    assert tel.step == obs.t and not tel.fallback
    assert tel.power_kw == pytest.approx(executed_local["mall"][1].sum())


# -- (f) a link drops mid-period ----------------------------------------------------------------
def test_a_dropped_link_is_dropped_from_the_period_and_executes_its_envelope(
    serve, edges, small
) -> None:
    sim = Simulator(small["sc"])
    llf = LeastLaxityFirst()
    obs = sim.reset()
    while obs.t < small["obs"].t:
        obs, _ = sim.step(llf.schedule(obs))
    ids, h = small["ids"], small["h"]
    _, port, hub = serve_small(serve, small, round_timeout_s=2.0)
    running = start_small_edges(edges, port, small, small["config"])
    assert hub.wait_for_stations(3, 5) == 3
    coord = ordered_coordinator(hub, small)

    def limits(o: Any) -> dict[str, Any]:
        return dict(
            horizon_start=o.t, zone_limit_kw=o.zone_limit_kw[:h], city_limit_kw=o.city_limit_kw[:h]
        )

    # Period 1: everyone agrees an envelope.
    hub.begin_period(station_states(obs, ids, h))
    solve_period(coord, hub, **limits(obs))
    agreed, envs = coord.settle()
    power = np.zeros(obs.connected.size)
    for chargers, kw in hub.finish_period(agreed, envs).values():
        power[chargers] = kw
    assert hub.last_fallback == set()
    envelopes = hub.envelopes()
    obs, _ = sim.step(power)

    # Period 2: one station's link drops after round 0.
    states = station_states(obs, ids, h)
    lost = max(ids, key=lambda s: envelopes[s].kw[1] * (states[s].charger.size > 0))
    env1 = envelopes[lost]
    assert env1.kw[obs.t - env1.start] > 0 and states[lost].charger.size, "pick a station with a budget"
    hub.begin_period(states)
    targets = coord.begin(**limits(obs))
    props = hub.propose(targets)
    assert set(props.agent_ids) == set(ids)
    edge_agent = edges.halt(running[lost])  # its channel closes: the link is gone
    wait_until(lambda: lost not in hub.connected())
    t0 = time.perf_counter()
    rounds = 0
    while not targets.done:
        targets = coord.update(props)
        rounds += 1
        if not targets.done:
            assert (lost in targets.agent_ids) == (rounds < 4), "dropped after 3 missed rounds"
            props = hub.propose(targets)
            assert lost not in props.agent_ids and len(props) == len(ids) - 1
    # Not waited for (its stream is gone), dropped, and the others certified without it.
    assert time.perf_counter() - t0 < 1.5
    assert coord.stats.dropped == (lost,) and coord.stats.missing == 3
    assert coord.stats.converged and coord.stats.gap_bound <= coord.config.gap_tol
    agreed, envs = coord.settle()
    budget = max(env1.kw[obs.t - env1.start], 0.0)
    assert agreed[lost] == pytest.approx(budget), "its draw is exactly its reserved fallback"
    schedules = hub.finish_period(agreed, envs)
    assert hub.last_fallback == {lost}
    chargers, kw = schedules[lost]
    assert 0 < kw.sum() <= budget + 1e-9, "the fallback stays inside the last agreed envelope"
    np.testing.assert_array_equal(chargers, states[lost].charger)
    # The simulation executes what the coordinator counted (its reserved envelope); the edge
    # node, which saw this period start and never end, draws nothing at this step, and from the
    # next step on exactly what is reserved for it.
    np.testing.assert_array_equal(kw, fallback_schedule(states[lost], env1, obs.t)[1])
    assert edge_agent.fallback(obs.t, states[lost])[1].sum() == 0.0
    later = obs.t + 1
    np.testing.assert_array_equal(edge_agent.fallback(later, states[lost])[1],
                                  fallback_schedule(states[lost], env1, later)[1])
    for sid in set(ids) - {lost}:
        assert schedules[sid][1].sum() <= agreed[sid] + 1e-9
    # Its reserved profile is its old envelope where that still covers the horizon.
    k = min(h, env1.start + env1.kw.size - obs.t)
    np.testing.assert_allclose(hub.envelopes()[lost].kw[:k],
                               np.maximum(env1.kw[obs.t - env1.start:][:k], 0.0))
    # Next period it is known to be gone: dropped before round 0, never waited for.
    obs, _ = sim.step(np.zeros(obs.connected.size))
    hub.begin_period(station_states(obs, ids, h))
    assert hub.unreachable() == {lost}
    stats = solve_period(coord, hub, **limits(obs))
    assert stats.dropped == (lost,) and stats.missing == 0


# -- reconnection -------------------------------------------------------------------------------
def test_station_reconnects_with_backoff_after_the_coordinator_restarts(serve, edges) -> None:
    first, port, hub = serve(["z1"])
    edge = edges.station(port, "s1", "z1", 22.0, backoff=Backoff(initial_s=0.05, max_s=0.3))
    assert hub.wait_for_stations(1, 5) == 1
    first.stop(grace_s=0)
    wait_until(lambda: edge.link.fallback and not edge.link.connected)
    _, port2, hub2 = serve(["z1"], address=f"127.0.0.1:{port}")
    assert port2 == port
    assert hub2.wait_for_stations(1, 5) == 1, "re-registered and said Hello again"
    wait_until(lambda: "s1" in hub2.telemetry())
    assert hub2.telemetry()["s1"].fallback, "it reports the time it spent in fallback"
    assert edge.link.connects == 2 and not edge.link.fallback


def test_only_facilities_register_and_only_until_the_run_starts(serve) -> None:
    _, port, hub = serve(["z1"], stations=roster({"depot": ("z1", 10.0), "mall": ("z1", 10.0)}))

    def register(sid: str) -> pb.RegisterResponse:
        reg = codec.registration_to_proto(EdgeStation(sid, "z1", 10.0).registration)
        return stub.Register(reg, metadata=MD, timeout=5)

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.CoordinatorServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            register("nowhere")
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        register("depot")
        assert [r.agent_id for r in hub.close_registrations()] == ["depot"]
        register("depot")  # a registered station may come back (reconnect)
        with pytest.raises(grpc.RpcError) as info:
            register("mall")
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert [r.agent_id for r in hub.registrations()] == ["depot"]


# -- the two commands ---------------------------------------------------------------------------
@pytest.mark.parametrize("learned", [False, True], ids=["plans", "learned"])
def test_coordinator_and_station_commands_run_a_day_over_grpc(
    tmp_path, small_copy, write_yaml, edges, learned
) -> None:
    """The real commands, over TLS (a self-signed certificate for localhost / 127.0.0.1);
    ``learned``: the edge node serves a learned station policy (``--policy``, torch only) and
    the coordinator's own stations run it too (``--station-policy``)."""
    from tests.bundles import Squashed, write_bundle

    small_copy["horizon_days"] = 0.25  # 24 steps keep it quick
    scenario = str(write_yaml(small_copy))
    bundle = str(write_bundle(tmp_path / "bundle", Squashed(seed=0)))
    policy = ["--policy", bundle] if learned else []
    port = free_port()
    env = {**os.environ, "EVGRID_TOKEN": TOKEN}
    # One edge node as its own process (the real command, stopped with Ctrl-C) ...
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import typer; from evgrid.cli_edge import station; typer.run(station)",
            "--station-id",
            "depot",
            "--scenario",
            scenario,
            "--coordinator",
            f"127.0.0.1:{port}",
            "--backoff-max-s",
            "0.2",
            "--tls-ca",
            str(TLS / "localhost.crt"),
            *policy,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # ... and one as a task here; the third facility stays in-process.
        edges.station(port, "station", "feeder-2", 150.4, backoff=Backoff(max_s=0.2),
                      credentials=channel_credentials(TLS / "localhost.crt"))
        app = typer.Typer()
        app.command()(cli_edge.coordinator)
        app.command()(cli_edge.station)
        out = tmp_path / "out"
        res = CliRunner().invoke(
            app,
            [
                "coordinator",
                "--scenario",
                scenario,
                "--port",
                str(port),
                "--expect-stations",
                "2",
                "--wait-s",
                "20",
                "--no-offline",
                "--out",
                str(out),
                "--tls-cert",
                str(TLS / "localhost.crt"),
                "--tls-key",
                str(TLS / "localhost.key"),
                *(["--station-policy", bundle] if learned else []),
            ],
            env=env,
        )
        assert res.exit_code == 0, res.output
        assert "(TLS)" in res.output
        assert "edge stations: depot, station; in-process: mall" in res.output
        said = " ".join(res.output.split())
        assert "0 fallback schedules, 0 messages refused" in said, res.output
        results = json.loads((out / "results.json").read_text())
        kpis = results["policies"]["coordinated+learned" if learned else "coordinated"]
        assert kpis["limit_violations"] == 0 and kpis["admm_missing_proposals"] == 0
        assert kpis["energy_delivered_kwh"] > 0
        # The coordinator said farewell: the station stops by itself, no fallback after the day.
        log, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=10)
    assert proc.returncode == 0, log
    assert "station depot stopped: the coordinator ended its run after step 23" in log, log
    assert "(TLS)" in log and "fallback" not in log


def test_tls_coordinator_refuses_plaintext_and_bad_key_files_are_named(
    serve, tmp_path
) -> None:
    _, port, _ = serve(["z1"], server_credentials=server_credentials(
        TLS / "localhost.crt", TLS / "localhost.key"))
    reg = pb.RegisterRequest(agent_id="s1", kind=pb.AGENT_KIND_STATION, grid_zone="z1",
                             max_power_kw=22.0)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.CoordinatorServiceStub(channel).Register(reg, metadata=MD, timeout=3)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    creds = channel_credentials(TLS / "localhost.crt")
    with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        got = pb_grpc.CoordinatorServiceStub(channel).Register(reg, metadata=MD, timeout=5)
        assert list(got.grid_zones) == ["z1"]
    # The commands refuse unusable TLS files before they start anything.
    app = typer.Typer()
    app.command()(cli_edge.coordinator)
    app.command()(cli_edge.station)
    text = tmp_path / "not.pem"
    text.write_text("hello")
    env = {"EVGRID_TOKEN": TOKEN}
    for args, says in (
        (["coordinator", "--tls-cert", str(TLS / "localhost.crt")], "--tls-key"),
        (["coordinator", "--tls-cert", str(TLS / "localhost.crt"), "--tls-key",
          str(tmp_path / "missing.key")], "cannot read the TLS private key"),
        (["station", "--station-id", "depot", "--tls-ca", str(text)], "is not PEM"),
    ):
        res = CliRunner().invoke(app, args, env=env)
        assert res.exit_code == 2 and says in " ".join(res.output.split()), (args, res.output)
