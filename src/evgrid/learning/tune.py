"""``evgrid tune``: Bayesian (TPE) search over the learning's hyper-parameters and reward weights.

This is seed 001's upper level (§3.2.1 of 001_e88dfec58fd7eed4.txt: a Bayesian layer tunes the
lower layer's learning and the weights of its reward): each Ray Tune trial trains the station
policy with RLlib (``evgrid.learning.train``) and scores it by the objective the offline LP
minimises (the "comprehensive cost") on validation days, which are neither training days
nor the held-out days ``evgrid train`` evaluates on. The searcher is Optuna's TPE through Ray
Tune's ``OptunaSearch``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from evgrid.learning.train import TrainSpec

#: Validation days: above the held-out evaluation seeds, below the training ones.
VALIDATION_OFFSET = 100_000
#: Network widths the search may pick (Tune's choice needs hashable values).
WIDTHS = {"256-256-128": [256, 256, 128], "128-128": [128, 128], "64-64": [64, 64]}
#: seed 001's reward weights (Table 2's columns), searched when the reward set is seed001.
REWARD_WEIGHTS_001 = ("w_cost_001", "w_emission", "w_soc", "w_user")


def search_space(spec: TrainSpec) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {
        "actor_lr": tune.loguniform(1e-4, 1e-3),
        "critic_lr": tune.loguniform(1e-4, 1e-3),
        "gamma": tune.uniform(0.95, 0.995),
        "tau": tune.loguniform(1e-3, 2e-2),
        "batch_size": tune.choice([64, 128, 256]),
        "widths": tune.choice(sorted(WIDTHS)),
    }
    if (spec.reward_set or spec.scenario.rewards.set) == "seed001":
        space.update({w: tune.uniform(0.0, 1.0) for w in REWARD_WEIGHTS_001})
    return space


def apply(spec: TrainSpec, config: dict[str, Any]) -> TrainSpec:
    """The trial's spec: the base spec with the sampled values."""
    hyper = replace(spec.hyper, actor_lr=config["actor_lr"], critic_lr=config["critic_lr"],
                    gamma=config["gamma"], tau=config["tau"], batch_size=config["batch_size"],
                    station_hidden=list(WIDTHS[config["widths"]]))
    scenario = spec.scenario
    weights = {w: config[w] for w in REWARD_WEIGHTS_001 if w in config}
    if weights:
        scenario = scenario.model_copy(
            update={"rewards": scenario.rewards.model_copy(update=weights)})
    return replace(spec, hyper=hyper, scenario=scenario, algo="sac", env_runners=0)


def validation_objective(spec: TrainSpec, export: Path, days: int) -> float:
    """Mean objective of the learned stations over the validation days (no offline LP)."""
    from evgrid.evaluation.runner import run_experiment

    seeds = [spec.scenario.seed + VALIDATION_OFFSET + k for k in range(days)]
    return float(np.mean([
        run_experiment(spec.scenario, [f"learned:{export}"], seed=s,
                       with_offline=False).kpis["learned"]["objective"] for s in seeds]))


def tune_run(spec: TrainSpec, out: Path, *, samples: int, days: int,
             concurrent: int = 1) -> dict[str, Any]:
    """Run ``samples`` trials of ``spec.iterations`` iterations; return the best and all."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from evgrid.learning.train import train

    def trial(config: dict[str, Any]) -> None:
        import ray.tune

        s = apply(spec, config)
        here = Path(ray.tune.get_context().get_trial_dir())
        train(s, here / "training", here / "export")
        ray.tune.report({"objective": validation_objective(s, here / "export", days)})

    tuner = tune.Tuner(
        tune.with_resources(trial, {"cpu": 1}),
        param_space=search_space(spec),
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(metric="objective", mode="min", seed=spec.seed),
            num_samples=samples, max_concurrent_trials=concurrent),
        run_config=tune.RunConfig(storage_path=str(out.resolve()), name="tune",
                                   verbose=0),
    )
    grid = tuner.fit()
    results = [grid[i] for i in range(len(grid))]
    rows = []
    for r in results:
        if r.metrics and "objective" in r.metrics:
            rows.append({"objective": float(r.metrics["objective"]), **(r.config or {})})
    if not rows:
        errors = [str(r.error).splitlines()[0] for r in results if r.error is not None]
        raise RuntimeError(f"no trial finished: {errors[:1] or 'unknown'}")
    rows.sort(key=lambda r: r["objective"])
    best = {"best": rows[0], "trials": rows, "validation_days": days,
            "iterations_per_trial": spec.iterations}
    return best
