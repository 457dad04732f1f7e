"""``evgrid layout`` and ``evgrid evaluate paper-000``: seed 000's spatial layout layer, and its
Tables 3 and 4 evaluated beside the paper's figures (000_f74a305f822cf870.txt)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from evgrid.cli_options import OUT_HELP, OVERWRITE_HELP
from evgrid.evaluation.paper_tables import PaperTable

if TYPE_CHECKING:
    from evgrid.scenario.schema import Scenario

evaluate_app = typer.Typer(help="Reproduce a source paper's evaluation beside its own figures.",
                           no_args_is_help=True)


def _load(scenario: str) -> Scenario:
    from evgrid.cli import fail
    from evgrid.scenario import ScenarioError, check_memory, load_scenario

    try:
        sc = load_scenario(scenario)
        check_memory(sc, source=scenario)
    except ScenarioError as exc:
        raise fail(str(exc)) from None
    return sc


ARRIVALS_SCALE_HELP = ("multiply the city's arrivals per day (the bundled cities queue for "
                       "no charger at 1x; 1.4 makes zones fill, 2 saturates the city)")


def _scaled(sc: Scenario, arrivals_scale: float) -> Scenario:
    """The scenario with ``arrivals_scale`` × its arrivals; beyond the schema's bound is one
    line and exit 2."""
    from evgrid.cli import fail
    from evgrid.scenario.bounds import MAX_ARRIVALS_PER_DAY

    n = sc.arrivals_per_day * arrivals_scale
    if n > MAX_ARRIVALS_PER_DAY:
        raise fail(f"--arrivals-scale {arrivals_scale:g}: {n:,.0f} arrivals per day is more "
                   f"than {MAX_ARRIVALS_PER_DAY:,.0f}")
    return sc.model_copy(update={"arrivals_per_day": n})


def layout(
    scenario: Annotated[str, typer.Argument(
        help="bundled scenario name (see `evgrid scenarios`) or a YAML file; its first "
        "facility's lot is laid out")] = "lot2102",
    out: Annotated[Path, typer.Option(help=OUT_HELP)] = Path("runs/layout"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
    facility: Annotated[str | None, typer.Option(
        help="the facility to lay out (default: the first)")] = None,
    length_m: Annotated[float | None, typer.Option(
        min=1, help="floor length [m] (default: a square floor of 10 m² per space)")] = None,
    width_m: Annotated[float | None, typer.Option(
        min=1, help="floor width [m] (default: as --length-m)")] = None,
    cell_m: Annotated[float, typer.Option(
        min=0.5, max=100, help="side of the grid cells the zone ILP assigns [m]; at most "
        "20,000 cells")] = 5.0,
    seed: Annotated[int, typer.Option(min=0, help="seed of the Lloyd iteration")] = 0,
) -> None:
    """Compute the SoC zones of a lot (Lloyd/Voronoi seeds, the zone-boundary ILP, chargers per
    zone; Eq. 4-7 of seed 000) and the island layout's spatial efficiency; write layout.png,
    layout.json and a scenario.yaml with the computed zones that `evgrid run` accepts."""
    from evgrid.cli import console, fail, prepare_out
    from evgrid.evaluation.output import OutputError
    from evgrid.optim.layout import LAYOUT_FILES, plan_layout, write_layout

    sc = _load(scenario)
    target = prepare_out(out, overwrite, files=LAYOUT_FILES)
    try:
        lay = plan_layout(sc, facility, length_m=length_m, width_m=width_m, cell_m=cell_m,
                          seed=seed)
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        def fill(tmp: Path) -> None:
            write_layout(lay, sc, tmp)

        folder = target.write(fill, last="layout.json")
    except OutputError as exc:
        raise fail(str(exc), code=1) from None
    s = lay.summary()
    table = Table(title=f"layout of {escape(str(s['facility']))}", width=80)
    for col in ("zone", "SoC", "area [m²]", "spaces", "chargers"):
        table.add_column(col, justify="right" if col != "zone" else "left")
    for name, z in s["zones"].items():
        rng = "—" if z["soc_range"] is None else f"{z['soc_range'][0]:.2f}-{z['soc_range'][1]:.2f}"
        table.add_row(name, rng, f"{z['area_m2']:,.0f}", str(z["spaces"]), str(z["chargers"]))
    console.print(table)
    ilp, isl = s["ilp"], s["islands"]
    console.print(f"ILP objective {ilp['objective']:.5g}, MIP gap {ilp['mip_gap']:.2g}, "
                  f"{ilp['solve_time_s']:.2f} s; islands: D_max {isl['d_max']}, spatial "
                  f"efficiency ratio {isl['efficiency_ratio']:.2f} against a 2.8 m-wide layout")
    console.print(f"written to {escape(str(folder))} (scenario.yaml runs with evgrid run)")


@evaluate_app.command("paper-000")
def paper_000(
    out: Annotated[Path, typer.Option(help=OUT_HELP)] = Path("runs/paper-000"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
    scenario: Annotated[str, typer.Option(
        help="the lot to evaluate on (bundled name or YAML file)")] = "lot2102",
    seeds: Annotated[int, typer.Option(min=1, max=100, help="seeds 0..N-1; the tables give "
                                       "the mean ± standard deviation over them")] = 5,
    quick: Annotated[bool, typer.Option(
        "--quick", help="one seed, normal and failures only, the lot at a quarter of its size "
        "at 30-minute steps, the allocation locked to its rolling-horizon heuristic: a smoke "
        "test of the whole pipeline, not figures to quote")] = False,
    arrivals_scale: Annotated[float, typer.Option(
        min=0.1, max=20, help="multiply the lot's arrivals per day (lot2102 as bundled fills "
        "~10 % of its spaces; the paper's lot is 73-83 % occupied)")] = 1.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Seed 000's Table 3 (traditional FCFS, single-layer scheduling, non-coordinated and
    coordinated three layers) and Table 4 (normal, peak 150 %, 30 % charger failures, price
    swings, combined, extreme weather) on lot2102, each figure beside the paper's."""
    from evgrid.cli import console, fail, prepare_out, progress_bar
    from evgrid.evaluation.output import OutputError
    from evgrid.evaluation.paper000 import LIGHTWEIGHT, evaluate_paper000, quick_scenario
    from evgrid.evaluation.paper000_report import FILES, table3_rows, table4_rows, write_paper000

    sc = _scaled(_load(scenario), arrivals_scale)
    target = prepare_out(out, overwrite, files=FILES)
    kinds, acas = None, None
    if quick:
        acas = LIGHTWEIGHT
        sc, seeds, kinds = quick_scenario(sc), 1, ["normal", "failures"]
    try:
        with progress_bar(quiet) as progress:
            res = evaluate_paper000(sc, list(range(seeds)), scenarios=kinds, acas=acas,
                                    progress=progress)
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        folder = write_paper000(res, target)
    except OutputError as exc:
        raise fail(str(exc), code=1) from None
    if not quiet:
        _print_tables([
            PaperTable("Table 3 of 000: ours ± sd (paper)", ["metric", "trad.", "1-layer",
                                                             "3L no fb", "3L"], table3_rows(res)),
            PaperTable("Table 4 of 000: ours ± sd (paper)", ["scenario", "conv. [s]", "gap [%]",
                                                             "adapt."], table4_rows(res))])
    console.print(f"written to {escape(str(folder))} (report.html)")


