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
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from evgrid.cli_field import SpeedOption, StartAtOption
from evgrid.cli_options import OUT_HELP, OVERWRITE_HELP

if TYPE_CHECKING:
    from evgrid.transport.auth import Authenticator

TOKEN_ENV = "EVGRID_TOKEN"

CoordinatorTokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", envvar=TOKEN_ENV, show_default=False,
        help=f"a shared bearer token any station may use, for loopback experiments only "
        f"(default: the {TOKEN_ENV} environment variable); off loopback give --token-file or "
        "--tls-client-ca",
    ),
]
StationTokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", envvar=TOKEN_ENV, show_default=False,
        help=f"this station's bearer token (evgrid certs token STATION), or the shared one of a "
        f"loopback coordinator (default: the {TOKEN_ENV} environment variable, which keeps it "
        "out of the process list)",
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
    if not verbose:  # the OCPP link logs every message at INFO
        for name in ("ocpp", "websockets"):
            logging.getLogger(name).setLevel(logging.WARNING)


def _server_auth(token: str | None, token_file: Path | None, client_ca: Path | None,
                 host: str) -> Authenticator:
    """The coordinator's credentials check from its options (one-line errors, exit 2)."""
    from evgrid.cli import fail
    from evgrid.transport.auth import Authenticator, AuthError, read_token_file
    from evgrid.transport.grpc_server import is_loopback

    if token and not is_loopback(host):
        raise fail(f"a shared --token admits anyone who holds it as any station: it is for "
                   f"loopback only, not {host}; give each station its own credentials with "
                   "--token-file or --tls-client-ca")
    try:
        tokens = read_token_file(token_file) if token_file is not None else {}
        return Authenticator(shared_token=token or None, station_tokens=tokens,
                             client_certs=client_ca is not None)
    except AuthError as exc:
        raise fail(f"{exc}; give --token (loopback), --token-file or --tls-client-ca"
                   if "no credentials" in str(exc) else str(exc)) from None


