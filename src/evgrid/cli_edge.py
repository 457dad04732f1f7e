"""``evgrid coordinator`` and ``evgrid station``: the gRPC deployment from the command line.

The coordinator simulates the scenario's day and runs the ADMM coordinator; facilities whose
edge node registered are solved there, over ``CoordinatorService``, every other facility
in-process. Each ``evgrid station`` is one edge node (sim-in-the-loop: the coordinator's
simulation sends it its chargers' state each period). Plain functions with typer annotations;
``evgrid.cli`` registers them. Heavy imports stay inside the commands (and ``evgrid.cli`` is
imported lazily, because it imports this module).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

TOKEN_ENV = "EVGRID_TOKEN"

TokenOption = Annotated[
    str | None,
    typer.Option(
        envvar=TOKEN_ENV,
        show_default=False,
        help=f"shared bearer token (default: the {TOKEN_ENV} environment variable)",
    ),
]
ScenarioOption = Annotated[
    str, typer.Option(help="bundled scenario name (see `evgrid scenarios`) or a YAML file")
]


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _need_token(token: str | None) -> str:
    from evgrid.cli import fail

    if not token:
        raise fail(f"give --token or set {TOKEN_ENV}: the coordinator refuses calls without it")
    return token


def coordinator(
    scenario: ScenarioOption = "small",
    port: Annotated[int, typer.Option(help="TCP port to listen on (0: any free port)")] = 50051,
    host: Annotated[
        str, typer.Option(help="address to listen on (0.0.0.0: every interface; use TLS then)")
    ] = "127.0.0.1",
    token: TokenOption = None,
    expect_stations: Annotated[
        int, typer.Option(help="edge stations to wait for before the day starts")
    ] = 0,
    wait_s: Annotated[float, typer.Option(help="longest wait for them, in seconds")] = 30.0,
    seed: Annotated[int | None, typer.Option(help="random seed (default: the scenario's)")] = None,
    out: Annotated[Path, typer.Option(help="output folder, written atomically")] = Path(
        "runs/grpc"
    ),
    round_timeout_s: Annotated[
        float,
        typer.Option(
            help="how long one ADMM round waits for edge stations, in seconds; "
            "late ones are left out of that round"
        ),
    ] = 2.0,
    offline: Annotated[bool, typer.Option(help="solve the offline-optimal LP bound")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or table")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
    transport: Annotated[str, typer.Option(
        help="where the facilities without an edge node run: 'inprocess' or 'ray' (one Ray "
        "actor per station: a coordinator serving Ray actors and gRPC edge nodes at once)",
    )] = "inprocess",
    tls_cert: Annotated[Path | None, typer.Option(
        help="serve over TLS with this certificate (chain), PEM; needs --tls-key")] = None,
    tls_key: Annotated[Path | None, typer.Option(
        help="the private key of --tls-cert, PEM")] = None,
) -> None:
    """Serve edge stations over gRPC and run the scenario's coordinated day with them."""

    from evgrid.agents.coordinated import CoordinatedPolicy
    from evgrid.cli import console, err, fail, kpi_table, progress_bar
    from evgrid.envs.world import build_world
    from evgrid.evaluation.report import write_experiment
    from evgrid.evaluation.runner import run_experiment
    from evgrid.scenario import ScenarioError, load_scenario
    from evgrid.transport.grpc_server import create_server, edge_transport

    _setup_logging(verbose)
    token = _need_token(token)
    if (tls_cert is None) != (tls_key is None):
        raise fail("give both --tls-cert and --tls-key (or neither)")
    credentials = None
    if tls_cert is not None and tls_key is not None:
        from evgrid.transport.tls import TlsError, server_credentials

        try:
            credentials = server_credentials(tls_cert, tls_key)
        except TlsError as exc:
            raise fail(str(exc)) from None
    elif host not in {"127.0.0.1", "localhost", "::1"}:
        err.print(f"[yellow]warning:[/] listening on {host} without TLS: the token and the "
                  "schedules cross the network in clear (see --tls-cert)", highlight=False)
    try:
        sc = load_scenario(scenario)
    except ScenarioError as exc:
        raise fail(str(exc)) from None
    world = build_world(sc)
    try:
        server, bound, hub = create_server(
            f"{host}:{port}",
            grid_zones=list(world.grid_ids),
            dt_h=world.dt_h,
            token=token,
            round_timeout_s=round_timeout_s,
            station_ids=world.facility_ids,
            server_credentials=credentials,
        )
    except RuntimeError as exc:  # grpc cannot bind the address
        raise fail(f"cannot listen on {host}:{port}: {exc}") from None
    with server:
        err.print(f"coordinator for {sc.name} listening on {host}:{bound}"
                  f"{' (TLS)' if credentials is not None else ''}", highlight=False)
        if expect_stations > 0:
            n = hub.wait_for_stations(expect_stations, wait_s)
            if n < expect_stations:
                err.print(
                    f"[yellow]warning:[/] {n} of {expect_stations} edge stations after "
                    f"{wait_s:g} s; the others run in-process",
                    highlight=False,
                )
        local = None
        if transport == "ray":
            from evgrid.transport.ray_actors import RayStations, ensure_ray

            ensure_ray()
            local = RayStations
        elif transport != "inprocess":
            raise fail(f"unknown transport {transport!r}: choose from ['inprocess', 'ray']")
        policy = CoordinatedPolicy(world, stations=edge_transport(hub, local), name="coordinated")
        hub.attach(policy.coordinator)
        edge = sorted(r.agent_id for r in hub.registrations())
        err.print(
            f"edge stations: {', '.join(edge) or 'none'}; "
            f"{'Ray actors' if transport == 'ray' else 'in-process'}: "
            f"{', '.join(f for f in world.facility_ids if f not in edge) or 'none'}",
            highlight=False,
        )
        with progress_bar(quiet) as progress:
            exp = run_experiment(
                sc, [policy], seed=seed, world=world, with_offline=offline, progress=progress
            )
        s = hub.stats
        err.print(
            f"gRPC: {s.missing_proposals} proposals missed their round, {s.late_proposals} "
            f"came late, {s.fallbacks} fallback schedules, refused {s.refused or 'none'}",
            highlight=False,
        )
    write_experiment(exp, out)
    if not quiet:
        console.print(kpi_table(exp, f"{sc.name} over gRPC (seed {exp.seed})"))
    console.print(f"wrote {out}/ (results.json, timeseries.csv, plots, report.html)")


