"""`evgrid train` end to end with real RLlib (SAC for stations, DQN for cohorts, alternating),
export to TorchScript, and the learned policies served by `evgrid run` without RLlib."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from evgrid.agents.bundle import BundleSpec, ExportedPolicy
from evgrid.agents.learned import LearnedStations
from evgrid.cli import app
from evgrid.envs.kpis import compute_kpis
from evgrid.envs.simulator import Simulator
from evgrid.scenario import load_scenario

pytestmark = pytest.mark.ray
runner = CliRunner()

TINY = ["--scenario", "small", "--horizon-days", "0.25", "--warmup-steps", "24",
        "--steps-per-iteration", "24", "--batch-size", "16", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, ray_session: object) -> Path:
    """One SAC phase then one DQN phase (each a real RLlib Algorithm, two vectorised
    sub-environments), evaluated on 1 day."""
    out = tmp_path_factory.mktemp("train") / "run"
    res = runner.invoke(app, ["train", *TINY, "--algo", "alternate", "--iterations", "2",
                              "--phase-iterations", "1", "--envs-per-runner", "2",
                              "--eval-seeds", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_train_writes_policies_metrics_and_evaluation(trained: Path) -> None:
    spec = BundleSpec.load(trained)
    assert spec.stations == {"*": "station.pt"} and spec.cohorts == {"*": "cohort.pt"}
    assert spec.station_action == "budget"
    lines = (trained / "training" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["algo"] for x in lines] == ["sac", "dqn"]
    assert all(json.loads(x)["agent_steps"] >= json.loads(x)["env_steps"] > 0 for x in lines)
    assert list((trained / "training" / "tensorboard" / "sac").glob("events.out.tfevents.*"))
    ev = json.loads((trained / "evaluation.json").read_text())
    assert set(ev["stations"]) == {"uncontrolled", "llf", "learned", "offline_optimal"}
    assert set(ev["routing"]) == {"nearest", "learned"}
    assert ev["seeds"] == [0]
    # held out: the training days all came from seeds >= TRAIN_SEED_BASE (evgrid.envs.parallel)


def test_per_agent_mapping_gives_every_station_its_own_policy(tmp_path: Path,
                                                              ray_session: object) -> None:
    out = tmp_path / "per"
    res = runner.invoke(app, ["train", *TINY, "--algo", "sac", "--iterations", "1",
                              "--mapping", "per-agent", "--eval-seeds", "0", "--out", str(out)])
    assert res.exit_code == 0, res.output
    spec = BundleSpec.load(out)
    assert spec.stations == {f"station_{f}": f"station_{f}.pt"
                             for f in ("depot", "mall", "station")}
    sim = Simulator(load_scenario("small").model_copy(update={"horizon_days": 0.25}))
    assert compute_kpis(sim.run(LearnedStations(sim.world, out)))["energy_delivered_kwh"] > 0


def test_export_reproduces_the_checkpointed_module(trained: Path) -> None:
    from evgrid.learning.export import deterministic, load_module

    ckpt = trained / "training" / "checkpoints"
    x = np.random.default_rng(0).uniform(-1, 1, (64, BundleSpec.load(trained).station_dim))
    x = x.astype(np.float32)
    for algo, kind, name in (("sac", "station", "station"), ("dqn", "cohort", "cohort")):
        module = load_module(ckpt / algo, name)
        exported = ExportedPolicy(trained / "export" / f"{name}.pt")
        xs = x if kind == "station" else x[:, :exported_dim(trained)]
        with torch.no_grad():
            ref = deterministic(module, kind)(torch.from_numpy(xs)).numpy()
        got = exported(xs)
        if kind == "station":
            assert np.abs(got - ref).max() <= 1e-6 and ((got >= 0) & (got <= 1)).all()
        else:
            assert np.array_equal(got, ref)


def exported_dim(trained: Path) -> int:
    return BundleSpec.load(trained).cohort_dim


def test_resume_continues_from_the_checkpoint(trained: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "resumed"
    shutil.copytree(trained, copy)
    res = runner.invoke(app, ["train", "--resume", "--iterations", "3", "--eval-seeds", "0",
                              "--quiet", "--out", str(copy)])
    assert res.exit_code == 0, res.output
    state = json.loads((copy / "training" / "state.json").read_text())
    assert state["done"] == 3 and state["per_algo"] == {"sac": 2, "dqn": 1}


def test_run_serves_the_learned_policies(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", "small", "-p", "llf", "-p", f"learned:{trained}",
                              "--routing", f"learned:{trained}", "--out", str(out)])
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert set(results["policies"]) == {"llf", "learned"}
    assert results["policies"]["learned"]["energy_delivered_kwh"] > 0


class _Hostile(torch.nn.Module):
    """A policy file whose outputs are NaN, ±inf and out of range: what a broken export or a
    diverged network could hand an edge node."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        n = obs.shape[0]
        bad = torch.tensor([float("nan"), float("inf"), -float("inf"), 7.0, -3.0])
        return bad.repeat(n, 1)[:, :1] + obs[:, :1] * 0 + torch.arange(n).unsqueeze(1) % 5


