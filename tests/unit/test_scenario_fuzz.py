"""Validation at the door: a scenario the schema accepts must run; anything else is refused.

Random mutations of the bundled ``small`` scenario (numbers replaced by NaN, ±inf, huge,
negative or zero values, wrong types, dropped keys, emptied lists, missing files) must either
be refused by :func:`evgrid.scenario.parse_scenario` with a :class:`ScenarioError`, or
simulate the whole horizon with LLF and give KPIs that serialise as strict JSON. What this
guards against is the gap that once let ``evgrid validate`` say ok to files that ``evgrid run``
then crashed on (a traceback, or memory exhausted): the schema, not the simulator, is where a
bad value must stop.

The horizon is capped to one day after loading, so an accepted long horizon costs no more
than the bundled one; ``arrivals_per_day`` mutations stay below what would make one example
slow (the bounds themselves are tested in test_scenario.py).
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evgrid.agents.baselines import LeastLaxityFirst
from evgrid.envs import Simulator
from evgrid.envs.kpis import breakdown, compute_kpis
from evgrid.scenario import ScenarioError, load_scenario, parse_scenario

Path = tuple[Any, ...]

SMALL: dict[str, Any] = load_scenario("small").model_dump(mode="json")

#: Replacement values for a number: the non-finite ones, the absurdly large, the negative, the
#: boundary, and plausible ones (so some mutations are accepted and actually run).
NUMBERS: list[Any] = [
    math.nan, math.inf, -math.inf, 1e308, -1e308, 1e12, 10**30, 2**63, -1, -7.5, 0, 0.0,
    1e-300, 5e-324, 0.5, 1, 2, 3, 7, 24, 60, 100, 1e4, 1e5,
]
#: Factors for a number: near misses and unit slips (kW as W, hours as minutes, kWh as Wh).
SCALES: list[float] = [0, 1e-3, 0.1, 0.5, 1.5, 2, 10, 60, 1000, -1]
#: Replacement values of the wrong type.
WRONG_TYPES: list[Any] = [None, "x", "", "nan", "1e999", True, [], {}, [1, 2], {"a": 1}]
#: Strings for string fields (ids, names, file names).
STRINGS: list[Any] = ["", "x", "depot", "city", "feeder-1", "A", "missing.csv", "a/b"]


def paths(node: Any, prefix: Path = ()) -> list[Path]:
    """Every key path in a JSON-like tree, inner nodes included (so whole sections can go)."""
    out: list[Path] = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, (*prefix, i))
    return out


PATHS = paths(SMALL)
#: Keys a scenario may carry that the bundled ``small`` leaves at their defaults.
OPTIONAL: list[tuple[Path, Any]] = [
    (("facilities", 0, "sessions_csv"), "missing.csv"),
    (("prices", "price_csv"), "missing.csv"),
    (("cohorts", 0, "dwell_h", "high"), None),
    (("unmet_penalty_per_kwh",), 2.0),
    (("facilities", 1, "fee_per_kwh"), 0.3),
]


def get(tree: Any, path: Path) -> Any:
    for key in path:
        tree = tree[key]
    return tree


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    """``small`` with one to three random mutations."""
    data = copy.deepcopy(SMALL)
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 9)) == 0:  # set an optional key
            path, default = draw(st.sampled_from(OPTIONAL))
            value = draw(st.sampled_from([default, *NUMBERS[:6], *WRONG_TYPES[:3]]))
        else:
            path = draw(st.sampled_from(PATHS))
            try:
                old = get(data, path)
            except (KeyError, IndexError, TypeError):
                continue  # an earlier mutation removed or replaced the parent
            action = draw(st.sampled_from(["value", "value", "scale", "drop", "type"]))
            if action == "drop":
                parent = get(data, path[:-1])
                if isinstance(parent, dict):
                    parent.pop(path[-1], None)
                elif isinstance(parent, list):
                    del parent[path[-1]]
                continue
            if action == "type":
                value = draw(st.sampled_from(WRONG_TYPES))
            elif action == "scale" and isinstance(old, int | float) and not isinstance(old, bool):
                # a plausible slip: a unit off by 1000, a sign, a typo'd digit
                factor = draw(st.sampled_from(SCALES))
                value = type(old)(old * factor) if math.isfinite(old * factor) else old * factor
            elif isinstance(old, bool):
                value = draw(st.sampled_from([True, False, 0, 1, "yes"]))
            elif isinstance(old, int | float):
                value = draw(st.sampled_from(NUMBERS))
            elif isinstance(old, str):
                value = draw(st.sampled_from(STRINGS))
            elif isinstance(old, list):
                value = draw(
                    st.sampled_from(
                        [[], old[:1], old[:-1], old * 2, [math.nan] * len(old), [0] * len(old)]
                    )
                )
            else:
                value = draw(st.sampled_from([{}, None, *NUMBERS[:4]]))
        try:
            parent = get(data, path[:-1])
            parent[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    return data


def cap_horizon(data: dict[str, Any]) -> dict[str, Any]:
    """The fuzzer's budget: at most one simulated day and 10^4 arrivals a day."""
    capped = dict(data)
    capped["horizon_days"] = min(data["horizon_days"], 1.0)
    capped["arrivals_per_day"] = min(data["arrivals_per_day"], 1e4)
    return capped


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated())
def test_a_mutated_scenario_is_refused_or_runs(data: dict[str, Any]) -> None:
    try:
        scenario = parse_scenario(data, source="fuzz")
    except ScenarioError as exc:
        assert str(exc).startswith("fuzz: ")
        return
    # Accepted: the capped copy is accepted too (a shorter horizon cannot break a valid city).
    scenario = parse_scenario(cap_horizon(scenario.model_dump(mode="json")), source="fuzz")
    sim = Simulator(scenario)
    llf = LeastLaxityFirst()
    obs = sim.reset()
    while not sim.done:
        obs, _ = sim.step(llf.schedule(obs))
    result = sim.result("llf")
    json.dumps(compute_kpis(result), allow_nan=False)
    json.dumps(breakdown(result), allow_nan=False)


@pytest.mark.parametrize("path", [("facilities",), ("cohorts", 0), ("grid_zones", 1)])
def test_paths_cover_the_sections(path: Path) -> None:
    """The mutation space reaches every part of the scenario (a guard on the fuzzer itself)."""
    assert path in PATHS
