"""Field mode from the command line: ``evgrid chargepoint-sim``, and the pieces ``evgrid station
--site`` and ``evgrid coordinator --field`` use (``evgrid.cli_edge``).

Every process of a field run keeps the same clock: step 0 of the day at the real time
``--start-at`` (seconds since the epoch; default at ``--speed 1``: today's 00:00 UTC), then
``--speed`` simulated seconds per real second (1 in the field; faster in a demo).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from evgrid.field.chargepoint_sim import SimClock

SpeedOption = Annotated[float, typer.Option(
    min=0.001, max=1e5, help="simulated seconds per real second: 1 in the field, e.g. 900 in "
    "a demo (a 15-minute period a second); every process of a run gives the same")]
StartAtOption = Annotated[float | None, typer.Option(
    min=0, help="real time [s since the epoch] of the day's step 0; every process of a run "
    "gives the same (default: today's 00:00 UTC at --speed 1, else now rounded up to the "
    "next second)")]


def field_clock(speed: float, start_at: float | None) -> SimClock:
    """The run's clock. Without ``--start-at``: at real time (speed 1) the day starts at
    today's 00:00 UTC, so every process agrees with no option given; faster, it starts now
    (rounded up to the next second), and the processes of one run must be given one."""
    from evgrid.field.chargepoint_sim import SimClock

    now = time.time()
    if start_at is not None:
        t0 = start_at
    elif speed == 1.0:
        t0 = float(math.floor(now / 86400.0) * 86400.0)
    else:
        t0 = float(math.ceil(now))
    return SimClock(t0_s=t0, speed=speed, epoch_s=t0)


def chargepoint_sim(
    csms: Annotated[str, typer.Option(
        help="the station's CSMS: ws://HOST:PORT (the charge point connects to .../<id>)")],
    cp_id: Annotated[str, typer.Option("--id", help="this charge point's id, as in the "
                                       "station's site file")],
    max_kw: Annotated[str, typer.Option(
        help="rating of each EVSE [kW]: one number for all, or one per EVSE, comma-separated")],
    evses: Annotated[int, typer.Option(min=1, max=64, help="EVSEs (one EV each)")] = 10,
    rate_unit: Annotated[str, typer.Option(
        help="the unit its charging profiles take: W or A (it says so when asked)")] = "W",
    seed: Annotated[int, typer.Option(min=0, help="random seed of the EV sessions")] = 0,
    hours: Annotated[float, typer.Option(min=0.1, max=24 * 366,
                                         help="simulated hours of EV arrivals")] = 24.0,
    speed: SpeedOption = 1.0,
    start_at: StartAtOption = None,
    tick_s: Annotated[float, typer.Option(
        min=0.005, max=60, help="real seconds between meter readings")] = 0.1,
    ignore_profiles: Annotated[bool, typer.Option(
        "--ignore-profiles", help="accept charging profiles and draw the rating anyway (a "
        "faulty charger, for testing the station's detection)")] = False,
    drop_at_h: Annotated[float | None, typer.Option(
        min=0, help="drop the link once, this many simulated hours into the day, as a network "
        "fault would (it reconnects by itself)")] = None,
    drop_for_s: Annotated[float, typer.Option(
        min=0, help="real seconds the dropped link stays down")] = 1.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="debug logging")] = False,
) -> None:
    """A simulated OCPP 2.0.1 charge point with EVs that follow its charging profiles."""
    import asyncio
    import contextlib
    import logging
    import re
    import signal

    from evgrid.cli import err, fail
    from evgrid.field.chargepoint_sim import SimulatedChargePoint, daily_sessions

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not re.fullmatch(r"wss?://[^/\s]+", csms.rstrip("/")):
        raise fail(f"--csms {csms!r} is not ws://HOST:PORT")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", cp_id):
        raise fail(f"--id {cp_id!r}: letters, digits, _ . - (at most 64)")
    if rate_unit not in ("W", "A"):
        raise fail(f"--rate-unit {rate_unit!r}: W or A")
    try:
        ratings = [float(x) for x in max_kw.split(",")]
    except ValueError:
        raise fail(f"--max-kw {max_kw!r}: numbers, comma-separated") from None
    if len(ratings) not in (1, evses) or not all(0 < r <= 4000 for r in ratings):
        raise fail(f"--max-kw {max_kw!r}: one rating, or {evses} (one per EVSE), each in "
                   "(0, 4000] kW")
    rating: float | list[float] = ratings[0] if len(ratings) == 1 else ratings
    clock = field_clock(speed, start_at)
    cp = SimulatedChargePoint(
        cp_id, csms, daily_sessions(evses, rating, clock.t0_s, hours, seed), clock, evses=evses,
        max_kw=rating, rate_unit=rate_unit, tick_s=tick_s,  # type: ignore[arg-type]
        ignore_profiles=ignore_profiles)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        tasks = [asyncio.create_task(cp.run(stop))]
        if drop_at_h is not None:
            async def drop() -> None:
                await asyncio.sleep(max(clock.t0_s + drop_at_h * 3600 - clock.now(), 0) / speed)
                err.print(f"charge point {cp_id}: dropping its link for {drop_for_s:g} s",
                          highlight=False)
                await cp.drop(drop_for_s)
            tasks.append(asyncio.create_task(drop()))
        await tasks[0]
        for t in tasks[1:]:
            t.cancel()

    err.print(f"charge point {cp_id}: {evses} EVSEs -> {csms}/{cp_id}", highlight=False)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    err.print(f"charge point {cp_id}: {cp.connects} connections, {cp.profiles_taken} "
              f"profiles taken, most drawn above a profile {max(cp.peak_over_kw, 0):.2f} kW",
              highlight=False, soft_wrap=True)


def field_table(kpis: dict[str, Any], stations: dict[str, dict[str, float]]) -> Any:
    """The field day's KPIs at 80 columns."""
    from rich.table import Table

    t = Table(title="field day (as metered)", width=80)
    t.add_column("KPI")
    t.add_column("value", justify="right")
    for k, v in kpis.items():
        t.add_row(k, f"{v:,.2f}" if isinstance(v, float) else f"{v:,}")
    for sid, row in stations.items():
        t.add_row(f"{sid}: metered / executed kWh",
                  f"{row['metered_kwh']:,.1f} / {row['executed_kwh']:,.1f}")
    return t


def write_field_results(path: Path, kpis: dict[str, Any],
                        stations: dict[str, dict[str, float]]) -> None:
    import json

    path.write_text(json.dumps({"mode": "field", "kpis": kpis, "stations": stations},
                               indent=2))