def coordinator(
    scenario: ScenarioOption = "small",
    port: Annotated[int, typer.Option(min=0, max=65535,
                                      help="TCP port to listen on (0: any free port)")] = 50051,
    host: Annotated[str, typer.Option(
        help="address to listen on: 127.0.0.1 or ::1 (loopback), 0.0.0.0 or :: (every "
        "interface; then give TLS and per-station credentials)")] = "127.0.0.1",
    token: CoordinatorTokenOption = None,
    token_file: Annotated[Path | None, typer.Option(
        help="per-station tokens: a YAML file 'station_id: sha256:<hex>' (evgrid certs token "
        "STATION writes it); a station may then act only as itself")] = None,
    expect_stations: Annotated[
        int, typer.Option(min=0, help="edge stations to wait for before the day starts")
    ] = 0,
    wait_s: Annotated[float, typer.Option(min=0, help="longest wait for them, in seconds")] = 30.0,
    seed: Annotated[int | None, typer.Option(
        min=0, help="random seed, >= 0 (default: the scenario's)")] = None,
    out: Annotated[Path, typer.Option(help=OUT_HELP)] = Path("runs/grpc"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
    round_timeout_s: Annotated[
        float,
        typer.Option(
            min=0.01,
            help="how long one ADMM round waits for edge stations, in seconds; "
            "late ones are left out of that round, and dropped after 3 such rounds",
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
    tls_client_ca: Annotated[Path | None, typer.Option(
        help="require every station to present a certificate signed by this CA (PEM; "
        "evgrid certs init): the certificate names the station, no token needed; needs "
        "--tls-cert")] = None,
    resume: Annotated[Path | None, typer.Option(
        help="continue the interrupted day whose output folder this is, at the step after its "
        "checkpoint, with its scenario, seed and edge stations (they reconnect by themselves; "
        "until then they run on their fallback, which is reserved for them)")] = None,
    station_policy: Annotated[Path | None, typer.Option(
        help="a learned station policy (evgrid train --out DIR, or its export/ folder) that "
        "the facilities without an edge node execute their agreed power by, and that this "
        "side executes for an edge station gone silent (default: the plans, least laxity "
        "first)")] = None,
    field: Annotated[bool, typer.Option(
        "--field", help="field mode: no simulator; the day's periods run on the clock "
        "(--speed, --start-at) with the scenario's limits and prices, every station claims "
        "its state from its own chargers (evgrid station --site), and the KPIs are what "
        "they meter")] = False,
    speed: SpeedOption = 1.0,
    start_at: StartAtOption = None,
    steps: Annotated[int | None, typer.Option(
        min=1, help="--field: stop after this many periods (default: the scenario's day)")] = None,
) -> None:
    """Serve edge stations over gRPC and run the scenario's coordinated day with them."""

    from rich.markup import escape

    from evgrid.agents.coordinated import CoordinatedPolicy, station_registrations
    from evgrid.cli import (
        console,
        drop_checkpoint,
        err,
        fail,
        kpi_tables,
        open_resume,
        prepare_out,
        progress_bar,
        resume_hint,
        write_out,
    )
    from evgrid.envs.world import build_world
    from evgrid.evaluation.checkpoint import Checkpoint, CheckpointError
    from evgrid.evaluation.runner import run_experiment
    from evgrid.scenario import ScenarioError, check_memory, load_scenario
    from evgrid.transport.grpc_server import create_server, edge_transport, host_port, is_loopback

    _setup_logging(verbose)
    if transport not in {"inprocess", "ray"}:
        raise fail(f"unknown transport {transport!r}: choose from ['inprocess', 'ray']")
    if field and (resume is not None or station_policy is not None):
        raise fail("--field runs one day on the clock: no --resume or --station-policy")
    if (tls_cert is None) != (tls_key is None):
        raise fail("give both --tls-cert and --tls-key (or neither)")
    if tls_client_ca is not None and tls_cert is None:
        raise fail("--tls-client-ca needs TLS: give --tls-cert and --tls-key too")
    if station_policy is not None:
        from evgrid.agents.policies import COORDINATED_LEARNED, check_policy_names

        try:
            check_policy_names([f"{COORDINATED_LEARNED}{station_policy}"])
        except ValueError as exc:  # BundleError included
            raise fail(f"--station-policy {exc}") from None
    auth = _server_auth(token, token_file, tls_client_ca, host)
    credentials = None
    if tls_cert is not None and tls_key is not None:
        from evgrid.transport.tls import TlsError, server_credentials

        try:
            credentials = server_credentials(tls_cert, tls_key, client_ca=tls_client_ca)
        except TlsError as exc:
            raise fail(str(exc)) from None
    elif not is_loopback(host):
        err.print(f"[yellow]warning:[/] listening on {escape(host)} without TLS: the tokens and the "
                  "schedules cross the network in clear (see --tls-cert)", highlight=False)
    checkpoint, edge_before = None, []
    if resume is not None:
        target, checkpoint, sc = open_resume(resume, "coordinator")
        spec = checkpoint.spec
        seed, offline, transport = spec["seed"], bool(spec["offline"]), spec["transport"]
        edge_before = list(spec.get("edge", []))
        try:
            at = checkpoint.load_progress()
        except CheckpointError as exc:
            raise fail(str(exc)) from None
        err.print(f"resuming {sc.name} at step {at.step if at is not None else 0} (edge "
                  f"stations: {', '.join(edge_before) or 'none'})", highlight=False)
    else:
        try:
            sc = load_scenario(scenario)
            check_memory(sc, source=scenario)
        except ScenarioError as exc:
            raise fail(str(exc)) from None
        target = prepare_out(out, overwrite)
    world = build_world(sc)
    try:
        server, bound, hub = create_server(
            host_port(host, port),
            grid_zones=list(world.grid_ids),
            dt_h=world.dt_h,
            stations=station_registrations(world),
            auth=auth,
            round_timeout_s=round_timeout_s,
            server_credentials=credentials,
        )
    except RuntimeError as exc:  # grpc cannot bind the address
        raise fail(f"cannot listen on {host_port(host, port)}: {exc}") from None
    with server:
        err.print(f"coordinator for {sc.name} listening on {host_port(host, bound)}"
                  f"{' (TLS)' if credentials is not None else ''}"
                  f"{' (client certificates)' if tls_client_ca is not None else ''}",
                  highlight=False)
        if edge_before:  # the same split as before the restart, connected or not (yet)
            hub.preregister(edge_before)
            expect_stations = len(edge_before)
        if expect_stations > 0:
            n = hub.wait_for_stations(expect_stations, wait_s)
            if n < expect_stations and edge_before:
                err.print(f"[yellow]warning:[/] {n} of {expect_stations} edge stations back "
                          f"after {wait_s:g} s; the others run on their fallback until they "
                          "reconnect", highlight=False)
            elif n < expect_stations:
                err.print(
                    f"[yellow]warning:[/] {n} of {expect_stations} edge stations after "
                    f"{wait_s:g} s; the others run in-process",
                    highlight=False,
                )
        if field:
            _field_day(world, hub, target, speed, start_at, steps, quiet)
            return
        local = None
        if transport == "ray":
            from evgrid.transport.ray_actors import RayStations, ensure_ray

            ensure_ray()
            local = RayStations
        policy = CoordinatedPolicy(
            world, stations=edge_transport(hub, local), station_policy=station_policy,
            name="coordinated" if station_policy is None else "coordinated+learned")
        edge = sorted(r.agent_id for r in hub.registrations())
        err.print(
            f"edge stations: {', '.join(edge) or 'none'}; "
            f"{'Ray actors' if transport == 'ray' else 'in-process'}: "
            f"{', '.join(f for f in world.facility_ids if f not in edge) or 'none'}",
            highlight=False,
        )
        if checkpoint is None:
            checkpoint = Checkpoint.start(target.claim_folder("checkpoint"), {
                "command": "coordinator", "scenario": sc.model_dump(mode="json"), "seed": seed,
                "offline": offline, "transport": transport, "edge": edge})
        with progress_bar(quiet) as progress:
            try:
                exp = run_experiment(sc, [policy], seed=seed, world=world, with_offline=offline,
                                     progress=progress, checkpoint=checkpoint)
            except (KeyboardInterrupt, Exception) as exc:
                what = "interrupted" if isinstance(exc, KeyboardInterrupt) else (
                    f"the run failed: {' '.join(str(exc).split()) or type(exc).__name__}")
                raise fail(what + resume_hint(checkpoint, target, "coordinator"),
                           code=130 if isinstance(exc, KeyboardInterrupt) else 1) from None
        hub.farewell("the day is over", world.steps - 1)
        k = exp.kpis[policy.name]
        err.print(
            f"gRPC: {k['admm_missing_proposals']:,} proposals missed their round "
            f"({k['late_proposals']:,} came late), {k['admm_dropped_station_periods']:,} "
            f"station-periods dropped, {k['fallback_schedules']:,} fallback schedules, "
            f"{k['refused_messages']:,} messages refused",
            highlight=False,
        )
    write_out(exp, target)
    drop_checkpoint(target, checkpoint)
    if not quiet:
        for table in kpi_tables(exp, f"{sc.name} over gRPC (seed {exp.seed})"):
            console.print(table)
    console.print(f"wrote {target.path}/ (results.json, timeseries.csv, plots, report.html)")


async def _start_field_station(site_file: Any, world: Any, rated_kw: float, host: str, port: int,
                               speed: float, start_at: float | None) -> Any:
    """The station's CSMS, listening, and the site it reads (``evgrid station --site``)."""
    from evgrid.cli import err
    from evgrid.cli_field import field_clock
    from evgrid.field.csms import SiteCsms
    from evgrid.field.run import FieldStation
    from evgrid.field.site import Site

    clock = field_clock(speed, start_at)
    site = Site(site_file)
    csms = SiteCsms(site, host, port, clock=clock.now)
    bound = await csms.start()
    err.print(f"station {site_file.station_id}: OCPP 2.0.1 CSMS on ws://{host}:{bound} for "
              f"{', '.join(site.specs)}", highlight=False)
    return FieldStation(site, csms, world, clock, rated_kw)


def _field_day(world: Any, hub: Any, target: Any, speed: float, start_at: float | None,
               steps: int | None, quiet: bool) -> None:
    """``evgrid coordinator --field``: the day on the clock with the connected field stations."""
    from evgrid.cli import console, err, fail, progress_bar
    from evgrid.cli_field import field_clock, field_table, write_field_results
    from evgrid.evaluation.output import OutputError
    from evgrid.field.run import run_field_day

    clock = field_clock(speed, start_at)
    edge = sorted(r.agent_id for r in hub.registrations())
    err.print(f"field day: {len(edge)} stations ({', '.join(edge) or 'none'}), step 0 at "
              f"{clock.t0_s:.0f}, {speed:g}x real time", highlight=False)
    with progress_bar(quiet) as progress:
        try:
            day = run_field_day(world, hub, clock, steps=steps,
                                progress=lambda i, n: progress("field", i, n))
        except KeyboardInterrupt:
            raise fail("interrupted", code=130) from None
    hub.farewell("the day is over", day.steps - 1)
    kpis = day.kpis(world)
    stations = {a: {"executed_kwh": float(day.executed_kw[a].sum() * world.dt_h),
                    "metered_kwh": float(day.metered_kw[a].sum() * world.dt_h)}
                for a in sorted(day.executed_kw)}
    try:
        target.write(lambda stage: write_field_results(stage / "results.json", kpis, stations))
    except OutputError as exc:
        raise fail(str(exc)) from None
    if not quiet:
        console.print(field_table(kpis, stations))


def station(
    station_id: Annotated[
        str | None, typer.Option(help="facility id this edge node serves (one of the "
                                 "scenario's; with --site, the site file's)")
    ] = None,
    coordinator: Annotated[
        str, typer.Option(help="coordinator address, host:port ([::1]:50051 for IPv6)")
    ] = "127.0.0.1:50051",
    scenario: ScenarioOption = "small",
    token: StationTokenOption = None,
    backoff_max_s: Annotated[
        float, typer.Option(min=0.01, help="longest wait between reconnection attempts, in "
                            "seconds")
    ] = 5.0,
    step_s: Annotated[float | None, typer.Option(
        min=0.001,
        help="real seconds per control step of the station's own clock, which executes its "
        "fallback (last envelope, then its safe share) while the link is down (default: the "
        "scenario's step, real time; give e.g. 0.05 beside a simulating coordinator)")] = None,
    setpoint_log: Annotated[Path | None, typer.Option(
        help="append every step set on the chargers to this CSV "
        "(step,kw,chargers,fallback): each step appears once")] = None,
    tls: Annotated[bool, typer.Option(
        help="connect over TLS, trusting the system's certificate authorities")] = False,
    tls_ca: Annotated[Path | None, typer.Option(
        help="connect over TLS, trusting this CA (or the coordinator's self-signed "
        "certificate), PEM")] = None,
    tls_cert: Annotated[Path | None, typer.Option(
        help="this station's client certificate, PEM (evgrid certs issue STATION), for a "
        "coordinator that requires one; needs --tls-key")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="the private key of --tls-cert, PEM")] = None,
    policy: Annotated[Path | None, typer.Option(
        help="a learned station policy (evgrid train --out DIR, or its export/ folder; torch "
        "only, no Ray): the station executes its agreed power, and its fallback budget when "
        "the link is down, by it (default: its plan, least laxity first)")] = None,
    site: Annotated[Path | None, typer.Option(
        help="field mode: this station's site file (its charge points); it serves them as "
        "their OCPP 2.0.1 CSMS and claims its state from what they report (the coordinator "
        "runs with --field)")] = None,
    ocpp_host: Annotated[str, typer.Option(
        help="--site: address the CSMS listens on for the charge points")] = "127.0.0.1",
    ocpp_port: Annotated[int, typer.Option(
        min=0, max=65535, help="--site: port of the CSMS (ws://HOST:PORT/<charge point id>)")
    ] = 9000,
    speed: SpeedOption = 1.0,
    start_at: StartAtOption = None,
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

    import numpy as np

    from evgrid.agents.bundle import BundleError
    from evgrid.agents.coordinated import (
        station_chargers,
        station_config,
        station_safe_share,
        station_specs,
    )
    from evgrid.agents.edge import EdgeStation
    from evgrid.cli import err, fail
    from evgrid.envs.world import build_world
    from evgrid.scenario import ScenarioError, load_scenario
    from evgrid.transport.grpc_station import Backoff, LinkState, StationRefused, run_station

    _setup_logging(verbose)
    if not re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^:\s]+):\d{1,5}", coordinator):
        raise fail(f"--coordinator {coordinator!r} is not host:port (e.g. 127.0.0.1:50051, "
                   "[::1]:50051, grid.example.org:443)")
    if (tls_cert is None) != (tls_key is None):
        raise fail("give both --tls-cert and --tls-key (or neither)")
    if not token and tls_cert is None:
        raise fail(f"give --token (or set {TOKEN_ENV}) or a client certificate "
                   "(--tls-cert/--tls-key): the coordinator refuses calls without credentials")
    credentials = None
    if tls or tls_ca is not None or tls_cert is not None:
        from evgrid.transport.tls import TlsError, channel_credentials

        try:
            credentials = channel_credentials(tls_ca, cert=tls_cert, key=tls_key)
        except TlsError as exc:
            raise fail(str(exc)) from None
    site_file = None
    if site is not None:
        from evgrid.field.site import SiteError, load_site

        try:
            site_file = load_site(site)
        except SiteError as exc:
            raise fail(f"--site {exc}") from None
        if station_id not in (None, site_file.station_id):
            raise fail(f"--station-id {station_id!r} but the site file is "
                       f"{site_file.station_id!r}'s")
        station_id = site_file.station_id
    if station_id is None:
        raise fail("give --station-id (or --site)")
    try:
        world = build_world(load_scenario(scenario))
    except ScenarioError as exc:
        raise fail(str(exc)) from None
    ids, zones, caps = station_specs(world)
    if station_id not in ids:
        raise fail(f"station {station_id!r} is not a facility of {scenario}: one of {ids}")
    i = ids.index(station_id)
    if site_file is not None:
        n = sum(c.evses for c in site_file.chargers)
        if n != station_chargers(world)[i]:
            raise fail(f"--site {site}: {n} EVSEs, but the city file gives {station_id} "
                       f"{station_chargers(world)[i]} chargers (they are numbered alike)")
    log_file, link = None, LinkState()
    if setpoint_log is not None:
        # The log is also the station's memory: restarted, it continues after the last step it
        # set on its chargers and never applies one twice.
        link.executed_step = _last_logged_step(setpoint_log)
        try:
            log_file = setpoint_log.open("a", encoding="utf-8")
        except OSError as exc:
            raise fail(f"--setpoint-log {setpoint_log}: {exc.strerror or exc}") from None
        if log_file.tell() == 0:
            log_file.write("step,kw,chargers,fallback\n")
    # The local-problem weights must be the coordinator's: both read them from the scenario,
    # and so is the safe share it reserves for this station when it falls silent.
    try:
        edge = EdgeStation(station_id, zones[i], caps[i], station_config(
            world, policy_dir=None if policy is None else str(policy)),
            chargers=station_chargers(world)[i],
            safe_share_kw=station_safe_share(world, station_id))
    except BundleError as exc:
        raise fail(f"--policy {exc}") from None

    field_station: Any = None

    def on_setpoints(step: int, chargers: np.ndarray, kw: np.ndarray, fallback: bool) -> None:
        if field_station is not None:
            field_station.setpoints(step, chargers, kw, fallback)
        if log_file is not None:
            log_file.write(f"{step},{float(np.sum(kw)):.6f},{len(chargers)},{int(fallback)}\n")
            log_file.flush()

    async def serve() -> None:
        nonlocal field_station
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Not available off the main thread or off POSIX: Ctrl-C then just interrupts.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        step = world.dt_h * 3600.0 / speed
        if site_file is not None:
            field_station = await _start_field_station(site_file, world, caps[i], ocpp_host,
                                                       ocpp_port, speed, start_at)
        await run_station(
            coordinator,
            token=token or None,
            station_id=station_id,
            grid_zone=zones[i],
            max_power_kw=caps[i],
            stop=stop,
            edge=edge,
            backoff=Backoff(max_s=backoff_max_s),
            credentials=credentials,
            step_s=step_s if step_s is not None else step,
            on_setpoints=on_setpoints if log_file is not None or site_file else None,
            read_state=None if field_station is None else field_station.read_state,
            read_power=None if field_station is None else field_station.read_power,
            link=link,
        )
        if field_station is not None:
            await field_station.drain()
            await field_station.csms.close()
            err.print(field_station.summary(), highlight=False, soft_wrap=True)

    err.print(f"station {station_id} ({zones[i]}, {caps[i]:g} kW) -> {coordinator}"
              f"{' (TLS)' if credentials is not None else ''}", highlight=False)
    try:
        asyncio.run(serve())
    except StationRefused as exc:  # credentials or a TLS setting to fix: the user's to change
        raise fail(str(exc)) from None
    except OSError as exc:  # the CSMS cannot listen
        raise fail(f"--ocpp-port {ocpp_port}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:  # Ctrl-C before the loop took the signal: stopped all the same
        pass
    finally:
        if log_file is not None:
            log_file.close()
    why = f": {link.farewell}" if link.farewell else ""
    err.print(f"station {station_id} stopped{why}", highlight=False)


def _last_logged_step(path: Path) -> int:
    """The last step a set-point log records (-1: none, or no such file). A torn last line
    (the process died mid-write) is skipped."""
    last = -1
    try:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                head = line.split(",", 1)[0]
                if head.lstrip("-").isdigit() and line.endswith("\n"):
                    last = max(last, int(head))
    except OSError:
        return -1
    return last
