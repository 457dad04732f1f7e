"""Recorded sessions and prices: parsing, skip reports, price alignment, scenario-file replay."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from evgrid.agents.policies import make_policy
from evgrid.envs import Simulator
from evgrid.envs.kpis import compute_kpis
from evgrid.envs.sessions import draw_sessions
from evgrid.envs.world import build_world
from evgrid.evaluation.replay import horizon_notes, single_site_scenario
from evgrid.scenario import ScenarioError, load_scenario, parse_scenario
from evgrid.scenario.bounds import MAX_BATTERY_KWH
from evgrid.scenario.recorded import (
    RECORDED_ARRIVAL_SOC,
    SKIP_ENERGY,
    SKIP_ENERGY_LARGE,
    SKIP_NAIVE,
    SKIP_ORDER,
    SKIP_TIME,
    RecordedDataError,
    RecordedSessions,
    prices_for_horizon,
    read_price_csv,
    read_sessions_csv,
)

HEADER = "arrival,departure,requested_energy_kwh,station_id\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> np.datetime64:
    return np.datetime64(datetime(year, month, day, hour, minute), "s")


def test_good_rows_are_parsed_and_converted_to_utc(tmp_path: Path) -> None:
    csv = write(
        tmp_path / "s.csv",
        HEADER
        + "2019-05-01T08:15:00+02:00,2019-05-01T17:00:00+02:00,12.5,CS-1\n"
        + "2019-05-01T09:00:00Z,2019-05-02T01:30:00Z,0,CS-2\n",
    )
    rec = read_sessions_csv(csv)
    assert len(rec) == 2 and rec.skipped == 0 and rec.skipped_lines == []
    assert rec.arrival.tolist() == [utc(2019, 5, 1, 6, 15), utc(2019, 5, 1, 9, 0)]
    assert rec.departure.tolist() == [utc(2019, 5, 1, 15, 0), utc(2019, 5, 2, 1, 30)]
    assert rec.requested_kwh.tolist() == [12.5, 0.0]
    assert rec.station_id == ["CS-1", "CS-2"]
    assert rec.line.tolist() == [2, 3]
    assert rec.first_midnight_utc() == datetime(2019, 5, 1, tzinfo=UTC)


def test_bad_rows_are_skipped_with_count_reasons_and_line_numbers(tmp_path: Path) -> None:
    rows = [
        "2019-05-01T08:00:00Z,2019-05-01T10:00:00Z,5,a",  # 2 good
        "2019-05-01T10:00:00Z,2019-05-01T10:00:00Z,5,b",  # 3 departure == arrival
        "2019-05-01T11:00:00Z,2019-05-01T09:00:00Z,5,c",  # 4 departure before arrival
        "2019-05-01T08:00:00Z,2019-05-01T10:00:00Z,-1,d",  # 5 negative energy
        "2019-05-01T08:00:00Z,2019-05-01T10:00:00Z,nan,e",  # 6 not finite
        "yesterday,2019-05-01T10:00:00Z,5,f",  # 7 garbage time
        "2019-05-01T08:00:00,2019-05-01T10:00:00,5,g",  # 8 naive times
        "",  # 9 blank: not a record
        "2019-05-01T12:00:00+01:00,2019-05-01T13:00:00+01:00,3.5,h",  # 10 good
        "2019-05-01T12:00:00Z",  # 11 short row: no departure
    ]
    rec = read_sessions_csv(write(tmp_path / "s.csv", HEADER + "\n".join(rows) + "\n"))
    assert len(rec) == 2
    assert rec.line.tolist() == [2, 10]
    assert rec.skipped == 7
    assert rec.skipped_lines == [3, 4, 5, 6, 7, 8, 11]
    assert rec.skip_reasons == {SKIP_ORDER: 2, SKIP_ENERGY: 2, SKIP_TIME: 2, SKIP_NAIVE: 1}
    report = rec.skip_report()
    assert "skipped 7 row(s)" in report and "3, 4, 5, 6, 7, 8, 11" in report


def test_only_the_first_ten_skipped_lines_are_kept_but_all_are_counted(tmp_path: Path) -> None:
    bad = "2019-05-01T08:00:00Z,2019-05-01T07:00:00Z,5,x\n" * 25
    rec = read_sessions_csv(write(tmp_path / "s.csv", HEADER + bad))
    assert rec.skipped == 25 and len(rec) == 0
    assert rec.skipped_lines == list(range(2, 12))
    assert rec.skip_report().endswith(", ...")


def test_missing_column_names_it_and_lists_the_header(tmp_path: Path) -> None:
    csv = write(tmp_path / "s.csv", "arrival,leave,requested_energy_kwh\n")
    with pytest.raises(RecordedDataError) as exc:
        read_sessions_csv(csv)
    msg = str(exc.value)
    assert "no column 'departure'" in msg
    assert "'arrival', 'leave', 'requested_energy_kwh'" in msg


def test_column_mapping_flags_and_optional_station(tmp_path: Path) -> None:
    csv = write(
        tmp_path / "elaad.csv",
        "UTCTransactionStart,UTCTransactionStop,TotalEnergy\n"
        "2019-01-02T10:00:00Z,2019-01-02T12:00:00Z,7.25\n",
    )
    with pytest.raises(RecordedDataError, match="'arrival'"):
        read_sessions_csv(csv)
    rec = read_sessions_csv(
        csv,
        arrival_col="UTCTransactionStart",
        departure_col="UTCTransactionStop",
        energy_col="TotalEnergy",
    )
    assert len(rec) == 1 and rec.requested_kwh.tolist() == [7.25]
    assert rec.station_id is None
    assert rec.arrival.tolist() == [utc(2019, 1, 2, 10)]


def test_price_csv_generic_layout(tmp_path: Path) -> None:
    csv = write(
        tmp_path / "p.csv",
        "timestamp,price_per_kwh\n"
        "2024-03-01T01:00:00+01:00,0.30\n"  # = 00:00 UTC; rows may come in any order
        "2024-03-01T02:00:00Z,0.10\n"
        "2024-03-01T01:00:00Z,0.20\n",
    )
    ts, p = read_price_csv(csv)
    assert ts.tolist() == [utc(2024, 3, 1, 0), utc(2024, 3, 1, 1), utc(2024, 3, 1, 2)]
    assert p.tolist() == [0.30, 0.20, 0.10]


def test_price_csv_ev2gym_layout(tmp_path: Path) -> None:
    # The real file's quirks: two timestamp spellings (day-first after the switch), a blank
    # separator row, and repeated hours with the same price; EUR/MWh becomes EUR/kWh.
    csv = write(
        tmp_path / "Netherlands_day-ahead-2015-2024.csv",
        "Country,Datetime (UTC),Datetime (Local),Price (EUR/MWhe)\n"
        "Netherlands,2022-12-31 22:00:00,2022-12-31 23:00:00,100.0\n"
        "Netherlands,2022-12-31 23:00:00,2023-01-01 00:00:00,-3.61\n"
        "Netherlands,,,0.0\n"
        "Netherlands,31/12/2022 23:00,01/01/2023 00:00,-3.61\n"
        "Netherlands,01/02/2023 00:00,01/02/2023 01:00,55.5\n",
    )
    ts, p = read_price_csv(csv)
    assert ts.tolist() == [utc(2022, 12, 31, 22), utc(2022, 12, 31, 23), utc(2023, 2, 1, 0)]
    np.testing.assert_allclose(p, [0.1, -0.00361, 0.0555])


def test_price_csv_refuses_unknown_layouts_and_conflicts(tmp_path: Path) -> None:
    with pytest.raises(RecordedDataError, match="not a price file"):
        read_price_csv(write(tmp_path / "a.csv", "time,eur\n2024-01-01T00:00Z,1\n"))
    conflict = "timestamp,price_per_kwh\n2024-01-01T00:00Z,1\n2024-01-01T00:00Z,2\n"
    with pytest.raises(RecordedDataError, match="conflicting prices"):
        read_price_csv(write(tmp_path / "b.csv", conflict))
    with pytest.raises(RecordedDataError, match=":2: no UTC offset"):
        read_price_csv(write(tmp_path / "c.csv", "timestamp,price_per_kwh\n2024-01-01T00:00,1\n"))


def test_prices_for_horizon_takes_the_hour_in_force_and_checks_coverage() -> None:
    ts = np.array([utc(2024, 1, 1, h) for h in (0, 1, 2, 4)])  # 03:00 missing
    prices = np.array([10.0, 11.0, 12.0, 14.0])
    start = datetime(2024, 1, 1, 0, 30, tzinfo=UTC)
    got = prices_for_horizon(ts, prices, start, steps=9, dt_h=0.5)
    # step starts 00:30 01:00 01:30 02:00 02:30 03:00 03:30 04:00 04:30
    assert got.tolist() == [10, 11, 11, 12, 12, 12, 12, 14, 14]
    # an aware start in another zone means the same instant
    cet = datetime(2024, 1, 1, 3, 0, tzinfo=timezone(timedelta(hours=1)))  # 02:00 UTC
    assert prices_for_horizon(ts, prices, cet, 1, 1.0).tolist() == [12.0]
    with pytest.raises(RecordedDataError) as exc:
        prices_for_horizon(ts, prices, start, steps=10, dt_h=0.5)  # last step at 05:00
    assert "2024-01-01T00:00:00+00:00 to 2024-01-01T05:00:00+00:00" in str(exc.value)
    with pytest.raises(RecordedDataError, match="prices cover"):
        prices_for_horizon(ts, prices, start - timedelta(hours=1), steps=1, dt_h=0.5)


def test_draw_sessions_with_no_arrivals_gives_an_empty_table(small_copy: dict) -> None:
    small_copy["arrivals_per_day"] = 0
    sessions = draw_sessions(parse_scenario(small_copy), np.random.default_rng(0))
    assert len(sessions) == 0


def test_scenario_sessions_csv_replays_exactly_that_file_at_that_facility(
    tmp_path: Path, small_copy: dict, write_yaml
) -> None:
    write(
        tmp_path / "depot.csv",
        HEADER
        + "2024-06-03T07:10:00+02:00,2024-06-03T09:00:00+02:00,20,x\n"  # 05:10-07:00 UTC
        + "2024-06-03T22:00:00Z,2024-06-04T03:00:00Z,15,y\n"  # past the 1-day horizon: cut
        + "2024-06-03T12:00:00Z,2024-06-03T11:00:00Z,15,z\n"  # bad: skipped with a warning
        + "2024-06-04T01:00:00Z,2024-06-04T02:00:00Z,5,w\n",  # after the horizon: dropped
    )
    plain = parse_scenario(small_copy)
    small_copy["facilities"][1]["sessions_csv"] = "depot.csv"  # relative to the YAML file
    sc = load_scenario(write_yaml(small_copy))
    with pytest.warns(UserWarning, match="skipped 1 row"):
        got = draw_sessions(sc, np.random.default_rng(7))
    mine = got.facility == 1
    assert mine.sum() == 2
    # dt = 15 min from midnight UTC of the first arrival: 05:10 -> step 20, 07:00 -> step 28
    assert got.arrival_step[mine].tolist() == [20, 88]
    assert got.departure_step[mine].tolist() == [28, 96]
    assert got.requested_kwh[mine].tolist() == [20.0, 15.0]
    assert got.floor_kwh[mine].tolist() == [20.0, 15.0]
    assert (got.cohort[mine] == -1).all()
    assert (got.arrival_soc[mine] == RECORDED_ARRIVAL_SOC).all()
    fac = small_copy["facilities"][1]
    np.testing.assert_allclose(got.origin_xy_km[mine], [[fac["x_km"], fac["y_km"]]] * 2)
    # no randomness was used for the file: the Poisson draws are those of the plain scenario
    drawn = draw_sessions(plain, np.random.default_rng(7))
    np.testing.assert_array_equal(got.arrival_step[~mine], drawn.arrival_step)
    np.testing.assert_array_equal(got.requested_kwh[~mine], drawn.requested_kwh)


def test_scenario_price_csv_is_aligned_to_the_recorded_sessions(
    tmp_path: Path, small_copy: dict, write_yaml
) -> None:
    write(tmp_path / "s.csv", HEADER + "2024-06-03T05:00:00Z,2024-06-03T07:00:00Z,5,x\n")
    hours = [datetime(2024, 6, 2, tzinfo=UTC) + timedelta(hours=h) for h in range(72)]
    write(
        tmp_path / "p.csv",
        "timestamp,price_per_kwh\n"
        + "".join(f"{t.isoformat()},{i}\n" for i, t in enumerate(hours)),
    )
    small_copy["prices"]["price_csv"] = "p.csv"
    only_prices = load_scenario(write_yaml(small_copy))
    # no session file: step 0 = midnight UTC of the first price, so hour h costs h
    assert build_world(only_prices).price_per_kwh[::4].tolist() == list(range(24))
    small_copy["facilities"][0]["sessions_csv"] = "s.csv"
    both = load_scenario(write_yaml(small_copy))
    # with one: step 0 = midnight of 2024-06-03, 24 hours into the price file
    assert build_world(both).price_per_kwh[::4].tolist() == list(range(24, 48))
    # an explicit price array still wins
    explicit = np.full(both.steps, 0.5)
    assert (build_world(both, price_per_kwh=explicit).price_per_kwh == 0.5).all()


def test_single_site_scenario_builds_one_site_and_drops_outside_sessions(tmp_path: Path) -> None:
    csv = write(
        tmp_path / "site.csv",
        HEADER  # not in time order: the table must come out sorted by arrival
        + "2024-01-03T08:00:00Z,2024-01-03T09:00:00Z,6,c\n"
        + "2024-01-01T08:00:00Z,2024-01-01T10:00:00Z,8,a\n"
        + "2024-01-01T23:00:00Z,2024-01-02T02:00:00Z,0.4,b\n",
    )
    rec = read_sessions_csv(csv)
    sc, sessions = single_site_scenario(rec, chargers=3, charger_kw=11, site_limit_kw=20, dt_min=5)
    assert sc.horizon_days == 3  # whole days up to the last departure (03 Jan 09:00)
    assert sc.arrivals_per_day == 0 and sc.city_limit_kw == 20
    [fac] = sc.facilities
    assert fac.zones["general"].chargers.count == 3 == fac.zones["general"].spaces
    assert [g.limit_kw for g in sc.grid_zones] == [20]
    assert len(sessions) == 3 and (sessions.facility == 0).all()
    assert sessions.arrival_step.tolist() == [96, 276, 672]
    assert (sessions.max_kw == 11).all()
    # the whole request fits in the battery; a tiny one still gets a positive battery
    assert sessions.departure_step.tolist() == [120, 312, 684]
    np.testing.assert_allclose(sessions.requested_kwh, [8, 0.4, 6])
    room = sessions.battery_kwh * (1 - sessions.arrival_soc)
    assert (sessions.requested_kwh <= room + 1e-12).all() and (sessions.battery_kwh >= 1).all()
    assert len(draw_sessions(sc, np.random.default_rng(0))) == 0  # nothing random added

    start = datetime(2024, 1, 1, 12, tzinfo=UTC)
    sc1, s1 = single_site_scenario(
        rec, chargers=3, charger_kw=11, site_limit_kw=20, dt_min=15, start=start, days=1
    )
    assert len(s1) == 1 and s1.arrival_step.tolist() == [44]  # 23:00 is 11 h after noon
    notes = horizon_notes(rec, sc1, start)
    assert notes[0].startswith("2 of 3 session(s) arrive outside the horizon")
    with pytest.raises(ValueError, match="no UTC offset"):
        single_site_scenario(
            rec, chargers=3, charger_kw=11, site_limit_kw=20, start=datetime(2024, 1, 1)
        )


def test_absolute_recorded_paths_survive_loading(
    tmp_path: Path, small_copy: dict, write_yaml
) -> None:
    csv = write(tmp_path / "s.csv", HEADER + "2024-06-03T05:00:00Z,2024-06-03T07:00:00Z,5,x\n")
    small_copy["facilities"][0]["sessions_csv"] = str(csv.resolve())
    sc = load_scenario(write_yaml(small_copy))
    assert sc.facilities[0].sessions_csv == csv.resolve()


# -- validation at the door ---------------------------------------------------------------------


def test_energy_beyond_the_largest_battery_is_skipped_and_reported(tmp_path: Path) -> None:
    rows = [
        "2019-05-01T08:00:00Z,2019-05-01T10:00:00Z,2000,a",  # 2 the largest battery: kept
        "2019-05-01T08:00:00Z,2019-05-01T10:00:00Z,2000.5,b",  # 3 more than any battery
        "2019-05-01T08:00:00Z,2019-05-01T10:00:00Z,1e308,c",  # 4 once reached JSON as inf
        "2019-05-01T08:00:00Z,2019-05-01T10:00:00Z,12500,d",  # 5 Wh written for kWh
        "2019-05-01T08:00:00Z,2019-05-01T10:00:00Z,12.5,e",  # 6 good
    ]
    rec = read_sessions_csv(write(tmp_path / "s.csv", HEADER + "\n".join(rows) + "\n"))
    assert rec.requested_kwh.tolist() == [2000.0, 12.5] and rec.line.tolist() == [2, 6]
    assert rec.skip_reasons == {SKIP_ENERGY_LARGE: 3} and rec.skipped_lines == [3, 4, 5]
    assert f"{MAX_BATTERY_KWH:,.0f} kWh" in SKIP_ENERGY_LARGE
    assert "3 energy above 2,000 kWh" in rec.skip_report()
    # what remains replays to KPIs that strict JSON can hold (1e308 kWh once made them inf)
    sc, sessions = single_site_scenario(rec, chargers=2, charger_kw=50, site_limit_kw=100)
    assert sessions.requested_kwh.sum() == 2012.5
    kpis = compute_kpis(Simulator(sc, sessions=sessions).run(make_policy("llf")))
    assert json.loads(json.dumps(kpis, allow_nan=False))["energy_requested_kwh"] == 2012.5


def test_binary_or_non_csv_session_files_name_the_file(tmp_path: Path) -> None:
    binary = tmp_path / "s.csv"
    binary.write_bytes(HEADER.encode() + bytes(range(128, 256)))
    with pytest.raises(RecordedDataError, match=rf"^{binary}: not UTF-8 text \(byte 0x80"):
        read_sessions_csv(binary)
    huge_cell = tmp_path / "h.csv"
    huge_cell.write_text(HEADER + '"' + "x" * 200_000 + '",b,c,d\n')
    with pytest.raises(RecordedDataError, match=rf"^{huge_cell}: not a CSV file after line \d+: "
                                                "field larger than field limit"):
        read_sessions_csv(huge_cell)
    prices = tmp_path / "p.csv"
    prices.write_bytes(b"\xff\xfe\x00t\x00i\x00m\x00e")  # UTF-16: a common export mistake
    with pytest.raises(RecordedDataError, match=rf"^{prices}: not UTF-8 text"):
        read_price_csv(prices)


def test_price_beyond_the_bound_refuses_the_price_file(tmp_path: Path) -> None:
    csv = write(tmp_path / "p.csv", "timestamp,price_per_kwh\n2024-01-01T00:00Z,0.3\n"
                "2024-01-01T01:00Z,1e308\n")
    with pytest.raises(RecordedDataError, match=r"p\.csv:3: price 1e\+308 per kWh is not "
                                                "within ±10,000"):
        read_price_csv(csv)


def _one_session(tmp_path: Path) -> RecordedSessions:
    return read_sessions_csv(
        write(tmp_path / "s.csv", HEADER + "2024-01-01T08:00:00Z,2024-01-01T10:00:00Z,8,a\n")
    )


SITE = {"chargers": 3, "charger_kw": 11.0, "site_limit_kw": 20.0, "dt_min": 5, "days": None}
BAD_OPTIONS = [
    ({"chargers": 0}, "--chargers: 0 is not >= 1"),
    ({"chargers": 10**9}, "--chargers: 1000000000 is not <= 100000"),
    ({"chargers": 2.5}, "--chargers: 2.5 is not a whole number"),
    ({"charger_kw": 0.0}, "--charger-kw: 0.0 is not > 0"),
    ({"charger_kw": math.nan}, "--charger-kw: nan is not a finite number"),
    ({"charger_kw": 1e6}, "--charger-kw: 1000000.0 is not <= 4000"),
    ({"site_limit_kw": -5.0}, "--site-limit-kw: -5.0 is not > 0"),
    ({"site_limit_kw": math.inf}, "--site-limit-kw: inf is not a finite number"),
    ({"site_limit_kw": 1e12}, "--site-limit-kw: 1000000000000.0 is not <= 10000000"),
    ({"site_limit_kw": 1e-6}, "--site-limit-kw: 1e-06 is not >= 0.001"),
    ({"dt_min": 0}, "--dt-min: 0 is not a whole number of minutes in [1, 60]"),
    ({"dt_min": 7}, "--dt-min: 7 does not divide an hour"),
    ({"dt_min": 1440}, "--dt-min: 1440 is not a whole number of minutes in [1, 60]"),
    ({"days": 0.0}, "--days: 0.0 is not > 0"),
    ({"days": math.inf}, "--days: inf is not a finite number"),
    ({"days": 1e6}, "--days: 1000000.0 is not <= 366"),
    ({"days": 0.001}, "--days: 0.001 is shorter than one step of 5 min"),
]


@pytest.mark.parametrize(("change", "message"), BAD_OPTIONS, ids=[m for _, m in BAD_OPTIONS])
def test_replay_options_are_range_checked_in_one_line(
    tmp_path: Path, change: dict, message: str
) -> None:
    with pytest.raises(ScenarioError) as exc:
        single_site_scenario(_one_session(tmp_path), **{**SITE, **change})
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value), str(exc.value)
    assert isinstance(exc.value, ValueError)  # what `evgrid replay` turns into a one-line error


def test_replay_refuses_sessions_spanning_more_than_a_year_without_a_window(
    tmp_path: Path,
) -> None:
    rec = read_sessions_csv(
        write(tmp_path / "s.csv", HEADER + "2020-01-01T08:00:00Z,2024-01-01T10:00:00Z,8,a\n")
    )
    with pytest.raises(ScenarioError, match=r"the sessions run 1,462 days from "
                                            r"2020-01-01T00:00:00\+00:00 .*pick a window with "
                                            "--start and --days"):
        single_site_scenario(rec, chargers=3, charger_kw=11, site_limit_kw=20)
    sc, _ = single_site_scenario(rec, chargers=3, charger_kw=11, site_limit_kw=20, days=7)
    assert sc.horizon_days == 7


def test_scenario_price_csv_beyond_the_bound_is_refused_when_the_world_is_built(
    tmp_path: Path, small_copy: dict, write_yaml
) -> None:
    write(tmp_path / "p.csv", "timestamp,price_per_kwh\n2024-06-03T00:00:00Z,-1e9\n")
    small_copy["prices"]["price_csv"] = "p.csv"
    sc = load_scenario(write_yaml(small_copy))  # exists and is readable: loads
    with pytest.raises(RecordedDataError, match="price -1e\\+09 per kWh is not within"):
        build_world(sc)
