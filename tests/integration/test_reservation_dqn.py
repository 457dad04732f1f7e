"""The DDPDQN reservation matcher (§4 of 004_8f5fa6c845a0843d.txt) end to end: a short real
RLlib training on a 2-hour day, the exported Q network served without Ray, never choosing a
masked-out pile, and the built config really being dueling + double Q + prioritised replay."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from evgrid.evaluation.paper004_sim import F, K, MatchView, RegionConfig, RegionSim
from evgrid.learning.reservation_dqn import (
    MANIFEST_FILE,
    MATCHER_FILE,
    DqnMatcher,
    MatcherHyper,
    build_dqn_config,
    export_q,
    train_matcher,
)
from evgrid.learning.reservation_env import observation_of

pytestmark = pytest.mark.ray

#: A busy 2-hour day (§5.1's top rates): ~50 decisions an episode, queues form.
SMALL: dict[str, Any] = {"horizon_h": 2.0, "reserved_rate_per_h": 26.0, "walkin_rate_per_h": 14.0,
         "piles_per_station": 4, "reserved": 1}
TINY = MatcherHyper(iterations=2, steps_per_iteration=100, warmup=50, batch=32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, ray_session: object) -> Path:
    out = tmp_path_factory.mktemp("ddpdqn") / "matcher"
    seen: list[int] = []
    path = train_matcher(SMALL, out, hyper=TINY, seed=3,
                         progress=lambda i, n, s: seen.append(i))
    assert seen == [1, 2]
    return path


def test_config_is_dueling_double_prioritised() -> None:
    h = MatcherHyper()
    cfg = build_dqn_config(SMALL, h, seed=7)
    assert cfg.dueling is True and cfg.double_q is True
    assert cfg.replay_buffer_config == {"type": "PrioritizedEpisodeReplayBuffer",
                                        "capacity": 10_000, "alpha": 0.6, "beta": 0.4}
    # the seed-004 parameter table
    assert cfg.model_config["fcnet_hiddens"] == [128, 64]
    assert cfg.model_config["head_fcnet_hiddens"] == [32]
    assert (cfg.lr, cfg.gamma, cfg.train_batch_size_per_learner) == (1e-3, 0.99, 64)
    assert cfg.epsilon == [(0, 1.0), (10_000, 0.01)]
    assert (cfg.target_network_update_freq, cfg.tau, cfg.n_step) == (500, 1.0, 1)
    assert cfg.seed == 7 and cfg.num_env_runners == 0
    assert cfg.env_config == SMALL


def test_training_writes_matcher_and_manifest(trained: Path) -> None:
    assert trained.name == MATCHER_FILE and trained.is_file()
    manifest = json.loads((trained.parent / MANIFEST_FILE).read_text())
    assert manifest["iterations"] == 2 and len(manifest["episode_return_mean"]) == 2
    assert manifest["env_steps"] >= 200
    assert manifest["hyper"]["hidden"] == [128, 64, 32] and manifest["seed"] == 3
    assert (manifest["K"], manifest["F"], manifest["obs_dim"]) == (K, F, K * F + K)
    # at least one 2-hour day finished, and its return is minus hours (never positive)
    assert any(r is not None and r <= 0 for r in manifest["episode_return_mean"])


def test_matcher_never_picks_a_masked_pile(trained: Path) -> None:
    matcher = DqnMatcher.load(trained)
    rng = np.random.default_rng(0)
    for _ in range(200):  # random views: the masked argmax of the net's own Q values
        mask = rng.random(K) < 0.4
        mask[rng.integers(K)] = True
        probe = MatchView(1.0, 0, np.arange(K), rng.uniform(0, 3, (K, F)).astype(np.float32),
                          mask)
        q = matcher.q_values(probe)
        a = matcher(probe)
        assert mask[a] and q[a] == q[mask].max()
    sim = RegionSim(RegionConfig(**SMALL), "acp", seed=11)  # and a real day
    view = sim.reset()
    decisions = 0
    while view is not None:
        a = matcher(view)
        assert 0 <= a < K and view.mask[a]
        view, _ = sim.step(a)
        decisions += 1
    assert decisions == sim.kpis()["decisions"] > 0


def test_matcher_loads_and_runs_without_ray(trained: Path) -> None:
    code = (
        "import sys; sys.modules['ray'] = None\n"  # any `import ray` now fails
        "from evgrid.evaluation.paper004_sim import RegionConfig, RegionSim\n"
        "from evgrid.learning.reservation_dqn import DqnMatcher\n"
        f"m = DqnMatcher.load({str(trained)!r})\n"
        f"k = RegionSim(RegionConfig(**{SMALL!r}), 'acp', seed=5).run(m)\n"
        "assert k['decisions'] > 0 and 'ray' not in [n for n, v in sys.modules.items() if v]\n"
        "print('ok', k['decisions'])\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("ok")


def test_exported_q_matches_the_rl_module(tmp_path: Path, ray_session: object) -> None:
    """The traced file computes the RLModule's Q values (dueling combination included), and
    the built Algorithm really replays from a prioritised buffer."""
    from ray.rllib.core.columns import Columns
    from ray.rllib.utils.replay_buffers import PrioritizedEpisodeReplayBuffer

    algo = build_dqn_config(SMALL, replace(TINY, warmup=10), seed=1).build_algo()
    try:
        assert isinstance(algo.local_replay_buffer, PrioritizedEpisodeReplayBuffer)
        module = algo.get_module()
        assert module.uses_dueling and module.uses_double_q
        path = export_q(module, tmp_path / MATCHER_FILE)
        sim = RegionSim(RegionConfig(**SMALL), "acp", seed=2)
        views = []
        view = sim.reset()
        while view is not None and len(views) < 16:
            views.append(view)
            view, _ = sim.step(0)
        obs = torch.from_numpy(np.stack([observation_of(v) for v in views]))
        with torch.no_grad():
            want = module.compute_q_values({Columns.OBS: obs})["qf_preds"]
            got = torch.jit.load(str(path))(obs)
        torch.testing.assert_close(got, want)
    finally:
        algo.stop()


def test_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty") as e:
        train_matcher(SMALL, tmp_path, hyper=TINY)
    assert "\n" not in str(e.value)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_load_refuses_a_folder_without_a_matcher(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a matcher manifest"):
        DqnMatcher.load(tmp_path)
