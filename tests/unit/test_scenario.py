"""Scenario schema: bundled scenarios load; broken files give the precise error."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest
import yaml

from evgrid.scenario import ScenarioError, bundled_names, load_scenario, parse_scenario
from evgrid.scenario.bounds import MAX_DWELL_H
from evgrid.scenario.resources import (
    ENV_SWITCH,
    available_memory,
    check_memory,
    estimate_memory,
    memory_problem,
)

GIB = 2**30


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
    # Validation at the door: non-finite values, with the field, the value and the rule ...
    (["facilities", 0, "x_km"], math.nan, "facilities[0].x_km: nan is not a finite number"),
    (["facilities", 2, "zones", "C", "chargers", "max_kw"], math.inf,
     "facilities[2].zones.C.chargers.max_kw: inf is not a finite number"),
    (["facilities", 0, "zones", "A", "soc_range"], [math.nan, 0.9],
     "facilities[0].zones.A.soc_range[0]: nan is not a finite number"),
    (["cohorts", 0, "arrival_profile"], [math.inf] * 24,
     "cohorts[0].arrival_profile: [0] inf is not a finite number"),
    (["cohorts", 1, "arrival_profile", 3], math.nan,
     "cohorts[1].arrival_profile: [3] nan is not a finite number"),
    (["grid_zones", 0, "limit_kw"], math.nan, "grid_zones[0].limit_kw: nan is not a finite number"),
    (["city_limit_kw", 5], -math.inf, "city_limit_kw: [5] -inf is not a finite number"),
    (["prices", "price_per_kwh", 0], math.nan, "prices.price_per_kwh: [0] nan is not a finite"),
    (["unmet_penalty_per_kwh"], math.inf, "unmet_penalty_per_kwh: inf is not a finite number"),
    (["cohorts", 0, "dwell_h", "low"], math.nan,
     "cohorts[0].dwell_h.low: nan is not a number"),
    (["cohorts", 0, "dwell_h", "mean"], math.nan, "cohorts[0].dwell_h.mean: nan is not a finite"),
    (["cohorts", 0, "battery_kwh"], "1e999", "cohorts[0].battery_kwh: '1e999' is not a finite"),
    # ... and past the documented sane bounds (evgrid.scenario.bounds)
    (["facilities", 0, "zones", "A", "chargers", "count"], 10**9,
     "facilities[0].zones.A.chargers.count: 1000000000 is not <= 100000"),
    (["facilities", 0, "zones", "A", "spaces"], 10**6,
     "facilities[0].zones.A.spaces: 1000000 is not <= 100000"),
    (["arrivals_per_day"], 1e12, "arrivals_per_day: 1000000000000.0 is not <= 10000000"),
    (["facilities", 1, "zones", "B", "chargers", "max_kw"], 11000,
     "facilities[1].zones.B.chargers.max_kw: 11000 is not <= 4000"),
    (["cohorts", 2, "battery_kwh"], 75000, "cohorts[2].battery_kwh: 75000 is not <= 2000"),
    (["cohorts", 1, "max_charge_kw"], 1e308, "cohorts[1].max_charge_kw: 1e+308 is not <= 4000"),
    (["facilities", 1, "y_km"], -2e4, "facilities[1].y_km: -20000.0 is not >= -10000"),
    (["facilities", 0, "zones", "B", "walk_km"], 100, "facilities[0].zones.B.walk_km: 100 is not <= 10"),
    (["facilities", 0, "fee_per_kwh"], 1e5, "facilities[0].fee_per_kwh: 100000.0 is not <= 10000"),
    (["grid_zones", 1, "limit_kw"], 1e9, "grid_zones[1].limit_kw: 1000000000.0 is not <= 10000000"),
    (["city_limit_kw"], 2e7, "city_limit_kw: 20000000.0 is not <= 10000000"),
    (["cohorts", 0, "arrival_profile", 7], 1e300,
     "cohorts[0].arrival_profile: [7] 1e+300 is not <= 1000000"),
    (["prices", "price_per_kwh"], -5e4, "prices.price_per_kwh: -50000.0 is not >= -10000.0"),
    (["prices", "carbon_kg_per_kwh", 2], 400,  # g/kWh written for kg/kWh
     "prices.carbon_kg_per_kwh: [2] 400.0 is not <= 10"),
    (["prices", "carbon_price_per_kg"], 1e6, "prices.carbon_price_per_kg: 1000000.0 is not <= 10000"),
    (["unmet_penalty_per_kwh"], 1e9, "unmet_penalty_per_kwh: 1000000000.0 is not <= 10000"),
    (["cohorts", 0, "value_of_time_per_h"], 1e7,
     "cohorts[0].value_of_time_per_h: 10000000.0 is not <= 1000000"),
    (["events", 0, "end_h"], 1e6, "events[0].end_h: 1000000.0 is not <= 8784"),
    (["grid_zones", 0, "limit_kw", 4], 5e-324,  # found by the fuzzer: KPIs overflowed to inf
     "grid_zones[0].limit_kw: [4] 5e-324 is not >= 0.001 (a smaller limit is numerically 0)"),
    (["city_limit_kw"], 1e-6, "city_limit_kw: 1e-06 is not >= 0.001"),
    (["horizon_days"], 400, "horizon_days: 400 is not <= 366"),
    (["seed"], -1, "seed: -1 is not >= 0"),
    (["seed"], 10**400, "seed: 1000000000000000000000000000...000000000 is not <= 9223372036854775807"),
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


# -- validation at the door ---------------------------------------------------------------------


def test_dwell_longer_than_30_days_is_refused(small_copy: dict, write_yaml) -> None:
    small_copy["cohorts"][0]["dwell_h"] = {"mean": 1000, "std": 1, "low": 1}  # high open
    with pytest.raises(ScenarioError, match=r"cohorts\[0\]\.dwell_h: mean 1000\.0 is not <= 720"):
        load_scenario(write_yaml(small_copy))
    small_copy["cohorts"][0]["dwell_h"] = {"mean": 5, "std": MAX_DWELL_H + 1, "low": 1}
    with pytest.raises(ScenarioError, match=r"cohorts\[0\]\.dwell_h: std 721\.0 is not <= 720"):
        load_scenario(write_yaml(small_copy))


@pytest.mark.parametrize("high", [math.inf, None, "absent"])
def test_distribution_ends_may_stay_open(small_copy: dict, write_yaml, high: object) -> None:
    """±inf is the one infinity the schema takes: an open end of a truncated normal (written
    .inf, null, or left out)."""
    dwell = small_copy["cohorts"][0]["dwell_h"]
    if high == "absent":
        del dwell["high"]
    else:
        dwell["high"] = high
    small_copy["cohorts"][1]["dwell_h"] = {"mean": 1.2, "low": -math.inf}  # constant, std 0
    file = write_yaml(small_copy)
    assert "high: .inf" in file.read_text() or high != math.inf
    sc = load_scenario(file)
    assert sc.cohorts[0].dwell_h.high == math.inf and sc.cohorts[1].dwell_h.low == -math.inf
    # JSON has no inf: a dumped scenario writes null there, and null loads as the open end
    dumped = json.loads(sc.model_dump_json())
    assert dumped["cohorts"][0]["dwell_h"]["high"] is None
    again = parse_scenario(dumped)
    assert parse_scenario(sc.model_dump(mode="json")) == sc  # what `evgrid run --days` does
    assert again.cohorts[0].dwell_h == sc.cohorts[0].dwell_h
    assert again.cohorts[1].dwell_h == sc.cohorts[1].dwell_h


def test_a_subnormal_limit_drop_is_a_drop_to_zero(small_copy: dict) -> None:
    """limit x 5e-324 cannot be enforced (the projection's slack is 1e-9 kW) and made the
    utilisation KPI inf (found by the fuzzer); such a factor means 0, so it becomes 0."""
    small_copy["events"] = [
        {"kind": "grid_limit_drop", "grid_zone": "city", "factor": f, "start_h": 1, "end_h": 2}
        for f in (5e-324, 1e-310, 2.2250738585072014e-308, 0.25)
    ]
    sc = parse_scenario(small_copy)
    assert [getattr(ev, "factor", None) for ev in sc.events] == [
        0.0, 0.0, 2.2250738585072014e-308, 0.25]


def test_a_recorded_facility_needs_a_charger(tmp_path: Path, small_copy: dict, write_yaml) -> None:
    (tmp_path / "s.csv").write_text("arrival,departure,requested_energy_kwh\n")
    for zone in small_copy["facilities"][2]["zones"].values():
        zone["chargers"]["count"] = 0
    small_copy["facilities"][2]["sessions_csv"] = "s.csv"
    with pytest.raises(ScenarioError, match=r"facilities\[2\]\.sessions_csv: facility 'station' "
                                            "replays recorded sessions but has no charger"):
        load_scenario(write_yaml(small_copy))


def test_drawn_arrivals_need_a_charger_outside_recorded_facilities(
    tmp_path: Path, small_copy: dict, write_yaml
) -> None:
    (tmp_path / "s.csv").write_text("arrival,departure,requested_energy_kwh\n")
    small_copy["facilities"][0]["sessions_csv"] = "s.csv"
    for f in small_copy["facilities"][1:]:
        for zone in f["zones"].values():
            zone["chargers"]["count"] = 0
    with pytest.raises(ScenarioError, match="arrivals_per_day is 120 but no facility without "
                                            "sessions_csv has a charger"):
        load_scenario(write_yaml(small_copy))
    small_copy["arrivals_per_day"] = 0  # only the recorded sessions: a valid replay city
    assert load_scenario(write_yaml(small_copy)).arrivals_per_day == 0


def test_missing_or_unreadable_data_files_are_named_at_load(
    tmp_path: Path, small_copy: dict, write_yaml
) -> None:
    (tmp_path / "data").mkdir()
    small_copy["facilities"][1]["sessions_csv"] = "depot.csv"
    small_copy["prices"]["price_csv"] = "data"
    with pytest.raises(ScenarioError) as exc:
        load_scenario(write_yaml(small_copy))
    lines = str(exc.value).splitlines()
    assert lines[1] == f"facilities[1].sessions_csv: no such file: {tmp_path / 'depot.csv'}"
    assert lines[2] == f"prices.price_csv: {tmp_path / 'data'} is a directory, not a file"
    if os.geteuid() != 0:  # root reads everything
        (tmp_path / "depot.csv").write_text("arrival,departure,requested_energy_kwh\n")
        (tmp_path / "depot.csv").chmod(0)
        small_copy["prices"].pop("price_csv")
        with pytest.raises(ScenarioError, match=r"sessions_csv: cannot read .*depot\.csv"):
            load_scenario(write_yaml(small_copy))


def test_binary_or_non_utf8_file_is_one_line_naming_it(tmp_path: Path) -> None:
    for name, data in [("garbage.yaml", bytes(range(256)) * 4), ("latin1.yaml", "name: Zürich\n"
                                                                 .encode("latin-1"))]:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ScenarioError) as exc:
            load_scenario(path)
        msg = str(exc.value)
        assert msg.startswith(f"{path}: not a UTF-8 text file (byte 0x") and "\n" not in msg
    # valid UTF-8 but a control character YAML refuses: also one line
    path = tmp_path / "nul.yaml"
    path.write_text("name: a\x00b\n")
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    assert str(exc.value) == (
        f"{path}: not valid YAML: character #x0000 at position 7: special characters are not "
        "allowed"
    )
    # a UTF-8 byte-order mark (Windows editors) is fine
    path.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump(load_scenario("small").model_dump(
        mode="json")).encode())
    assert load_scenario(path).name == "small"


def test_yaml_errors_are_one_line_with_line_and_column(write_yaml) -> None:
    """PyYAML's message repeats the offending source lines; ours says where, on one line."""
    file = write_yaml("name: x\nfacilities: [1, 2\ncohorts: }\n")
    with pytest.raises(ScenarioError) as exc:
        load_scenario(file)
    assert str(exc.value) == (
        f"{file}: not valid YAML: line 3, column 8: while parsing a flow sequence; "
        "expected ',' or ']', but got ':'"
    )
    with pytest.raises(ScenarioError, match="nested too deeply"):
        load_scenario(write_yaml("[" * 500 + "]" * 500))


def test_not_a_regular_file_or_too_large(tmp_path: Path) -> None:
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    with pytest.raises(ScenarioError, match=r"no such scenario file \(a directory\)"):
        load_scenario(folder)
    big = tmp_path / "big.yaml"
    with big.open("wb") as fh:
        fh.truncate(65 * 2**20)  # sparse: costs no disk
    with pytest.raises(ScenarioError, match="larger than 64 MiB"):
        load_scenario(big)


def test_validation_errors_stay_one_line_per_problem(small_copy: dict, write_yaml) -> None:
    small_copy["facilities"][0]["colour\nred"] = 1
    small_copy["facilities"][1]["grid_zone"] = "a\nb"
    with pytest.raises(ScenarioError) as exc:
        load_scenario(write_yaml(small_copy))
    lines = str(exc.value).splitlines()
    assert len(lines) == 1 and lines[0].endswith(
        ": facilities[0].'colour\\nred': unknown field (check the spelling; see "
        "`evgrid scenarios --schema`)")


# -- will it fit in memory ----------------------------------------------------------------------


def _huge_city(small: dict) -> dict:
    """Within every per-field bound, but 366 days at Δt = 1 min over 300,000 chargers."""
    small["horizon_days"], small["dt_min"] = 366, 1
    for f in small["facilities"]:
        f["zones"]["A"]["spaces"] = f["zones"]["A"]["chargers"]["count"] = 100_000
    return small


def test_a_city_too_big_for_memory_is_refused_in_one_line(small_copy: dict, write_yaml) -> None:
    file = write_yaml(_huge_city(small_copy))
    with pytest.raises(ScenarioError) as exc:
        check_memory(load_scenario(file), source=str(file))
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"{file}: a run needs an estimated ")
    assert "TiB of memory" in msg and "527,040 steps x 300,029 chargers" in msg
    assert "available (" in msg
    assert "shrink horizon_days (now 366), raise dt_min (now 1) or use fewer chargers" in msg


