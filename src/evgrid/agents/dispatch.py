"""The dispatch seam: how a station turns a power budget into per-charger set-points.

Every place that executes on a station's behalf calls a ``Dispatch``: the station pack after
agreement (when it runs a learned policy), an edge node whose link is down, and the Ray and
gRPC coordinators executing for a station that went silent. The rule is
least laxity first inside the budget (:func:`evgrid.agents.station.setpoints_within`, acnportal's
LLF); a learned station policy (``evgrid train``'s exported ``budget`` bundle) caps that budget
at the share of its rating it chooses, so it can hold back (a demand charge, a dear hour) but
never take more than it was given: whatever the network outputs, NaN included, no charger,
zone or city limit is exceeded by the dispatch itself.

The policy sees exactly the features it trained on (``evgrid.envs.station_actions.
budget_features``), computed here from the station's own state and the :class:`StationContext`
its coordinator sends with it (its size and the city's signals at the period's start), with no
Ray, no RLlib and no Algorithm: torch and the bundle's TorchScript file only.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from evgrid.agents.bundle import BundleError, BundleSpec, ExportedPolicy, load_policies
from evgrid.agents.station import (
    Dispatch,
    real_rows,
    setpoints_within,
    station_contexts,
    want_and_laxity,
)
from evgrid.coordinator.messages import StationContext, StationState
from evgrid.envs.station_actions import Budget, StationRows, budget_cap_kw, budget_features

log = logging.getLogger(__name__)

__all__ = ["LLF", "Dispatch", "LearnedDispatch", "make_dispatch", "station_contexts"]

#: The rule: least laxity first inside the budget.
LLF: Dispatch = setpoints_within


def state_rows(state: StationState, ctx: StationContext) -> StationRows:
    """One station's :class:`StationRows` from its own state and its context: the EVs that can
    use power now, as :meth:`StationRows.of_obs` counts them for the same station."""
    st = real_rows(state)
    want, laxity = want_and_laxity(st) if st.horizon else (np.zeros(0), np.zeros(0))
    use = want > 0
    rate = (st.upper_kw[:, 0] if st.horizon else np.zeros(st.charger.size)) * st.eta
    return StationRows(
        station=np.zeros(int(use.sum()), dtype=np.int64), want_kw=want[use],
        owed_kwh=st.owed_kwh[use], laxity_h=laxity[use], rate_kw=rate[use],
        left_h=((st.departure_step - st.horizon_start) * st.dt_h)[use],
        chargers=np.array([max(ctx.chargers, 1)]), rated_kw=np.array([ctx.rated_kw]),
        zone_peak_kw=np.array([ctx.zone_peak_kw]), zone_limit_kw=np.array([ctx.zone_limit_kw]),
        hour=(st.horizon_start * st.dt_h) % 24.0,
        price=st.price_per_kwh if st.horizon else np.zeros(1), dt_h=st.dt_h,
        price_scale=ctx.price_scale, demand_share=ctx.demand_share, city_share=ctx.city_share,
        day_left=ctx.day_left,
    )


class LearnedDispatch:
    """A station's learned ``budget`` policy as its dispatch (see module docstring).

    ``station_ids`` are the stations it may serve (each needs a policy in the bundle: its own,
    or the shared one). A state without a context (a coordinator that sends none) is
    dispatched by the rule, and counted in ``blind``.
    """

    def __init__(self, folder: Path, station_ids: list[str]) -> None:
        spec = BundleSpec.load(folder)
        if spec.station_action != Budget.name:
            raise BundleError(
                f"{folder}: a {spec.station_action!r} station policy runs in `evgrid run "
                f"--policy learned:DIR` only; station agents run 'budget' policies (its "
                "features are the station's own, whatever its size)")
        if spec.station_dim != Budget.obs_dim:
            raise BundleError(f"{folder}: station features of {spec.station_dim} values, this "
                              f"version computes {Budget.obs_dim}")
        self.folder = Path(folder)
        self.policies: dict[str, ExportedPolicy] = {
            sid[len("station_"):]: pol for sid, pol in load_policies(
                folder, "station", [f"station_{s}" for s in station_ids]).items()}
        self.blind = 0

    def cap_kw(self, state: StationState) -> float:
        """The power the station's policy chooses to draw at most now [kW]."""
        ctx = state.context
        if ctx is None:
            self.blind += 1
            if self.blind == 1:
                log.warning("station %s: no context with its state; least laxity first",
                            state.station_id)
            return np.inf
        x = budget_features(state_rows(state, ctx))
        out = np.asarray(self.policies[state.station_id](x), dtype=float).reshape(-1)
        if out.size != 1:
            raise BundleError(f"{self.folder}: the station policy returned {out.size} values, "
                              "expected 1")
        return float(budget_cap_kw(out, np.array([ctx.rated_kw]))[0])

    def __call__(self, state: StationState, budget_kw: float) -> tuple[np.ndarray, np.ndarray]:
        return setpoints_within(state, min(max(budget_kw, 0.0), self.cap_kw(state)))


def make_dispatch(folder: str | Path | None, station_ids: list[str]) -> Dispatch:
    """The rule, or the learned policy in ``folder`` (a bundle or ``evgrid train``'s --out;
    ``StationConfig.policy_dir``)."""
    return LLF if folder is None else LearnedDispatch(Path(folder), station_ids)
