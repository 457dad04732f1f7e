"""An exported policy bundle: one TorchScript file per policy and ``bundle.json`` saying which
agent uses which file. It needs torch and numpy only: no Ray, no RLlib, no Algorithm, so the
same file runs in ``evgrid run``, in a Ray station actor and on an edge node.

Each file maps a float32 batch of observations [n, dim] (``evgrid.envs.parallel`` features)
to deterministic actions: station actions [n, act_dim] in [0, 1] (``station_actions``), or
cohort choices [n] (int).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BUNDLE = "bundle.json"
#: The key of a policy shared by every agent of a kind.
SHARED = "*"


class BundleError(ValueError):
    """A bundle that is missing, damaged or made for another scenario (one line)."""


@dataclass
class BundleSpec:
    """What ``bundle.json`` records: the feature sizes the files expect and the agent mapping."""

    scenario: str
    width: int  # chargers per station of the scenario trained on (padding of ``fractions``)
    station_action: str  # evgrid.envs.station_actions: "budget" or "fractions"
    station_dim: int
    cohort_dim: int
    routes: int
    reward_set: str
    stations: dict[str, str] = field(default_factory=dict)  # agent id (or "*") -> file
    cohorts: dict[str, str] = field(default_factory=dict)
    format: int = 1

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (BUNDLE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, folder / BUNDLE)
        return folder / BUNDLE

    @classmethod
    def load(cls, folder: Path) -> BundleSpec:
        path = bundle_folder(folder) / BUNDLE
        try:
            raw: dict[str, Any] = json.loads(path.read_text())
            return cls(**raw)
        except (OSError, ValueError, TypeError) as e:
            raise BundleError(f"{path}: not a policy bundle ({e})") from None

    def file_for(self, kind: str, agent: str) -> str | None:
        table = self.stations if kind == "station" else self.cohorts
        return table.get(agent, table.get(SHARED))


def bundle_folder(path: Path) -> Path:
    """A train output folder (its ``export/``) or the bundle folder itself."""
    path = Path(path)
    if (path / "export" / BUNDLE).is_file():
        return path / "export"
    if (path / BUNDLE).is_file():
        return path
    raise BundleError(f"{path}: no {BUNDLE} here or in {path / 'export'} (train first: "
                      "evgrid train ... --out DIR)")


class ExportedPolicy:
    """One TorchScript policy file, called on numpy batches (single-threaded: an edge node or a
    Ray actor shares its cores)."""

    def __init__(self, path: Path) -> None:
        import torch

        torch.set_num_threads(1)
        try:
            self.module = torch.jit.load(str(path), map_location="cpu")
        except (OSError, RuntimeError, ValueError) as e:
            why = str(e).splitlines()[0].split(". ")[0] if str(e) else type(e).__name__
            raise BundleError(f"{path}: cannot load the policy file ({why})") from None
        self.module.eval()
        self.path = path

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = self.module(torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)))
        return np.asarray(out.numpy())


def load_policies(folder: Path, kind: str, agents: list[str]) -> dict[str, ExportedPolicy]:
    """The policy of each agent of ``kind``; files shared by several agents are loaded once."""
    spec = BundleSpec.load(folder)
    root = bundle_folder(folder)
    cache: dict[str, ExportedPolicy] = {}
    out: dict[str, ExportedPolicy] = {}
    for a in agents:
        name = spec.file_for(kind, a)
        if name is None:
            raise BundleError(f"{root}: no {kind} policy for {a} (the bundle has "
                              f"{sorted(spec.stations if kind == 'station' else spec.cohorts)})")
        if name not in cache:
            cache[name] = ExportedPolicy(root / name)
        out[a] = cache[name]
    return out


def check_bundle(folder: Path, kind: str) -> BundleSpec:
    """The bundle in ``folder`` with every ``kind`` ("station" or "cohort") file loaded once:
    a missing or damaged file is a one-line ``BundleError`` before any work, not mid-run."""
    spec = BundleSpec.load(folder)
    table = spec.stations if kind == "station" else spec.cohorts
    if not table:
        algo = "sac" if kind == "station" else "dqn"
        raise BundleError(f"{folder}: the bundle has no {kind} policy (train with --algo {algo} "
                          "or alternate)")
    root = bundle_folder(folder)
    for name in sorted(set(table.values())):
        ExportedPolicy(root / name)
    return spec