def _print_tables(tables: list[PaperTable]) -> None:
    from evgrid.cli import console

    for tab in tables:
        t = Table(title=tab.title, width=80)
        for h in tab.head:
            t.add_column(h, overflow="fold")
        for r in tab.rows:
            t.add_row(*(escape(c) for c in r))
        console.print(t)


def _evaluate(out: Path, overwrite: bool, quiet: bool, title: str, notes: list[str],
              tables: Callable[[Any], list[PaperTable]],
              evaluate: Callable[[Callable[[str, int, int], None]], Any]) -> None:
    """What every ``evgrid evaluate paper-NNN`` but 000 does around its evaluation: check
    ``--out``, run with a progress bar, write results.json and report.html, print the tables.
    A ValueError of the evaluation is a user error (one line, exit 2)."""
    from evgrid.cli import console, fail, prepare_out, progress_bar
    from evgrid.evaluation.output import OutputError
    from evgrid.evaluation.paper_tables import write_report

    target = prepare_out(out, overwrite, files=("results.json", "report.html"))
    try:
        with progress_bar(quiet) as progress:
            res = evaluate(progress)
    except ValueError as exc:
        raise fail(str(exc)) from None
    tabs = tables(res)
    try:
        folder = write_report(target, res.to_json(), tabs, title=title,
                              intro=f"Seeds {res.seeds}: ours, mean ± sd over the seeds, with "
                              "the paper's figure in brackets where it gives one.", notes=notes)
    except OutputError as exc:
        raise fail(str(exc), code=1) from None
    if not quiet:
        _print_tables(tabs)
    console.print(f"written to {escape(str(folder))} (report.html)")


