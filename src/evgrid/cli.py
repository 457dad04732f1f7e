"""The ``evgrid`` command line (typer + rich).

Heavy imports stay inside the commands so ``evgrid --help`` answers at once. A user error is
one line and exit code 2; a failure of the run itself (Ray died, a policy crashed) is one line
and exit code 1, with what to do; a traceback is shown only with ``EVGRID_DEBUG=1``.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from evgrid.cli_options import OUT_HELP, OVERWRITE_HELP

if TYPE_CHECKING:
    from evgrid.evaluation.checkpoint import Checkpoint
    from evgrid.evaluation.output import OutputTarget
    from evgrid.evaluation.runner import Experiment
    from evgrid.scenario.schema import Scenario

app = typer.Typer(
    name="evgrid",
    help="City-wide EV charging coordination: simulate a city, compare policies with the "
    "offline optimum, write KPIs, plots and an HTML report.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # help texts use [kW], [min]: units, not markup
)
# The KPI tables split themselves to fit the width (80 when piped, as rich assumes).
console = Console()
err = Console(stderr=True)

DEFAULT_POLICIES = ["uncontrolled", "fcfs", "round_robin", "edf", "llf", "coordinated"]


TariffOption = Annotated[
    str | None,
    typer.Option(help="a tariff: acnportal's tariff JSON (time-of-use prices by season and "
                 "weekday, demand charge in $/kW on each billing window's peak) or a bundled "
                 "one by name (sce_tou_ev_4, evening_peak, solar_midday); replaces the "
                 "scenario's energy prices"),
]
PolicyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--policy",
        "-p",
        help="policy to run; repeat for several (default: " + ", ".join(DEFAULT_POLICIES)
        + "; also mpc: the coordinated policy's problem solved centrally, one cvxpy solve a "
        "period, slow at city scale; learned:DIR: the station policy exported by "
        "evgrid train --out DIR; and coordinated+learned:DIR: the coordinated stations, each "
        "executing its agreed power by that policy)",
    ),
]


@contextlib.contextmanager
def progress_bar(quiet: bool) -> Iterator[Callable[[str, int, int], None]]:
    """A rich progress bar with one row per named task; yields the runner's progress callback."""
    from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description:<16}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done)

        yield progress


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as one error (escaped: a YAML error's ``[...]`` is not rich markup)
    and return the Exit to raise."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def prepare_out(out: Path, overwrite: bool, label: str = "--out",
                files: tuple[str, ...] | None = None) -> OutputTarget:
    """Check ``--out`` before any work (``evgrid.evaluation.output``): a bad one fails in 0 s.
    ``files``: what the command will write there (default: a run's files)."""
    from evgrid.evaluation.output import OutputError, prepare_output
    from evgrid.evaluation.report import EXPERIMENT_FILES

    try:
        return prepare_output(out, overwrite=overwrite, files=files or EXPERIMENT_FILES,
                              label=label)
    except OutputError as exc:
        raise fail(str(exc)) from None


def write_out(exp: Experiment, target: OutputTarget) -> None:
    """Write the run's files; the disk may have changed since ``prepare_out``."""
    from evgrid.evaluation.output import OutputError
    from evgrid.evaluation.report import write_experiment

    try:
        write_experiment(exp, target)
    except OutputError as exc:
        raise fail(str(exc), code=1) from None


def drop_checkpoint(target: OutputTarget, checkpoint: Checkpoint) -> None:
    """Remove a finished run's checkpoint; if that fails the results stand, and it is said."""
    from evgrid.evaluation.output import OutputError

    try:
        target.remove_evgrid_path(checkpoint.folder.name)
    except (OutputError, OSError) as exc:
        err.print(f"[yellow]warning:[/] the results are written, but the checkpoint stays: "
                  f"{escape(str(exc))}", highlight=False)


