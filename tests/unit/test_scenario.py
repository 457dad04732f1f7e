"""Scenario schema: bundled scenarios load; broken files give the precise error."""

from __future__ import annotations

import pytest

from evgrid.scenario import ScenarioError, bundled_names, load_scenario


@pytest.mark.parametrize("name", ["small", "city", "lot2102"])
def test_bundled_scenarios_load(name: str) -> None:
    sc = load_scenario(name)
    assert sc.name == name
    assert sc.steps == 96


def test_bundled_names_include_the_three() -> None:
    assert {"small", "city", "lot2102"} <= set(bundled_names())


def test_city_is_city_sized() -> None:
    sc = load_scenario("city")
    chargers = sum(z.chargers.count for f in sc.facilities for z in f.zones.values())
    assert len(sc.facilities) == 20 and 900 <= chargers <= 1100
    assert len(sc.grid_zones) == 4 and len(sc.cohorts) == 3


def _set(d: dict, path: list, value: object) -> dict:
    node = d
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return d


BROKEN = [
    (["facilities", 1, "zones", "A", "chargers", "max_kw"], -7,
     "facilities[1].zones.A.chargers.max_kw: -7 is not > 0"),
    (["facilities", 0, "grid_zone"], "nowhere",
     "facilities[0].grid_zone: 'nowhere' is not one of ['feeder-1', 'feeder-2']"),
    (["cohorts", 0, "share"], 0.5, "cohorts[*].share: sum 0.9 is not 1"),
    (["cohorts", 1, "share"], 1.5, "cohorts[1].share: 1.5 is not <= 1"),
    (["grid_zones", 0, "limit_kw"], [100.0] * 23,
     "grid_zones[0].limit_kw: limit_kw needs 1 or 24 hourly values, got 23"),
    (["grid_zones", 1, "limit_kw"], -5, "grid_zones[1].limit_kw: -5.0 is not > 0.0"),
    (["facilities", 0, "colour"], "red", "facilities[0].colour: unknown field"),
    (["facilities", 0, "zones", "A", "spaces"], 1,
     "facilities[0].zones.A: chargers.count 2 is not <= spaces 1"),
    (["dt_min"], 7, "dt_min 7 does not divide an hour"),
    (["dt_min"], 40, "dt_min 40 does not divide an hour"),
    (["horizon_days"], 0.005, "horizon_days 0.005 is shorter than one step of 15 min"),
    (["dt_min"], 0, "dt_min: 0 is not > 0"),
    (["events", 0, "end_h"], 11, "events[0].end_h: 11.0 is not > start_h 12.0"),
    (["events", 0, "facility"], "moon", "events[0].facility: 'moon' is not one of"),
    (["cohorts", 2, "departure_floor"], 0, "cohorts[2].departure_floor: 0 is not > 0"),
    (["cohorts", 0, "arrival_soc", "high"], 1.5, "cohorts[0]: arrival_soc range [0.1, 1.5] is not within [0, 1]"),
    (["horizon_days"], "two", "horizon_days: Input should be a valid number"),
]


@pytest.mark.parametrize(("path", "value", "message"), BROKEN, ids=[m for *_, m in BROKEN])
def test_broken_scenario_names_field_value_and_rule(
    small_copy: dict, write_yaml, path: list, value: object, message: str
) -> None:
    file = write_yaml(_set(small_copy, path, value))
    with pytest.raises(ScenarioError) as exc:
        load_scenario(file)
    assert message in str(exc.value), str(exc.value)
    assert str(file) in str(exc.value)


def test_missing_field_is_named(small_copy: dict, write_yaml) -> None:
    del small_copy["facilities"][0]["zones"]["A"]["chargers"]["max_kw"]
    with pytest.raises(ScenarioError, match=r"facilities\[0\]\.zones\.A\.chargers\.max_kw: "
                                           "required field is missing"):
        load_scenario(write_yaml(small_copy))


def test_not_yaml_and_not_a_mapping(write_yaml) -> None:
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(write_yaml("a: [1, 2\nb: }"))
    with pytest.raises(ScenarioError, match="a scenario is a mapping, got list"):
        load_scenario(write_yaml("- 1\n- 2\n"))


def test_unknown_name_lists_bundled() -> None:
    with pytest.raises(ScenarioError, match=r"unknown scenario 'atlantis'.*'city'.*'small'"):
        load_scenario("atlantis")


def test_missing_file() -> None:
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario("/nonexistent/city.yaml")


def test_constant_profiles_expand(small_copy: dict, write_yaml) -> None:
    small_copy["city_limit_kw"] = 300
    sc = load_scenario(write_yaml(small_copy))
    from evgrid.envs import build_world

    assert (build_world(sc).city_limit_kw == 300).all()