@evaluate_app.command("paper-003")
def paper_003(
    out: Annotated[Path, typer.Option(help=OUT_HELP)] = Path("runs/paper-003"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
    scenario: Annotated[str, typer.Option(
        help="the city the forecast is validated and the routers compared on (bundled name "
        "or YAML file)")] = "city",
    seeds: Annotated[int, typer.Option(min=1, max=100, help="seeds 0..N-1; the tables give "
                                       "the mean ± standard deviation over them")] = 3,
    quick: Annotated[bool, typer.Option(
        "--quick", help="one seed, the smallest instances and the 'small' city: a smoke test "
        "of the whole pipeline, not figures to quote")] = False,
    arrivals_scale: Annotated[float, typer.Option(min=0.1, max=20, help=ARRIVALS_SCALE_HELP)
                              ] = 1.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Seed 003: HASP, DE, bees and tabu against the exact GAP optimum (success rate, gap,
    time) beside the paper's table; the M/M/c/c availability forecast validated against the
    simulator's queues; and the assignment as a router beside nearest-free and the cohorts."""
    from evgrid.evaluation.paper003 import PAPER_NOTES, evaluate_paper003, tables

    sc = _scaled(_load("small" if quick else scenario), arrivals_scale)
    _evaluate(out, overwrite, quiet, "Seed 003 on " + sc.name, PAPER_NOTES, tables,
              lambda progress: evaluate_paper003(sc, list(range(1 if quick else seeds)),
                                                 quick=quick, progress=progress))


@evaluate_app.command("paper-004")
def paper_004(
    out: Annotated[Path, typer.Option(help=OUT_HELP)] = Path("runs/paper-004"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
    scenario: Annotated[str, typer.Option(
        help="the city whose drivers reserve (its cohorts' reservation_share) — the arrival "
        "forecast is trained on it and its routing compared (bundled name or YAML file)")
    ] = "city",
    seeds: Annotated[int, typer.Option(min=1, max=100, help="seeds 0..N-1; the tables give "
                                       "the mean ± standard deviation over them")] = 3,
    matcher: Annotated[Path | None, typer.Option(
        help="a reserved-vehicle matcher trained by `evgrid train-matcher --out DIR` (the "
        "dueling double DQN of §4): adds ACP with it beside ACP with the nearest pile")
    ] = None,
    quick: Annotated[bool, typer.Option(
        "--quick", help="one seed, a short forecast fit, a 6-hour region and the 'small' "
        "city: a smoke test of the whole pipeline, not figures to quote")] = False,
    arrivals_scale: Annotated[float, typer.Option(min=0.1, max=20, help=ARRIVALS_SCALE_HELP)
                              ] = 1.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Seed 004: the high-priority arrival forecast (attention-LSTM beside LSTM,
    seasonal-naive and the per-hour mean), the reserved-pile table beside the paper's, FIFS,
    RFWDA and ACP on its regional model, and reservations on the city simulator."""
    from evgrid.cli import fail
    from evgrid.evaluation.paper004 import PAPER_NOTES, evaluate_paper004, tables

    sc = _scaled(_load("small" if quick else scenario), arrivals_scale)
    loaded = None
    if matcher is not None:
        from evgrid.learning.reservation_dqn import DqnMatcher

        try:
            loaded = DqnMatcher.load(matcher)
        except ValueError as exc:
            raise fail(f"--matcher: {exc}") from None
    _evaluate(out, overwrite, quiet, "Seed 004 on " + sc.name, PAPER_NOTES, tables,
              lambda progress: evaluate_paper004(
                  sc, list(range(1 if quick else seeds)), quick=quick, matcher=loaded,
                  matcher_name=None if matcher is None else str(matcher), progress=progress))


def train_matcher(
    out: Annotated[Path, typer.Option(help="folder for matcher.pt and matcher.json (missing "
                                      "or empty unless --overwrite)")] = Path("runs/matcher"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help=OVERWRITE_HELP)] = False,
    iterations: Annotated[int, typer.Option(
        min=1, max=10_000, help="training iterations of 1,000 environment steps each (the "
        "paper's 20,000 rounds are 20)")] = 20,
    reserved_rate: Annotated[float, typer.Option(
        min=0.1, max=500, help="reservation vehicles per hour in the region (paper: 14-26)")
    ] = 26.0,
    walkin_rate: Annotated[float, typer.Option(
        min=0.0, max=500, help="walk-in vehicles per hour in the region (paper: 9-14)")] = 14.0,
    seed: Annotated[int, typer.Option(min=0, help="training seed")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
) -> None:
    """Train seed 004's reserved-vehicle matcher (§4: RLlib DQN, dueling, double Q,
    prioritised replay) on its regional model and export it for `evgrid evaluate paper-004
    --matcher DIR` (runs on embedded local Ray, 2 CPUs)."""
    from evgrid.cli import console, fail, progress_bar
    from evgrid.cli_learn import quiet_ray_logs
    from evgrid.learning.reservation_dqn import MatcherHyper
    from evgrid.learning.reservation_dqn import train_matcher as train

    env = {"reserved_rate_per_h": reserved_rate, "walkin_rate_per_h": walkin_rate}
    quiet_ray_logs()
    try:
        with progress_bar(quiet) as progress:
            path = train(env, out, hyper=MatcherHyper(iterations=iterations), seed=seed,
                         overwrite=overwrite,
                         progress=lambda i, n, _s: progress("DQN iterations", i, n))
    except ValueError as exc:
        raise fail(str(exc)) from None
    console.print(f"matcher written to {escape(str(path))} (use: evgrid evaluate paper-004 "
                  f"--matcher {escape(str(path.parent))})")
