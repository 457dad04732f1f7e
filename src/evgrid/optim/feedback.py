"""Performance feedback between seed 000's layers (§3.6 and §4.4 of 000_f74a305f822cf870.txt).

The layers do not pass gradients; the faster layer reports aggregate indicators and the slower
one re-plans when they cross a threshold:

* scheduling → allocation (Eq. 35): utilisation u of each zone's chargers, violation
  indicators VI (limit cuts the projection had to make), and a performance score ρ;
* allocation → layout (Eq. 36): the congestion index CI_z = avg utilisation × avg wait (§4.4),
  the zone utilisation ratio UR_z (occupied spaces / spaces) and reallocation requests RR_z.

§6 names the three devices that keep this from chattering, and each is a class here: an
exponential moving average (upper layers react to trends, not to one busy step), a hysteresis
band around each threshold (a trigger fires on crossing ``on`` and re-arms only below ``off``),
and multi-timescale updates (Eq. 40–41, with Eq. 43's separation checked): scheduling every
step, allocation every ``ram_steps``, layout every ``slm_steps``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Ema:
    """Exponential moving average x̄ ← α·x + (1 − α)·x̄ (§6: "temporal filtering via EMAs");
    the first observation initialises it."""

    alpha: float
    value: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not 0 < self.alpha <= 1:
            raise ValueError(f"EMA alpha {self.alpha} is not in (0, 1]")

    def update(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        self.value = x.copy() if self.value is None else self.alpha * x + (1 - self.alpha) * self.value
        return self.value


@dataclass
class Hysteresis:
    """A trigger per element with a band (§6: "hysteresis bands around triggering thresholds
    prevent chattering"): it fires when the value rises above ``on`` and re-arms only once the
    value has fallen below ``off`` (< ``on``)."""

    on: float
    off: float
    armed: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.off < self.on:
            raise ValueError(f"hysteresis off {self.off} is not below on {self.on}")

    def update(self, x: np.ndarray) -> np.ndarray:
        """The elements that fire now (bool)."""
        x = np.asarray(x, dtype=float)
        if self.armed is None:
            self.armed = np.ones(x.shape, dtype=bool)
        fire = self.armed & (x > self.on)
        self.armed = (self.armed & ~fire) | (x < self.off)
        return fire


@dataclass(frozen=True)
class Timescales:
    """Update periods in control steps (Eq. 40–41: τ_SLM = κ₁₂·τ_RAM, τ_RAM = κ₂₃·τ_SM).

    Eq. 43 asks τ_SM/τ_RAM < δ₁ and τ_RAM/τ_SLM < δ₂ so that a faster layer settles before a
    slower one adapts; both margins default to 1/2."""

    sm_steps: int = 1
    ram_steps: int = 4  # one hour at 15-minute steps
    slm_steps: int = 24  # six hours: the slowest layer re-plans a few times a day at most
    delta1: float = 0.5
    delta2: float = 0.5

    def __post_init__(self) -> None:
        if min(self.sm_steps, self.ram_steps, self.slm_steps) < 1:
            raise ValueError("every update period must be >= 1 step")
        if not self.sm_steps / self.ram_steps < self.delta1:
            raise ValueError(f"τ_SM/τ_RAM = {self.sm_steps}/{self.ram_steps} is not < δ1 "
                             f"{self.delta1} (Eq. 43 of 000)")
        if not self.ram_steps / self.slm_steps < self.delta2:
            raise ValueError(f"τ_RAM/τ_SLM = {self.ram_steps}/{self.slm_steps} is not < δ2 "
                             f"{self.delta2} (Eq. 43 of 000)")

    def due(self, t: int) -> tuple[bool, bool]:
        """(allocation due, layout due) after step ``t`` (0-based: step t has just run)."""
        k = t + 1
        return k % self.ram_steps == 0, k % self.slm_steps == 0


@dataclass(frozen=True)
class ZoneIndicators:
    """One step's indicators per parking zone (Eq. 35–36, §4.4)."""

    utilisation: np.ndarray  # [Z] busy chargers / online chargers (u)
    wait_min: np.ndarray  # [Z] minutes the EVs queued there have waited so far (mean, 0 if none)
    occupancy: np.ndarray  # [Z] parked EVs / spaces (UR_z)
    violations: np.ndarray  # [Z] limit cuts this step (VI)

    @property
    def congestion(self) -> np.ndarray:
        """CI_z = avg utilisation × avg wait (§4.4 of 000)."""
        return self.utilisation * self.wait_min


@dataclass(frozen=True)
class FeedbackDecision:
    """What the feedback asks of the slower layers after one step."""

    t: int
    reallocate: bool  # RAM adaptation (§3.6.4 step 2): re-weight the allocation now
    relayout: bool  # SLM reconfiguration (§3.6.4 step 4): re-plan the zones now
    congested: np.ndarray  # [Z] bool: zones whose smoothed CI crossed the band (RR_z)
    requested: np.ndarray  # [Z] bool: zones with a request since the last layout epoch
    underused: np.ndarray  # [Z] bool: zones whose smoothed UR fell below UR_min
    ci: np.ndarray  # [Z] smoothed congestion index
    ur: np.ndarray  # [Z] smoothed utilisation ratio


@dataclass
class FeedbackController:
    """The performance-evaluation half of §3.6.4's HAO protocol.

    Each step it smooths the zone indicators (EMA); when allocation is due it raises a
    reallocation request for every zone whose smoothed CI crossed ``ci_on`` (hysteresis, re-armed
    below ``ci_off``) or that saw violations above ``vi_max``; when layout is due it asks for a
    re-plan if some zone is systematically congested (a request raised since the last layout)
    while another is under-used (UR < ``ur_min``) — the case where moving a boundary helps.
    """

    zones: list[str]
    timescales: Timescales = field(default_factory=Timescales)
    ci_on: float = 5.0  # utilisation × minutes: e.g. 50 % busy with a 10-minute queue
    ci_off: float = 2.0
    vi_max: float = 0.0
    ur_min: float = 0.3
    alpha: float = 0.3
    history: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ci = Ema(self.alpha)
        self._ur = Ema(self.alpha)
        self._band = Hysteresis(self.ci_on, self.ci_off)
        self._requested = np.zeros(len(self.zones), dtype=bool)
        self._pending = np.zeros(len(self.zones), dtype=bool)

    def observe(self, t: int, ind: ZoneIndicators) -> FeedbackDecision:
        ci = self._ci.update(ind.congestion)
        ur = self._ur.update(ind.occupancy)
        # The band sees every step, so a crossing between two allocation epochs is not lost.
        self._pending |= self._band.update(ci)
        ram_due, slm_due = self.timescales.due(t)
        congested = np.zeros(len(self.zones), dtype=bool)
        if ram_due:
            congested = self._pending | (np.asarray(ind.violations) > self.vi_max)
            self._pending[:] = False
            self._requested |= congested
        underused = ur < self.ur_min
        requested = self._requested.copy()
        relayout = False
        if slm_due:
            relayout = bool(requested.any() and (underused & ~requested).any())
            self._requested[:] = False
        decision = FeedbackDecision(t=t, reallocate=bool(congested.any()), relayout=relayout,
                                    congested=congested, requested=requested,
                                    underused=underused, ci=ci, ur=ur)
        row: dict[str, float] = {"t": float(t), "reallocate": float(decision.reallocate),
                                 "relayout": float(relayout)}
        for z, name in enumerate(self.zones):
            row[f"ci_{name}"] = float(ci[z])
            row[f"ur_{name}"] = float(ur[z])
        self.history.append(row)
        return decision


__all__ = ["Ema", "FeedbackController", "FeedbackDecision", "Hysteresis", "Timescales",
           "ZoneIndicators"]