def kpi_tables(exp: Experiment, title: str, width: int | None = None) -> list[Table]:
    """The KPI table, one column per policy, split into as many tables as it takes to read at
    ``width`` columns (the console's; 80 in a narrow terminal): a table never wraps a row.
    The coordinated policy's own figures (ADMM, transport) follow in a table of their own."""
    from evgrid.evaluation.report import TABLE_KPIS, agreement_kpis, format_gap, format_value

    names = list(exp.kpis)
    gaps = exp.gap_to_optimal_pct()

    def cell(n: str, k: str) -> str:
        return format_value(exp.kpis[n][k]) if k in exp.kpis[n] else "—"

    def split(rows: list[str], cols: list[str], label: int) -> list[list[str]]:
        widths = {n: max(len(n), *(len(cell(n, k)) for k in rows)) + 3 for n in cols}
        room = (width or console.width) - label - 4  # the label column and the borders
        chunks: list[list[str]] = [[]]
        used = 0
        for n in cols:
            if chunks[-1] and used + widths[n] > room:
                chunks.append([])
                used = 0
            chunks[-1].append(n)
            used += widths[n]
        return chunks

    def build(rows: list[str], cols: list[str], heading: str, gap_row: bool) -> list[Table]:
        label = max(len(k) for k in [*rows, "gap to optimum [%]" if gap_row else ""])
        chunks = split(rows, cols, label)
        out = []
        for i, chunk in enumerate(chunks):
            part = f" ({i + 1}/{len(chunks)})" if len(chunks) > 1 else ""
            table = Table(title=escape(heading + part), show_lines=False)
            table.add_column("KPI", style="bold", no_wrap=True)
            for n in chunk:
                table.add_column(n, justify="right", no_wrap=True,
                                 style="cyan" if n == "offline_optimal" else None)
            for k in rows:
                table.add_row(k, *(cell(n, k) for n in chunk))
            if gap_row and gaps:
                table.add_row("gap to optimum [%]",
                              *(format_gap(gaps[n]) if n in gaps else "—" for n in chunk),
                              style="bold")
            out.append(table)
        return out

    tables = build(TABLE_KPIS, names, title, gap_row=True)
    own, with_own = agreement_kpis(exp)
    if own and with_own:
        tables += build(own, with_own, "agreement (ADMM) and transport", gap_row=False)
    return tables


def run_and_report(
    scenario: Scenario,
    policies: list[Any],
    *,
    seed: int | None,
    target: OutputTarget,
    offline: bool,
    quiet: bool,
    sessions: Any = None,
    world: Any = None,
    factory: Any = None,
    routing: str = "nearest",
    cohort_host: Any = None,
    checkpoint: Checkpoint | None = None,
) -> None:
    """Shared by ``run`` and ``replay``: simulate with a progress bar, solve the bound, write
    the folder, print the KPI table. A run that fails keeps its checkpoint and says how to
    continue it."""
    from evgrid.evaluation.runner import run_experiment
    from evgrid.scenario.recorded import RecordedDataError

    with progress_bar(quiet) as progress:
        try:
            exp = run_experiment(
                scenario,
                list(policies),
                seed=seed,
                sessions=sessions,
                world=world,
                with_offline=offline,
                progress=progress,
                routing=routing,
                cohort_host=cohort_host,
                checkpoint=checkpoint,
                **({"factory": factory} if factory is not None else {}),
            )
        except RecordedDataError as exc:  # a sessions_csv / price_csv named by the scenario
            raise fail(str(exc)) from None
        except KeyboardInterrupt:
            raise fail("interrupted" + resume_hint(checkpoint, target), code=130) from None
        except Exception as exc:
            raise fail(f"the run failed: {_one_line(exc)}{_ray_hint(exc)}"
                       f"{resume_hint(checkpoint, target)}", code=1) from exc
    with _ray_shutting_down():  # Ray is done: it stops (≈1.5 s) while the report is written
        write_out(exp, target)
    if checkpoint is not None:
        drop_checkpoint(target, checkpoint)
    if not quiet:
        for table in kpi_tables(exp, f"{scenario.name} (seed {exp.seed})"):
            console.print(table)
        if exp.offline is not None:
            console.print(
                f"offline LP: {exp.offline.n_variables:,} variables, "
                f"{exp.offline.solver} {exp.offline.solve_s:.2f} s"
            )
    console.print(f"wrote {target.path}/ (results.json, timeseries.csv, plots, report.html)")


#: Whether this command started (or joined) Ray, and so may shut it down.
_started_ray = False


