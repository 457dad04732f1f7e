"""DDPDQN: the dueling, double, prioritised-replay DQN that matches reserved (high-priority)
vehicles to charging piles (§4 of 004_8f5fa6c845a0843d.txt, Algorithm 1 and its parameter
table), trained with RLlib on ``ReservationMatchEnv`` and served without Ray.

Why each piece:

- dueling (Algorithm 1, Step 6): most decisions offer several near-equal piles; splitting
  Q = V + A − mean(A) lets the value of the state be learnt from every transition, whichever
  pile was picked;
- double Q: the max over K noisy candidate values overestimates; the online net picks, the
  target net (copied every 500 sampled steps, tau = 1) values;
- prioritised replay (Step 4): the rare congested states carry the large TD errors, so they are
  replayed more (α = 0.6, importance weights β = 0.4);
- the parameter table: hidden 128, 64, 32 (RLlib's shared encoder 128, 64, then a 32-wide
  value and advantage stream each), Adam 1e-3, replay pool 10,000, batch 64, ε 1.0 → 0.01 over
  10,000 steps, γ 0.99, 20,000 training rounds (here: env steps, ``iterations`` ×
  ``steps_per_iteration``), target update every 500.

Not reproduced: the table's "post-optimizer SGD / 1e-4" switch and its "TD error threshold
200" (the paper does not say when the switch happens or what the threshold gates; RLlib's
Huber loss and gradient clipping bound large TD errors instead).

RLlib's DQN knows nothing of the env's candidate mask: the mask is part of the observation, so
the net can learn that masked slots are worthless, and :class:`DqnMatcher` takes the argmax
over the unmasked candidates only, so a served decision is always a real pile.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ray.rllib.algorithms.dqn import DQNConfig

    from evgrid.evaluation.paper004_sim import MatchView

#: The exported Q network and its manifest, in ``out``.
MATCHER_FILE = "matcher.pt"
MANIFEST_FILE = "matcher.json"
MANIFEST_FORMAT = 1

#: Called after every iteration: (iteration done, total, summary of the iteration).
Progress = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class MatcherHyper:
    """The DDPDQN parameter table of §4 / §5 of 004_8f5fa6c845a0843d.txt, plus what RLlib
    needs besides (the paper's values unless a comment says otherwise)."""

    hidden: tuple[int, ...] = (128, 64, 32)
    lr: float = 1e-3
    buffer: int = 10_000
    batch: int = 64
    gamma: float = 0.99
    epsilon_steps: int = 10_000
    epsilon_start: float = 1.0
    epsilon_final: float = 0.01
    target_update: int = 500
    alpha: float = 0.6
    beta: float = 0.4
    #: env steps sampled before the first update (not in the paper: fills the pool enough
    #: that the first batches are not 64 copies of the same few decisions)
    warmup: int = 1_000
    #: algorithm.train() calls; × ``steps_per_iteration`` = the table's 20,000 rounds
    iterations: int = 20
    steps_per_iteration: int = 1_000
    #: env steps sampled between two updates (DQN's classic train frequency 4; 1 is the
    #: paper's one update a step at 4× the time)
    fragment: int = 4

    def __post_init__(self) -> None:
        if len(self.hidden) < 2:
            raise ValueError(f"hidden needs >= 2 layers (encoder, stream), got {self.hidden}")
        for name in ("buffer", "batch", "epsilon_steps", "target_update", "iterations",
                     "steps_per_iteration", "fragment"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def build_dqn_config(env_config: dict[str, Any], hyper: MatcherHyper, *, seed: int
                     ) -> DQNConfig:
    """The single-agent RLlib DQN of §4 of 004_8f5fa6c845a0843d.txt on
    ``ReservationMatchEnv`` (``env_config``: ``RegionConfig`` fields).

    Sampling stays in the driver (0 remote env runners): a match decision costs micro-seconds,
    so on a 2-core machine a remote runner would add process hops, not throughput."""
    from ray.rllib.algorithms.dqn import DQNConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    from evgrid.learning.reservation_env import ENV_NAME, register

    register()
    h = hyper
    return (
        DQNConfig()
        .environment(ENV_NAME, env_config=dict(env_config))
        .framework("torch")
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1,
                     rollout_fragment_length=h.fragment)
        .learners(num_learners=0)
        .rl_module(model_config=DefaultModelConfig(
            fcnet_hiddens=list(h.hidden[:-1]), fcnet_activation="relu",
            head_fcnet_hiddens=list(h.hidden[-1:]), head_fcnet_activation="relu"))
        .training(
            double_q=True, dueling=True, n_step=1, num_atoms=1, noisy=False,
            gamma=h.gamma, lr=h.lr, train_batch_size_per_learner=h.batch,
            tau=1.0, target_network_update_freq=h.target_update,
            num_steps_sampled_before_learning_starts=h.warmup,
            epsilon=[(0, h.epsilon_start), (h.epsilon_steps, h.epsilon_final)],
            replay_buffer_config={"type": "PrioritizedEpisodeReplayBuffer",
                                  "capacity": h.buffer, "alpha": h.alpha, "beta": h.beta},
        )
        .reporting(min_sample_timesteps_per_iteration=h.steps_per_iteration,
                   metrics_num_episodes_for_smoothing=10)
        .debugging(seed=seed)
    )


def _q_network(module: Any) -> Any:
    """The RLModule's Q values [n, K] as a plain torch module (``export.DqnGreedy`` without
    its argmax: the matcher masks before choosing)."""
    import torch
    from ray.rllib.core.columns import Columns
    from ray.rllib.core.models.base import ENCODER_OUT

    from evgrid.learning.export import DqnGreedy

    class DqnQValues(DqnGreedy):
        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            z = self.encoder({Columns.OBS: obs})[ENCODER_OUT]
            q = self.af(z)
            if self.dueling:
                q = q - q.mean(dim=-1, keepdim=True) + self.vf(z)
            return q

    return DqnQValues(module).eval()


def export_q(module: Any, path: Path) -> Path:
    """One TorchScript file of the Q network, traced as ``export.export_module`` does (RLlib's
    encoders take ``**kwargs``; no data-dependent control flow, so the trace is exact)."""
    import torch

    example = torch.zeros(2, int(module.observation_space.shape[0]))
    with torch.no_grad():
        traced = torch.jit.trace(_q_network(module), example)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    traced.save(str(tmp))
    tmp.replace(path)
    return path


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def train_matcher(env_config: dict[str, Any], out: Path, *, hyper: MatcherHyper,
                  seed: int = 0, progress: Progress | None = None, overwrite: bool = False,
                  time_budget_s: float | None = None) -> Path:
    """Train the DDPDQN matcher (§4 of 004_8f5fa6c845a0843d.txt) for ``hyper.iterations``
    iterations (or until the first iteration ending past ``time_budget_s``), export its Q
    network to ``out/matcher.pt`` with ``out/matcher.json`` (hyper, iterations, the episode
    return curve) and return the ``.pt`` path.

    ``out`` must be missing or empty unless ``overwrite``: a typo must not mix a new matcher
    into someone's folder. Uses the running Ray, else starts a local one (2 CPUs, single-
    threaded BLAS) and shuts it down at the end."""
    import ray
    import torch

    from evgrid.evaluation.paper004_sim import F, K
    from evgrid.learning.train import summary
    from evgrid.transport.ray_actors import ensure_ray

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"{out}: not empty; pick a new folder or overwrite it (--overwrite)")
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    started = not ray.is_initialized()
    ensure_ray(num_cpus=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the learner shares 2 cores with the env and Ray's daemons
    curve: list[float | None] = []
    env_steps = 0.0
    t0 = time.perf_counter()
    try:
        algo = build_dqn_config(env_config, hyper, seed=seed).build_algo()
        try:
            done = 0
            while done < hyper.iterations:
                s = summary(algo.train())
                done += 1
                curve.append(_finite(s["episode_return_mean"]))
                env_steps = s["env_steps"]
                if progress is not None:
                    progress(done, hyper.iterations, s)
                if time_budget_s is not None and time.perf_counter() - t0 > time_budget_s:
                    break
            out.mkdir(parents=True, exist_ok=True)
            path = export_q(algo.get_module(), out / MATCHER_FILE)
        finally:
            algo.stop()
    finally:
        torch.set_num_threads(threads)
        if started:
            ray.shutdown()
    manifest = {"format": MANIFEST_FORMAT, "file": MATCHER_FILE, "K": K, "F": F,
                "obs_dim": K * F + K, "seed": seed, "hyper": asdict(hyper),
                "env_config": env_config, "iterations": done, "env_steps": env_steps,
                "train_s": round(time.perf_counter() - t0, 2),
                "episode_return_mean": curve,
                "paper": "§4 of 004_8f5fa6c845a0843d.txt (DDPDQN)"}
    tmp = out / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str))
    tmp.replace(out / MANIFEST_FILE)
    return path


