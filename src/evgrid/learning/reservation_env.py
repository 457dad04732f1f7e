"""Seed 004's reserved-vehicle matching as a Gymnasium env (§4 of 004_8f5fa6c845a0843d.txt).

§4 matches each reservation vehicle to a charging pile with a dueling double DQN and
prioritised replay. This env is that decision problem on :class:`RegionSim` under ``acp``:
one step per reserved request, the action picks one of the ``K`` nearest stations
(``Discrete(K)``), the observation is the :class:`MatchView` flattened —
``concat(features.ravel(), mask)``, ``K*F + K`` float32 in ``[0, FEATURE_MAX]`` — and an
episode is one simulated day (``horizon_h`` in the config for shorter ones). The reward is
:meth:`RegionSim.step`'s: minus the matched vehicles' travel + wait hours as they become
known, penalties for unfinished charges and masked-out actions (see ``paper004_sim``).

The walk-ins keep being routed by §3's annealing, so the agent learns against the rest of
ACP, as in the paper. Every ``reset()`` draws a new day from the env's ``np_random``
(seeded by ``reset(seed=...)``), so training sees many days and evaluation is reproducible.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from evgrid.evaluation.paper004_sim import FEATURE_MAX, F, K, MatchView, RegionConfig, RegionSim

ENV_NAME = "evgrid-reservations"
_EXTRA_KEYS = ("reward_scale",)


def observation_of(view: MatchView | None) -> np.ndarray:
    """``concat(features.ravel(), mask)`` (zeros once the day is over)."""
    if view is None:
        return np.zeros(K * F + K, dtype=np.float32)
    return np.concatenate([view.features.ravel(), view.mask.astype(np.float32)]).astype(np.float32)


class ReservationMatchEnv(gym.Env[np.ndarray, np.int64]):
    """RLlib-style constructor: ``config`` keys are :class:`RegionConfig` fields plus
    ``reward_scale`` (multiplies the reward; default 1)."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's class attribute)

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        cfg = dict(config or {})
        self.reward_scale = float(cfg.pop("reward_scale", 1.0))
        self.region = RegionConfig.from_dict(cfg)
        self.sim = RegionSim(self.region, "acp", seed=0)
        self.observation_space = spaces.Box(0.0, FEATURE_MAX, shape=(K * F + K,), dtype=np.float32)
        self.action_space = spaces.Discrete(K)
        self._view: MatchView | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """A new day; ``options={"day_seed": s}`` replays day ``s`` exactly."""
        super().reset(seed=seed)
        day = (options or {}).get("day_seed")
        if day is None:
            day = int(self.np_random.integers(2**31 - 1))
        self._view = self.sim.reset(seed=int(day))
        return observation_of(self._view), self._info()

    def step(self, action: np.int64 | int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._view is None:  # a day without a single reserved request: nothing to decide
            return observation_of(None), 0.0, True, False, self._info()
        self._view, reward = self.sim.step(int(action))
        done = self._view is None
        info = self._info()
        if done:
            info["kpis"] = self.sim.kpis()
        return observation_of(self._view), float(reward) * self.reward_scale, done, False, info

    def action_masks(self) -> np.ndarray:
        """The current mask (for masked-DQN / MaskablePPO style wrappers)."""
        return np.ones(K, dtype=bool) if self._view is None else self._view.mask.copy()

    def _info(self) -> dict[str, Any]:
        view = self._view
        if view is None:
            return {"t_h": self.sim.t}
        return {"t_h": view.t_h, "vehicle": view.vehicle,
                "candidates": view.candidates.copy(), "action_mask": view.mask.copy()}


def register() -> None:
    """Make ``"evgrid-reservations"`` an RLlib env name (Ray imported only here)."""
    from ray.tune.registry import register_env

    register_env(ENV_NAME, lambda cfg: ReservationMatchEnv(dict(cfg)))