@contextlib.contextmanager
def _ray_shutting_down() -> Iterator[None]:
    """Shut Ray down in the background during the block, if this command started it."""
    global _started_ray
    ray = sys.modules.get("ray")
    if not _started_ray or ray is None or not ray.is_initialized():
        yield
        return
    _started_ray = False
    import threading

    stopping = threading.Thread(target=ray.shutdown, name="evgrid-ray-shutdown", daemon=True)
    stopping.start()
    try:
        yield
    finally:
        stopping.join(30)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def resume_hint(checkpoint: Checkpoint | None, target: OutputTarget, command: str = "run") -> str:
    """What a failed or interrupted run kept, and the command that continues it."""
    if checkpoint is None:
        return ""
    done = checkpoint.finished()
    kept = f"; finished policies ({', '.join(done)}) are kept" if done else ""
    return f"{kept}; continue with: evgrid {command} --resume {target.path}"


def _ray_hint(exc: BaseException) -> str:
    """What to do when Ray itself failed (out of memory, dead workers, no cluster)."""
    if type(exc).__module__.startswith("ray"):
        return (" (Ray failed; run without it: --transport inprocess, or with fewer actors: "
                "--stations-per-actor N)")
    return ""


def _run_spec(sc: Scenario, policies: list[str], seed: int | None, offline: bool,
              transport: str, stations_per_actor: int | None, routing: str,
              coordinator_actor: bool, station_resource: str | None) -> dict[str, Any]:
    return {"command": "run", "scenario": sc.model_dump(mode="json"), "seed": seed,
            "policies": policies, "offline": offline, "transport": transport,
            "stations_per_actor": stations_per_actor, "routing": routing,
            "coordinator_actor": coordinator_actor, "station_resource": station_resource}


