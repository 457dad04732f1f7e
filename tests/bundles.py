"""Policy bundles made here with torch, no training: a fixed random network (what an untrained
SAC exports) and a hostile one (NaN, ±inf, out of range), for the seams that serve a learned
station policy. Real TorchScript files read by the real loader; only the weights are not
learned."""

from __future__ import annotations

from pathlib import Path

import torch

from evgrid.agents.bundle import BundleSpec
from evgrid.envs.station_actions import Budget


class Hostile(torch.nn.Module):
    """Outputs NaN, +inf, −inf, 7 and −3 by row: what a broken export or a diverged network
    could hand an edge node."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        n = obs.shape[0]
        bad = torch.tensor([float("nan"), float("inf"), -float("inf"), 7.0, -3.0])
        return bad.repeat(n, 1)[:, :1] + obs[:, :1] * 0 + torch.arange(n).unsqueeze(1) % 5


class Constant(torch.nn.Module):
    """Outputs one value for every station (NaN, ±inf, out of range: a diverged network)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs[:, :1] * 0 + self.value


class Squashed(torch.nn.Module):
    """A small MLP with a sigmoid head (SAC's deterministic action is a squashed mean)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(Budget.obs_dim, 16), torch.nn.Tanh(),
                                       torch.nn.Linear(16, 1))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(obs) + 0.5)


def write_bundle(folder: Path, module: torch.nn.Module, scenario: str = "small") -> Path:
    """A ``budget`` station bundle in ``folder`` with ``module`` shared by every station."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.script(module).save(str(folder / "station.pt"))
    BundleSpec(scenario=scenario, width=0, station_action="budget", station_dim=Budget.obs_dim,
               cohort_dim=0, routes=0, reward_set="objective",
               stations={"*": "station.pt"}).save(folder)
    return folder