def test_too_many_arrivals_for_memory_say_what_to_lower(small_copy: dict) -> None:
    small_copy["horizon_days"], small_copy["arrivals_per_day"] = 366, 1e7
    with pytest.raises(ScenarioError, match=r"for ~3,660,000,000 sessions\).*: lower "
                                            r"arrivals_per_day \(now 1e\+07\) or horizon_days"):
        check_memory(parse_scenario(small_copy), source="busy")


def test_memory_switch_skips_the_check(small_copy: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_SWITCH, "off")
    sc = parse_scenario(_huge_city(small_copy))  # loading allocates nothing, so it never refuses
    check_memory(sc, source="switched off")
    assert sc.steps == 527_040


@pytest.mark.parametrize("name", ["small", "city", "lot2102", "benchmarks/acn54.yaml"])
def test_bundled_and_benchmark_scenarios_fit_a_small_machine(name: str) -> None:
    """Accepted with 4 GiB to spare (the README's machine has 24 GB): the estimate is
    conservative, not silly."""
    path = Path(__file__).parents[2] / name if name.endswith(".yaml") else name
    sc = load_scenario(path)
    assert memory_problem(sc, available=(4 * GIB, "test")) is None
    assert estimate_memory(sc).total < 1 * GIB


def test_memory_estimate_follows_the_simulators_arrays() -> None:
    sc = load_scenario("city")
    est = estimate_memory(sc)
    assert est.steps == 96 and est.chargers == 988 and est.slots == 80
    # [steps x chargers] int64 + float64 for 8 kept runs, at least
    assert est.grid_bytes >= 96 * 988 * 16 * 8
    # the LP has one variable per occupied (step, charger) cell: no more than all of them,
    # and no fewer than the 36,191 the real city run solves
    assert 36_191 <= est.lp_variables <= 96 * 988
    assert 2_000 < est.sessions < 3_200  # ~2,600 expected arrivals a day
    assert memory_problem(sc, available=(int(est.total) - 1, "a test figure")) is not None
    assert memory_problem(sc, available=(int(est.total) + 1, "a test figure")) is None


def test_memory_check_is_cheap() -> None:
    sc = load_scenario("city")
    t0 = time.perf_counter()
    for _ in range(100):
        memory_problem(sc)
    assert (time.perf_counter() - t0) / 100 < 0.005  # a load of city takes ~300 ms


def test_available_memory_is_read_from_this_machine() -> None:
    got = available_memory()
    if not Path("/proc/meminfo").exists():
        pytest.skip("no /proc/meminfo here")
    assert got is not None
    avail, where = got
    total_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text()
                     .splitlines() if line.startswith("MemTotal:"))
    assert 0 < avail <= total_kib * 1024 and where
