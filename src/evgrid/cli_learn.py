"""``evgrid train`` and ``evgrid tune``: RLlib training of the station and cohort agents.

Plain functions with typer annotations; ``evgrid.cli`` registers them. Ray, RLlib and torch
are imported inside the commands, after the options are checked, so a user error costs no
Ray start.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from evgrid.cli_options import OUT_HELP, OVERWRITE_HELP

if TYPE_CHECKING:
    from evgrid.learning.train import TrainSpec
    from evgrid.scenario.schema import Scenario

SPEC = "spec.json"

ScenarioOpt = Annotated[str, typer.Option(
    "--scenario", help="bundled scenario name (see `evgrid scenarios`) or a YAML file")]
AddressOpt = Annotated[str | None, typer.Option(
    help="join the Ray cluster at ADDRESS (host:port or ray://host:port; default: "
    "$RAY_ADDRESS, else embedded local Ray); under `ray job submit` Ray is already up")]
RewardWeightOpt = Annotated[list[str] | None, typer.Option(
    "--reward-weight", help="override one weight of the scenario's rewards section, KEY=VALUE "
    "(repeat), e.g. wait_per_min=0.05 to pay cohorts for their drivers' waiting")]


def _scenario(name: str, horizon_days: float | None,
              weights: list[str] | None) -> Scenario:
    from evgrid.cli import fail
    from evgrid.scenario import load_scenario, parse_scenario

    try:
        sc = load_scenario(name)
        update: dict[str, Any] = {}
        if horizon_days is not None:
            update["horizon_days"] = horizon_days
        if weights:
            rewards = sc.rewards.model_dump()
            for item in weights:
                key, sep, value = item.partition("=")
                if not sep or key not in rewards or key == "set":
                    raise ValueError(f"--reward-weight {item!r}: give KEY=VALUE with KEY one of "
                                     f"{sorted(k for k in rewards if k != 'set')}")
                try:
                    rewards[key] = float(value)
                except ValueError:
                    raise ValueError(f"--reward-weight {item!r}: {value!r} is not a number"
                                     ) from None
            update["rewards"] = rewards
        if update:  # the scenario's own checks, with its path-precise messages
            sc = parse_scenario({**sc.model_dump(mode="json"), **update},
                                source="the scenario with the command's overrides")
    except (OSError, ValueError) as exc:  # ScenarioError and pydantic's errors are ValueErrors
        raise fail(" ".join(str(exc).split())) from None
    return sc


def _print_evaluation(result: dict[str, Any]) -> None:
    from rich.table import Table

    from evgrid.cli import console

    def cell(stats: dict[str, float], fmt: str) -> str:
        return f"{stats['mean']:{fmt}} ± {stats['std']:{fmt}}"

    seeds = result["seeds"]
    where = f"{result['scenario']}, {len(seeds)} held-out seeds"
    if "stations" in result:
        t = Table(title=f"Stations: learned vs baselines ({where})", width=80)
        for col in ("policy", "objective", "gap %", "met %", "wait min"):
            t.add_column(col, justify="left" if col == "policy" else "right")
        for name, s in result["stations"].items():
            t.add_row(name, cell(s["objective"], ".1f"), cell(s["gap_pct"], ".1f"),
                      cell(s["demand_met_pct"], ".1f"), cell(s["wait_mean_min"], ".1f"))
        console.print(t)
    if "routing" in result:
        t = Table(title=f"Cohorts: learned vs nearest-free routing, LLF charging ({where})",
                  width=80)
        for col in ("routing", "wait+travel min", "travel km", "energy kWh"):
            t.add_column(col, justify="left" if col == "routing" else "right")
        for name, s in result["routing"].items():
            t.add_row(name, cell(s["wait_plus_travel_min"], ".1f"),
                      cell(s["travel_mean_km"], ".2f"), cell(s["energy_delivered_kwh"], ".0f"))
        console.print(t)


def _spec_to_json(spec: TrainSpec) -> dict[str, Any]:
    from dataclasses import asdict

    return {"scenario": spec.scenario.model_dump(mode="json"), "algo": spec.algo,
            "iterations": spec.iterations, "env_runners": spec.env_runners,
            "envs_per_runner": spec.envs_per_runner, "mapping": spec.mapping,
            "station_action": spec.station_action,
            "reward_set": spec.reward_set, "seed": spec.seed,
            "phase_iterations": spec.phase_iterations,
            "checkpoint_every": spec.checkpoint_every, "hyper": asdict(spec.hyper)}


def _spec_from_json(raw: dict[str, Any]) -> TrainSpec:
    from evgrid.learning.train import Hyper, TrainSpec
    from evgrid.scenario.schema import Scenario

    return TrainSpec(**{**raw, "scenario": Scenario.model_validate(raw["scenario"]),
                        "hyper": Hyper(**raw["hyper"])})


def train(
    scenario: ScenarioOpt = "small",
    algo: Annotated[str, typer.Option(
        help="sac: stations learn (multi-agent SAC, see --station-action); dqn: cohorts learn "
        "(double dueling DQN with prioritised replay, routing among the 3 nearest slots); "
        "alternate: phases of each, the other side frozen at its latest policy")] = "sac",
    iterations: Annotated[int, typer.Option(
        min=1, help="training iterations in all (each samples --steps-per-iteration env "
        "steps and updates); on --resume, the total to reach")] = 20,
    env_runners: Annotated[int, typer.Option(
        min=0, help="Ray actors sampling episodes (0: sample in the driver)")] = 0,
    envs_per_runner: Annotated[int, typer.Option(
        min=1, help="vectorised sub-environments per runner")] = 1,
    address: AddressOpt = None,
    out: Annotated[Path, typer.Option(help=OUT_HELP + "; holds training/ (checkpoints, "
                                      "tensorboard, metrics.jsonl) and export/ (the policies)")
                   ] = Path("runs/train"),
    overwrite: Annotated[bool, typer.Option(help=OVERWRITE_HELP)] = False,
    resume: Annotated[bool, typer.Option(
        help="continue the training in --out from its last checkpoint, with its settings "
        "(--iterations may raise the total)")] = False,
    mapping: Annotated[str, typer.Option(
        help="shared: one policy per kind of agent; per-agent: every station and cohort its "
        "own policy")] = "shared",
    station_action: Annotated[str, typer.Option(
        help="budget: a power cap per station (a share of its rating), dispatched least laxity "
        "first; fractions: one fraction per charger (padded to the largest station)")] = "budget",
    reward_set: Annotated[str | None, typer.Option(
        help="objective (−objective split over agents), seed000 (Eq. 32 of paper 000) or "
        "seed001 (§3.1 of paper 001) (default: the scenario's rewards.set)")] = None,
    reward_weight: RewardWeightOpt = None,
    phase_iterations: Annotated[int, typer.Option(
        min=1, help="alternate: iterations per phase")] = 5,
    checkpoint_every: Annotated[int, typer.Option(
        min=1, help="iterations between checkpoints (and at every phase's end)")] = 5,
    horizon_days: Annotated[float | None, typer.Option(
        min=0.01, max=7.0, help="episode length in days (default: the scenario's horizon)")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="RLlib's seed (networks, exploration)")] = 0,
    warmup_steps: Annotated[int, typer.Option(
        min=0, help="env steps sampled before the first update")] = 1000,
    steps_per_iteration: Annotated[int, typer.Option(
        min=1, help="env steps sampled per iteration, at least")] = 400,
    batch_size: Annotated[int, typer.Option(min=1, help="train batch per learner")] = 128,
    time_budget: Annotated[float | None, typer.Option(
        min=0.1, help="stop training after this many minutes (checkpointed), even if fewer "
        "than --iterations ran")] = None,
    eval_seeds: Annotated[int, typer.Option(
        min=0, help="held-out days to evaluate on at the end (0: skip)")] = 3,
    eval_coordinated: Annotated[bool, typer.Option(
        help="also evaluate the coordinated (ADMM) policy on the held-out days, and the "
        "coordinated stations executing their agreed power by the learned policy "
        "(coordinated+learned)")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar or table")] = False,
) -> None:
    """Train station (SAC) and/or cohort (DQN) policies on SCENARIO with RLlib, export them as
    TorchScript, and evaluate them on held-out days against LLF and the offline optimum.

    Run it unchanged on a cluster: ray job submit -- evgrid train ... (see README)."""
    from evgrid.cli import fail
    from evgrid.evaluation.output import OutputError, prepare_output
    from evgrid.learning.train import ALGOS, MAPPINGS, Hyper, TrainError, TrainSpec

    if algo not in ALGOS:
        raise fail(f"unknown algo {algo!r}: choose from {list(ALGOS)}")
    if mapping not in MAPPINGS:
        raise fail(f"unknown mapping {mapping!r}: choose from {list(MAPPINGS)}")
    from evgrid.envs.rewards import REWARD_SETS
    from evgrid.envs.station_actions import STATION_ACTIONS

    if station_action not in STATION_ACTIONS:
        raise fail(f"unknown station action {station_action!r}: choose from "
                   f"{sorted(STATION_ACTIONS)}")
    if reward_set is not None and reward_set not in REWARD_SETS:
        raise fail(f"unknown reward set {reward_set!r}: choose from {list(REWARD_SETS)}")
    try:
        target = prepare_output(out, overwrite=overwrite, files=("evaluation.json",))
    except OutputError as exc:
        raise fail(str(exc)) from None
    try:
        if resume:
            raw = json.loads((target.path / "training" / SPEC).read_text())
            spec = _spec_from_json(raw)
            spec.iterations = max(spec.iterations, iterations)
        else:
            sc = _scenario(scenario, horizon_days, reward_weight)
            spec = TrainSpec(sc, algo=algo, iterations=iterations, env_runners=env_runners,
                             envs_per_runner=envs_per_runner, mapping=mapping,
                             station_action=station_action,
                             reward_set=reward_set, seed=seed,
                             phase_iterations=phase_iterations,
                             checkpoint_every=checkpoint_every,
                             hyper=Hyper(warmup_steps=warmup_steps, batch_size=batch_size,
                                         steps_per_iteration=steps_per_iteration))
    except (OSError, ValueError, KeyError) as exc:
        raise fail(f"--out {out}: nothing to resume in it ({' '.join(str(exc).split())})"
                   ) from None
    quiet_ray_logs()
    from evgrid.transport.ray_actors import ensure_ray

    try:
        ensure_ray(address)  # before any folder is made: a wrong address leaves nothing behind
        work = target.claim_folder("training")
        export = target.claim_folder("export")
    except (ConnectionError, OutputError) as exc:
        raise fail(str(exc)) from None
    (work / SPEC).write_text(json.dumps(_spec_to_json(spec), indent=2))
    from evgrid.learning.train import train as run_training

    with _train_progress(quiet, spec.iterations) as tick:
        try:
            state = run_training(spec, work, export, resume=resume, on_iteration=tick,
                                 time_budget_s=None if time_budget is None else 60 * time_budget)
        except TrainError as exc:
            raise fail(str(exc)) from None
    typer.echo(f"trained {state.done} iterations ({state.per_algo}); policies in {export}",
               err=True)
    if eval_seeds:
        from evgrid.learning.evaluate import evaluate, held_out_seeds

        try:
            seeds = held_out_seeds(spec.scenario, eval_seeds)
        except ValueError as exc:
            raise fail(str(exc)) from None
        from evgrid.cli import progress_bar

        with progress_bar(quiet) as progress:
            result = evaluate(spec.scenario, export, seeds, coordinated=eval_coordinated,
                              progress=progress)
        try:
            target.write(lambda folder: _write_json(folder / "evaluation.json", result),
                         last="evaluation.json")
        except OutputError as exc:
            raise fail(str(exc), code=1) from None
        if not quiet:
            _print_evaluation(result)
    typer.echo(f"wrote {target.path}/ (export/, training/"
               f"{', evaluation.json' if eval_seeds else ''}); serve it with "
               f"evgrid run {spec.scenario.name} --policy learned:{target.path}", err=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2))


def quiet_ray_logs() -> None:
    """RLlib warns at every build that the new API stack is the default, and gymnasium at every
    registration; keep the terminal for the progress bar."""
    import warnings

    import ray.rllib  # noqa: F401  (sets its loggers' levels on import: override them after)

    warnings.filterwarnings("ignore", message=".*Overriding environment")
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("ray.rllib", "ray.tune", "ray._private.authentication")):
            logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("ray.rllib").setLevel(logging.ERROR)


def _train_progress(quiet: bool, total: int) -> Any:
    import contextlib

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from evgrid.cli import err

    @contextlib.contextmanager
    def bar() -> Any:
        with Progress(TextColumn("{task.description:<34}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                      console=err, disable=quiet) as p:
            task = p.add_task("training", total=total)

            def tick(i: int, n: int, algo: str, s: dict[str, float]) -> None:
                p.update(task, completed=i, total=n,
                         description=f"{algo} return {s['episode_return_mean']:.1f}")

            yield tick

    return bar()


def tune(
    scenario: ScenarioOpt = "small",
    samples: Annotated[int, typer.Option(min=1, help="trials the TPE searcher runs")] = 8,
    iterations: Annotated[int, typer.Option(min=1, help="training iterations per trial")] = 20,
    validation_days: Annotated[int, typer.Option(
        min=1, help="days each trial is scored on (neither training nor held-out days)")] = 2,
    concurrent: Annotated[int, typer.Option(
        min=1, help="trials at once (each takes one CPU)")] = 1,
    reward_set: Annotated[str | None, typer.Option(
        help="seed001 also searches its four reward weights (Table 2's columns); default: the "
        "scenario's rewards.set")] = None,
    horizon_days: Annotated[float | None, typer.Option(
        min=0.01, max=7.0, help="episode length in days (default: the scenario's horizon)")
    ] = None,
    address: AddressOpt = None,
    out: Annotated[Path, typer.Option(help=OUT_HELP + "; receives tune/ (Ray Tune's trials) "
                                      "and best.json")] = Path("runs/tune"),
    overwrite: Annotated[bool, typer.Option(help=OVERWRITE_HELP)] = False,
) -> None:
    """Search learning rates, γ, τ, batch size, network widths (and seed 001's reward weights)
    for the station policy with Ray Tune and Optuna's TPE: each trial trains with RLlib and is
    scored by the objective on validation days. Prints the trials, best first."""
    from evgrid.cli import console, fail
    from evgrid.envs.rewards import REWARD_SETS
    from evgrid.evaluation.output import OutputError, prepare_output
    from evgrid.learning.train import TrainSpec
    from evgrid.learning.tune import tune_run

    if reward_set is not None and reward_set not in REWARD_SETS:
        raise fail(f"unknown reward set {reward_set!r}: choose from {list(REWARD_SETS)}")
    sc = _scenario(scenario, horizon_days, None)
    try:
        target = prepare_output(out, overwrite=overwrite, files=("best.json",))
    except OutputError as exc:
        raise fail(str(exc)) from None
    quiet_ray_logs()
    from evgrid.transport.ray_actors import ensure_ray

    try:
        ensure_ray(address)  # before the folder is made: a wrong address leaves nothing behind
        folder = target.claim_folder("tune")
    except (ConnectionError, OutputError) as exc:
        raise fail(str(exc)) from None
    spec = TrainSpec(sc, algo="sac", iterations=iterations, reward_set=reward_set,
                     checkpoint_every=iterations)
    best = tune_run(spec, folder, samples=samples, days=validation_days, concurrent=concurrent)
    try:
        target.write(lambda f: _write_json(f / "best.json", best), last="best.json")
    except OutputError as exc:
        raise fail(str(exc), code=1) from None
    from rich.table import Table

    t = Table(title=f"evgrid tune: {sc.name}, {len(best['trials'])} trials, best first",
              width=80)
    for col in ("objective", "actor lr", "critic lr", "γ", "τ", "batch", "widths"):
        t.add_column(col, justify="right")
    for r in best["trials"]:
        t.add_row(f"{r['objective']:.1f}", f"{r['actor_lr']:.1e}", f"{r['critic_lr']:.1e}",
                  f"{r['gamma']:.3f}", f"{r['tau']:.3f}", str(r["batch_size"]), r["widths"])
    console.print(t)
    typer.echo(f"wrote {target.path}/ (best.json, tune/)", err=True)