def station(
    station_id: Annotated[
        str, typer.Option(help="facility id this edge node serves (one of the scenario's)")
    ],
    coordinator: Annotated[
        str, typer.Option(help="coordinator address, host:port")
    ] = "127.0.0.1:50051",
    scenario: ScenarioOption = "small",
    token: TokenOption = None,
    backoff_max_s: Annotated[
        float, typer.Option(help="longest wait between reconnection attempts, in seconds")
    ] = 5.0,
    tls: Annotated[bool, typer.Option(
        help="connect over TLS, trusting the system's certificate authorities")] = False,
    tls_ca: Annotated[Path | None, typer.Option(
        help="connect over TLS, trusting this CA (or the coordinator's self-signed "
        "certificate), PEM")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    """Run one edge station agent against the coordinator until Ctrl-C."""
    # One BLAS and one kernel thread per edge process: many of them share a machine. This is
    # a fresh process and neither numpy nor numba has loaded yet, so the settings take.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if "numba" not in sys.modules:
        os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    import asyncio
    import contextlib
    import signal

    from evgrid.agents.coordinated import station_config, station_specs
    from evgrid.cli import err, fail
    from evgrid.envs.world import build_world
    from evgrid.scenario import ScenarioError, load_scenario
    from evgrid.transport.grpc_station import Backoff, StationRefused, run_station

    _setup_logging(verbose)
    token = _need_token(token)
    credentials = None
    if tls or tls_ca is not None:
        from evgrid.transport.tls import TlsError, channel_credentials

        try:
            credentials = channel_credentials(tls_ca)
        except TlsError as exc:
            raise fail(str(exc)) from None
    try:
        world = build_world(load_scenario(scenario))
    except ScenarioError as exc:
        raise fail(str(exc)) from None
    ids, zones, caps = station_specs(world)
    if station_id not in ids:
        raise fail(f"station {station_id!r} is not a facility of {scenario}: one of {ids}")
    i = ids.index(station_id)
    # The local-problem weights must be the coordinator's: both read them from the scenario.
    config = station_config(world)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Not available off the main thread or off POSIX: Ctrl-C then just interrupts.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await run_station(
            coordinator,
            token=token,
            station_id=station_id,
            grid_zone=zones[i],
            max_power_kw=caps[i],
            stop=stop,
            config=config,
            backoff=Backoff(max_s=backoff_max_s),
            credentials=credentials,
        )

    err.print(f"station {station_id} ({zones[i]}, {caps[i]:g} kW) -> {coordinator}"
              f"{' (TLS)' if credentials is not None else ''}", highlight=False)
    try:
        asyncio.run(serve())
    except StationRefused as exc:
        raise fail(str(exc), code=1) from None
    err.print(f"station {station_id} stopped", highlight=False)
