"""Checkpoint → RLModule → one TorchScript file per policy (``evgrid.agents.bundle``).

The files hold the deterministic policy only:

- SAC (stations): the actor's mean, squashed by tanh and rescaled to the action box, i.e. the
  mode of the squashed Gaussian SAC trains (Eq. 33–35 of 000_f74a305f822cf870.txt's §4.3
  squashed-Gaussian actor). RLlib's own ``explore=False`` path clips the un-squashed mean
  instead; the tanh mode is the one SAC's critic evaluated, so it is the one we serve.
- DQN (cohorts): argmax of Q; with the dueling head, Q = V + A − mean(A) (seed 004 §4).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_LEARNER_GROUP, COMPONENT_RL_MODULE
from ray.rllib.core.columns import Columns
from ray.rllib.core.models.base import ENCODER_OUT
from ray.rllib.core.rl_module.rl_module import RLModule


class SacMode(torch.nn.Module):
    """obs [n, d] float32 → the squashed Gaussian's mode, rescaled to [low, high]."""

    def __init__(self, module: Any, low: np.ndarray, high: np.ndarray) -> None:
        super().__init__()
        self.pi_encoder = module.pi_encoder
        self.pi = module.pi
        self.low: torch.Tensor
        self.high: torch.Tensor
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        logits = self.pi(self.pi_encoder({Columns.OBS: obs})[ENCODER_OUT])
        mean, _ = logits.chunk(2, dim=-1)
        return self.low + (torch.tanh(mean) + 1.0) * 0.5 * (self.high - self.low)


class DqnGreedy(torch.nn.Module):
    """obs [n, d] float32 → argmax Q (int64 [n])."""

    def __init__(self, module: Any) -> None:
        super().__init__()
        self.encoder, self.af = module.encoder, module.af
        self.dueling = bool(module.uses_dueling)
        self.vf = module.vf if self.dueling else torch.nn.Identity()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        z = self.encoder({Columns.OBS: obs})[ENCODER_OUT]
        q = self.af(z)
        if self.dueling:
            q = q - q.mean(dim=-1, keepdim=True) + self.vf(z)
        return torch.argmax(q, dim=-1)


def module_path(checkpoint: Path, module_id: str) -> Path:
    """Where an Algorithm checkpoint keeps one RLModule."""
    return (Path(checkpoint) / COMPONENT_LEARNER_GROUP / COMPONENT_LEARNER
            / COMPONENT_RL_MODULE / module_id)


def load_module(checkpoint: Path, module_id: str) -> Any:
    """One RLModule from an Algorithm checkpoint, without building the Algorithm."""
    m: Any = RLModule.from_checkpoint(module_path(checkpoint, module_id))
    m.eval()
    return m


def deterministic(module: Any, kind: str) -> torch.nn.Module:
    """The deterministic policy of an RLModule (``kind``: "station" SAC or "cohort" DQN)."""
    if kind == "station":
        space = module.action_space
        return SacMode(module, space.low, space.high).eval()
    return DqnGreedy(module).eval()


def export_module(module: Any, kind: str, path: Path) -> Path:
    """Write the module's deterministic policy as one TorchScript file.

    Traced, not scripted: RLlib's encoders take ``**kwargs``, which TorchScript cannot
    compile; the policy has no data-dependent control flow, so a trace is exact for any batch
    size (a test checks the file against the module)."""
    example = torch.zeros(2, int(module.observation_space.shape[0]))
    with torch.no_grad():
        scripted = torch.jit.trace(deterministic(module, kind), example)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    scripted.save(str(tmp))
    tmp.replace(path)
    return path