def test_a_hostile_policy_file_executes_within_every_limit(trained: Path,
                                                           tmp_path: Path) -> None:
    folder = tmp_path / "hostile"
    folder.mkdir()
    torch.jit.script(_Hostile()).save(str(folder / "station.pt"))
    spec = BundleSpec.load(trained)
    spec.cohorts = {}
    spec.save(folder)
    sc = load_scenario("small")
    sim = Simulator(sc)
    res = sim.run(LearnedStations(sim.world, folder))
    k = compute_kpis(res)
    r, w = res.record, res.world
    assert (r.zone_load_kw <= w.zone_limit_kw + 1e-6).all()
    assert (r.city_load_kw <= w.city_limit_kw + 1e-6).all()
    assert k["rate_cuts"] == 0 and k["limit_violations"] == 0


@pytest.mark.parametrize(("args", "says"), [
    (["--algo", "nope"], "unknown algo 'nope'"),
    (["--mapping", "x"], "unknown mapping 'x'"),
    (["--station-action", "x"], "unknown station action 'x'"),
    (["--reward-weight", "nope=1"], "--reward-weight 'nope=1'"),
    (["--resume"], "nothing to resume"),
])
def test_train_user_errors_are_one_line(args: list[str], says: str, tmp_path: Path) -> None:
    res = runner.invoke(app, ["train", *TINY, *args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert says in res.output and "Traceback" not in res.output


def test_run_with_a_folder_that_is_no_bundle_is_one_line(tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", "small", "-p", f"learned:{tmp_path}", "--out",
                              str(tmp_path / "o")])
    assert res.exit_code == 2 and "no bundle.json" in res.output


@pytest.mark.slow
def test_tune_runs_trials_and_writes_the_best(tmp_path: Path) -> None:
    out = tmp_path / "tune"
    res = runner.invoke(app, ["tune", "--scenario", "small", "--horizon-days", "0.25",
                              "--samples", "2", "--iterations", "1", "--validation-days", "1",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    best = json.loads((out / "best.json").read_text())
    assert len(best["trials"]) == 2 and best["best"]["objective"] > 0


@pytest.mark.slow
def test_sac_improves_on_its_untrained_policy(tmp_path: Path, ray_session: object) -> None:
    """On `workplace` (a demand charge rewards a flat cap), a few minutes of SAC give a
    deterministic policy with a lower objective on held-out days than the same network
    untrained (same seed: the untrained run never reaches its first update)."""
    from dataclasses import replace

    from evgrid.evaluation.runner import run_experiment
    from evgrid.learning.train import Hyper, TrainSpec, train

    sc = load_scenario("workplace")
    hyper = Hyper(station_hidden=[64, 64], warmup_steps=192, steps_per_iteration=192,
                  batch_size=64)
    spec = TrainSpec(sc, algo="sac", iterations=80, hyper=hyper, checkpoint_every=80)
    train(replace(spec, iterations=1, hyper=replace(hyper, warmup_steps=10**9)),
          tmp_path / "w0", tmp_path / "untrained")
    train(spec, tmp_path / "w1", tmp_path / "trained")

    def objective(folder: Path) -> float:
        return float(np.mean([run_experiment(sc, [f"learned:{folder}"], seed=s,
                                             with_offline=False).kpis["learned"]["objective"]
                              for s in (0, 1)]))

    assert objective(tmp_path / "trained") < 0.9 * objective(tmp_path / "untrained")