class DqnMatcher:
    """The exported Q network as a matcher for ``RegionSim.run`` (torch only, no Ray):
    the unmasked candidate of the highest Q (§4 of 004_8f5fa6c845a0843d.txt: a reserved
    vehicle is only ever sent to a real, admissible pile, whatever the net thinks of the
    padding slots)."""

    def __init__(self, module: Any, manifest: dict[str, Any]) -> None:
        self.module = module
        self.manifest = manifest
        self.obs_dim = int(manifest["obs_dim"])

    @classmethod
    def load(cls, path: Path) -> DqnMatcher:
        """From ``out`` or ``out/matcher.pt`` (``matcher.json`` beside it); a missing or
        damaged file, or one trained for another K × F, is a one-line ``ValueError``."""
        import torch

        from evgrid.evaluation.paper004_sim import F, K

        path = Path(path)
        if not path.exists():
            raise ValueError(f"{path}: not a matcher manifest (no such folder or file)")
        file = path / MATCHER_FILE if path.is_dir() else path
        try:
            manifest: dict[str, Any] = json.loads((file.parent / MANIFEST_FILE).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{file.parent / MANIFEST_FILE}: not a matcher manifest "
                             f"({type(e).__name__})") from None
        if (manifest.get("K"), manifest.get("F")) != (K, F):
            raise ValueError(f"{file}: trained for K={manifest.get('K')}, F={manifest.get('F')}; "
                             f"this simulator has K={K}, F={F}")
        torch.set_num_threads(1)
        try:
            module = torch.jit.load(str(file), map_location="cpu")
        except (OSError, RuntimeError, ValueError) as e:
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(f"{file}: cannot load the matcher ({why})") from None
        module.eval()
        return cls(module, manifest)

    def q_values(self, view: MatchView) -> np.ndarray:
        """[K] Q of each candidate slot (masked ones included)."""
        import torch

        from evgrid.learning.reservation_env import observation_of

        obs = observation_of(view)
        if obs.size != self.obs_dim:
            raise ValueError(f"observation of {obs.size} values, the matcher expects "
                             f"{self.obs_dim}")
        with torch.inference_mode():
            q = self.module(torch.from_numpy(obs[None, :]))
        return np.asarray(q.numpy(), dtype=np.float64).reshape(-1)

    def __call__(self, view: MatchView) -> int:
        mask = np.asarray(view.mask, dtype=bool).reshape(-1)
        if not mask.any():
            raise ValueError("no unmasked candidate to match")
        q = np.where(mask, np.nan_to_num(self.q_values(view), nan=-np.inf), -np.inf)
        if not np.isfinite(q).any():  # every unmasked Q is NaN/-inf: the first real pile
            return int(np.flatnonzero(mask)[0])
        return int(np.argmax(q))