@app.command()
def run(
    scenario: Annotated[
        str, typer.Argument(help="bundled scenario name (see `evgrid scenarios`) or a YAML file")
    ] = "city",
    policy: PolicyOption = None,
    seed: Annotated[int | None, typer.Option(
        min=0, help="random seed, >= 0 (default: the scenario's)")] = None,
    out: Annotated[Path, typer.Option(help=OUT_HELP)] = Path("runs/latest"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
    resume: Annotated[Path | None, typer.Option(
        help="continue the interrupted run whose output folder this is, at the step after "
        "its checkpoint, with its own scenario and options (the others given are ignored); "
        "finished policies are not run again")] = None,
    days: Annotated[float | None, typer.Option(help="override the horizon [days]")] = None,
    dt_min: Annotated[int | None, typer.Option(help="override the control period Δt [min]")] = None,
    tariff: TariffOption = None,
    offline: Annotated[bool, typer.Option(help="solve the offline-optimal LP bound")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or table")] = False,
    transport: Annotated[str, typer.Option(
        help="how the coordinated policy's agents talk: 'ray' (station packs as Ray actors, "
        "the coordinator in this process unless --coordinator-actor; starts embedded local "
        "Ray) or 'inprocess'")] = "ray",
    address: Annotated[str | None, typer.Option(
        help="existing Ray cluster, e.g. ray://head:10001 (default: $RAY_ADDRESS, else a "
        "local embedded Ray)")] = None,
    stations_per_actor: Annotated[int | None, typer.Option(
        min=1, help="stations hosted by one Ray actor (default: packed onto as many actors as "
        "the machine has CPUs, less the driver's, and memory for; 1 = one actor per station)")
    ] = None,
    coordinator_actor: Annotated[bool, typer.Option(
        "--coordinator-actor", help="run the ADMM coordinator as a Ray actor of its own, "
        "restarted and restored if it dies (default: in the driver, one hop less a round)")
    ] = False,
    station_resource: Annotated[str | None, typer.Option(
        help="place every station actor on Ray nodes that offer this custom resource (start "
        "them with ray start --resources '{\"NAME\": 1000}'; each actor takes 0.001 of it), "
        "e.g. the worker nodes of a cluster (default: wherever Ray puts them)")] = None,
    routing: Annotated[str, typer.Option(
        help="how arriving drivers pick a facility zone: 'nearest' (nearest free charger in "
        "their SoC zone), 'cohorts' (shares agreed by the cohort agents by ADMM), 'layered' "
        "(seed 000's allocation layer: MIP, PSO or a rolling horizon by problem size, a full "
        "SoC zone overflowing into the general zone), 'assignment' (seed 003: each step's "
        "arrivals by the drive + walk + fee assignment with range limits and a queueing "
        "forecast of the wait; 'assignment-radius' also keeps each driver to 003's allocation "
        "region, a radius by its SoC and the city's occupancy), 'reservations' (seed 004: chargers held for drivers who "
        "reserve, walk-ins spread by simulated annealing) or "
        "'learned:DIR' (the cohort policies exported by evgrid train --out DIR)")] = "nearest",
) -> None:
    """Simulate SCENARIO with each policy and the offline optimum; write KPIs, plots, report."""
    from evgrid.agents.policies import COORDINATED_LEARNED, check_policy_names
    from evgrid.evaluation.checkpoint import Checkpoint, CheckpointError
    from evgrid.evaluation.runner import check_routing
    from evgrid.scenario import ScenarioError, check_memory, load_scenario, parse_scenario

    checkpoint = None
    if resume is not None:
        target, checkpoint, sc = open_resume(resume, "run")
        spec = checkpoint.spec
        policies, seed, offline = list(spec["policies"]), spec["seed"], bool(spec["offline"])
        transport, stations_per_actor = spec["transport"], spec["stations_per_actor"]
        routing, coordinator_actor = spec["routing"], bool(spec.get("coordinator_actor"))
        station_resource = spec.get("station_resource")
        try:
            at = checkpoint.load_progress()
        except CheckpointError as exc:
            raise fail(str(exc)) from None
        where = f"; {at.policy} continues after step {at.step}" if at is not None else ""
        err.print(f"resuming {sc.name}: finished {', '.join(checkpoint.finished()) or 'none'}"
                  f"{where}", highlight=False)
    else:
        try:
            sc = load_scenario(scenario)
            overrides = {k: v for k, v in (("horizon_days", days), ("dt_min", dt_min))
                         if v is not None}
            if tariff is not None:
                sc = with_tariff(sc, tariff)
            if overrides:
                sc = parse_scenario({**sc.model_dump(mode="json"), **overrides}, source=scenario)
            check_memory(sc, source=scenario)
        except ScenarioError as exc:
            raise fail(str(exc)) from None
        policies = policy or DEFAULT_POLICIES
        try:
            check_policy_names(policies)
        except ValueError as exc:
            raise fail(str(exc)) from None
    if transport not in {"ray", "inprocess"}:
        raise fail(f"unknown transport {transport!r}: choose from ['ray', 'inprocess']")
    if station_resource is not None and (transport != "ray" or not re.fullmatch(
            r"[A-Za-z_][A-Za-z0-9_.-]{0,99}", station_resource)):
        raise fail(f"--station-resource {station_resource!r}: a Ray resource name (letters, "
                   "digits, _ . -) with --transport ray")
    try:
        check_routing(routing)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if resume is None:
        target = prepare_out(out, overwrite)
    factory = None
    cohort_host = None
    to_go = [p for p in policies if checkpoint is None or p not in checkpoint.finished()]
    on_agents = [p for p in to_go if p == "coordinated" or p.startswith(COORDINATED_LEARNED)]
    if transport == "ray" and (on_agents or (routing == "cohorts" and to_go)):
        start_ray(address)
        if on_agents:
            factory = ray_factory(stations_per_actor, coordinator_actor, station_resource)
        if routing == "cohorts":
            from evgrid.transport.ray_actors import ray_cohort_host

            cohort_host = ray_cohort_host
    if checkpoint is None:
        checkpoint = Checkpoint.start(
            target.claim_folder("checkpoint"),
            _run_spec(sc, policies, seed, offline, transport, stations_per_actor, routing,
                      coordinator_actor, station_resource))
    world, to_run = None, list[Any](policies)
    if factory is not None and "coordinated" in to_go:
        from evgrid.envs.world import build_world

        # Built now, its actors start in the background while the cohorts agree and the
        # baselines run (≈3 s of process start-up off the critical path).
        world = build_world(sc)
        to_run[policies.index("coordinated")] = factory("coordinated", world)
        _preload_in_background()
    run_and_report(sc, to_run, seed=seed, target=target, offline=offline, quiet=quiet,
                   world=world, factory=factory, routing=routing, cohort_host=cohort_host,
                   checkpoint=checkpoint)


def with_tariff(sc: Scenario, tariff: str) -> Scenario:
    """``sc`` billed on ``tariff`` (a JSON file or a bundled tariff's name) instead of its own
    energy prices (a ``ScenarioError`` that names the file when it cannot be read)."""
    from evgrid.scenario import ScenarioError
    from evgrid.scenario.tariff import TariffError, read_tariff

    try:
        parsed = read_tariff(tariff)
    except TariffError as exc:
        raise ScenarioError(f"--tariff: {exc}") from None
    if sc.prices.price_csv is not None:
        raise ScenarioError("--tariff: the scenario takes its prices from prices.price_csv; "
                            "give one or the other")
    from pydantic import ValidationError

    from evgrid.scenario.loader import format_validation_error

    try:  # validated again with the tariff: every simulated day must have its prices
        return type(sc).model_validate({**dict(sc), "tariff": parsed})
    except ValidationError as exc:
        first = format_validation_error(exc).splitlines()[0]
        raise ScenarioError(f"--tariff: {first}") from None


def _preload_in_background() -> None:
    """Import the offline LP's and the report's libraries (≈2 s) while the driver mostly waits
    on Ray, instead of after the run."""
    import threading

    def load() -> None:
        with contextlib.suppress(Exception):  # the real import reports any problem
            import cvxpy  # noqa: F401
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot

    threading.Thread(target=load, name="evgrid-preload", daemon=True).start()


def open_resume(folder: Path, command: str) -> tuple[OutputTarget, Checkpoint, Scenario]:
    """The output folder, checkpoint and scenario of an interrupted ``evgrid COMMAND`` run (one
    line and exit 2 when there is none, or it is another command's)."""
    from evgrid.evaluation.checkpoint import Checkpoint, CheckpointError
    from evgrid.scenario import ScenarioError, parse_scenario

    target = prepare_out(folder, overwrite=False, label="--resume")
    try:
        checkpoint = Checkpoint.open(target.path / "checkpoint")
        spec = checkpoint.spec
        if spec.get("command") != command:
            raise CheckpointError(f"{folder}: a checkpoint of `evgrid {spec.get('command')}`, "
                                  "resume it with that command")
        return target, checkpoint, parse_scenario(spec["scenario"],
                                                  source=f"{folder} (checkpoint)")
    except (CheckpointError, ScenarioError) as exc:
        raise fail(str(exc)) from None


def start_ray(address: str | None) -> None:
    """Start or join Ray, or fail in one line saying why and what else to do."""
    global _started_ray
    import ray

    from evgrid.transport.ray_actors import ensure_ray

    with err.status("starting Ray"):
        try:
            _started_ray = not ray.is_initialized()
            ensure_ray(address)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
            where = address or os.environ.get("RAY_ADDRESS") or "a local Ray"
            raise fail(f"cannot start or reach {where}: {_one_line(exc)} (check --address, or "
                       "run without Ray: --transport inprocess)") from None


def ray_factory(stations_per_actor: int | None, coordinator_actor: bool = False,
                station_resource: str | None = None) -> Callable[[str, Any], Any]:
    """Policy factory that builds the coordinated policy on Ray actors (Ray already up)."""
    from evgrid.agents.policies import COORDINATED_LEARNED, learned_folder, make_policy

    def factory(name: str, world: Any) -> Any:
        folder = learned_folder(name)
        if name != "coordinated" and not name.startswith(COORDINATED_LEARNED):
            return make_policy(name, world)
        from evgrid.transport.ray_actors import ray_coordinated_policy

        with err.status("starting the agent actors"):
            return ray_coordinated_policy(world, stations_per_actor=stations_per_actor,
                                          coordinator_actor=coordinator_actor,
                                          station_policy=folder,
                                          station_resource=station_resource)

    return factory


@app.command()
def scenarios(
    schema: Annotated[bool, typer.Option(
        "--schema", help="print the scenario file's JSON schema (every field, its unit, "
        "default and allowed range) instead of the list")] = False,
) -> None:
    """List the bundled scenarios (or print the scenario schema)."""
    from evgrid.scenario import bundled_names, load_scenario

    if schema:
        import json

        from evgrid.scenario.schema import Scenario

        typer.echo(json.dumps(Scenario.model_json_schema(), indent=1))
        return
    table = Table("name", "facilities", "chargers", "grid zones", "cohorts", "days", "description")
    for name in bundled_names():
        sc = load_scenario(name)
        chargers = sum(z.chargers.count for f in sc.facilities for z in f.zones.values())
        table.add_row(
            name,
            str(len(sc.facilities)),
            str(chargers),
            str(len(sc.grid_zones)),
            str(len(sc.cohorts)),
            f"{sc.horizon_days:g}",
            escape(sc.description),
        )
    console.print(table)


@app.command()
def validate(path: Annotated[Path, typer.Argument(help="scenario YAML file")]) -> None:
    """Check a scenario file; errors name the field path, the bad value and the rule."""
    from evgrid.scenario import ScenarioError, check_memory, load_scenario

    try:
        sc = load_scenario(path)
        check_memory(sc, source=str(path))
    except ScenarioError as exc:
        raise fail(str(exc)) from None
    console.print(f"[green]ok[/]: {escape(sc.name)}: {len(sc.facilities)} facilities, "
                  f"{sc.steps} steps")


@app.command()
def replay(
    sessions_csv: Annotated[
        Path,
        typer.Argument(
            help="recorded sessions: arrival, departure (ISO 8601 with UTC offset or Z), "
            "requested_energy_kwh, optional station_id"
        ),
    ],
    chargers: Annotated[int, typer.Option(help="chargers at the site (one EV each)")],
    charger_kw: Annotated[float, typer.Option(help="rating of each charger, in kW")],
    site_limit_kw: Annotated[
        float, typer.Option(help="grid connection of the site: limit on its total power, in kW")
    ],
    dt_min: Annotated[
        int, typer.Option(help="control period Δt in minutes; must divide an hour")
    ] = 5,
    start: Annotated[
        str | None,
        typer.Option(
            help="horizon start, ISO 8601 (no offset = UTC) (default: midnight UTC of the "
            "first arrival's day)"
        ),
    ] = None,
    days: Annotated[
        float | None,
        typer.Option(help="horizon length in days (default: whole days up to the last departure)"),
    ] = None,
    price_csv: Annotated[
        Path | None,
        typer.Option(
            help="hourly prices: columns timestamp,price_per_kwh or ev2gym's "
            "'Datetime (UTC),Price (EUR/MWhe)' (default: flat 0.25 per kWh)"
        ),
    ] = None,
    tariff: TariffOption = None,
    arrival_col: Annotated[str, typer.Option(help="column holding the arrival time")] = "arrival",
    departure_col: Annotated[
        str, typer.Option(help="column holding the departure time")
    ] = "departure",
    energy_col: Annotated[
        str, typer.Option(help="column holding the energy taken, in kWh")
    ] = "requested_energy_kwh",
    station_col: Annotated[
        str, typer.Option(help="column holding the station id (optional in the file)")
    ] = "station_id",
    policy: PolicyOption = None,
    out: Annotated[Path, typer.Option(help=OUT_HELP)] = Path("runs/replay"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
    offline: Annotated[bool, typer.Option(help="solve the offline-optimal LP bound")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or table")] = False,
) -> None:
    """Replay recorded SESSIONS_CSV at one site with each policy and the offline optimum.

    Bad rows are skipped and reported before the run; the output is laid out as `evgrid run`'s.
    """
    from evgrid.agents.policies import check_policy_names
    from evgrid.envs.world import build_world
    from evgrid.evaluation.replay import (
        check_nonempty,
        check_replay_options,
        horizon_notes,
        parse_utc,
        replay_start,
        single_site_scenario,
    )
    from evgrid.scenario import check_memory
    from evgrid.scenario.recorded import prices_for_horizon, read_price_csv, read_sessions_csv

    policies = policy or DEFAULT_POLICIES
    try:
        check_policy_names(policies)
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:  # before reading a large CSV
        check_replay_options(chargers=chargers, charger_kw=charger_kw,
                             site_limit_kw=site_limit_kw, dt_min=dt_min, days=days)
    except ValueError as exc:
        raise fail(str(exc)) from None
    target = prepare_out(out, overwrite)
    try:
        recorded = read_sessions_csv(
            sessions_csv,
            arrival_col=arrival_col,
            departure_col=departure_col,
            energy_col=energy_col,
            station_col=station_col,
        )
        if recorded.skipped:
            err.print(f"[yellow]warning:[/] {escape(recorded.skip_report())}", highlight=False)
        t0 = replay_start(recorded, parse_utc(start) if start is not None else None)
        sc, sessions = single_site_scenario(
            recorded,
            chargers=chargers,
            charger_kw=charger_kw,
            site_limit_kw=site_limit_kw,
            dt_min=dt_min,
            start=t0,
            days=days,
        )
        check_memory(sc, source=str(sessions_csv))
        for note in horizon_notes(recorded, sc, t0):
            err.print(f"[yellow]warning:[/] {escape(note)}", highlight=False)
        check_nonempty(recorded, sessions)
        world = None
        if tariff is not None and price_csv is not None:
            raise fail("give --tariff or --price-csv, not both (the tariff sets the energy "
                       "price)")
        if tariff is not None:
            sc = with_tariff(sc, tariff)
            world = build_world(sc, start=t0)
        if price_csv is not None:
            stamps, prices = read_price_csv(price_csv)
            world = build_world(
                sc, price_per_kwh=prices_for_horizon(stamps, prices, t0, sc.steps, sc.dt_h)
            )
    except (OSError, ValueError) as exc:  # RecordedDataError and ScenarioError are ValueErrors
        raise fail(str(exc)) from None
    run_and_report(sc, policies, seed=None, target=target, offline=offline, quiet=quiet,
                   sessions=sessions, world=world)


def _register_commands() -> None:
    """`evgrid coordinator`, `evgrid station` (the gRPC side, evgrid.cli_edge), `evgrid
    chargepoint-sim` (evgrid.cli_field), `evgrid certs` (evgrid.cli_certs), `evgrid train`
    and `evgrid tune` (evgrid.cli_learn), `evgrid layout`, `evgrid evaluate` and
    `evgrid train-matcher` (the seeds' own evaluations, evgrid.cli_paper)."""
    from evgrid.cli_certs import app as certs_app
    from evgrid.cli_edge import coordinator, station
    from evgrid.cli_field import chargepoint_sim
    from evgrid.cli_learn import train, tune
    from evgrid.cli_paper import evaluate_app, layout, train_matcher

    app.command("coordinator")(coordinator)
    app.command("station")(station)
    app.command("chargepoint-sim")(chargepoint_sim)
    app.command("train")(train)
    app.command("tune")(tune)
    app.command("layout")(layout)
    app.command("train-matcher")(train_matcher)
    app.add_typer(evaluate_app, name="evaluate")
    app.add_typer(certs_app, name="certs")


_register_commands()


def main() -> None:
    """The console script. A usage error (unknown option, value out of range) is one line and
    exit 2, like every other user error; SIGTERM runs ``finally`` blocks (temporaries are
    removed); an error that is evgrid's bug, not the user's, is one line too (exit 1) unless
    ``EVGRID_DEBUG=1`` asks for the traceback."""
    from evgrid.evaluation.output import sigterm_as_exit

    # gRPC's core logs every failed TLS handshake on stderr; evgrid says what matters, once.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    with sigterm_as_exit():
        try:
            code = app(standalone_mode=False)
        except typer.Abort:
            err.print("[bold red]error:[/] interrupted", highlight=False)
            sys.exit(130)
        except typer.TyperException as exc:  # click's usage errors, vendored by typer
            ctx = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
                typer.echo(ctx.get_help())  # `evgrid` alone: the help, as --help gives it
                sys.exit(0)
            where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            err.print(f"[bold red]error:[/] {escape(text)}{escape(where)}", highlight=False,
                      soft_wrap=True)
            sys.exit(int(getattr(exc, "exit_code", 2)))
        except Exception as exc:
            if os.environ.get("EVGRID_DEBUG"):
                raise
            err.print(f"[bold red]error:[/] {escape(_one_line(exc))} ({type(exc).__name__}; "
                      "EVGRID_DEBUG=1 shows the traceback)", highlight=False, soft_wrap=True)
            sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
