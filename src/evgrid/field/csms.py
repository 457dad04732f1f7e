"""The station as the CSMS of its own chargers: an OCPP 2.0.1 websocket server (``ocpp``).

Each charge point of the site file connects to ``ws://HOST:PORT/<charge point id>`` with the
``ocpp2.0.1`` subprotocol; an id the site does not own is refused at the handshake. What the
chargers report updates the :class:`~evgrid.field.site.Site`:

- ``BootNotification`` accepts the charger and asks it (``GetVariables``
  SmartChargingCtrlr.RateUnit) which unit its charging profiles take, W or A; then sets a
  TxDefaultProfile of 0, so a new EV draws nothing until its first set-point;
- ``StatusNotification``: a Faulted or Unavailable connector is an outage (its EVSE leaves the
  station's state); a charger whose link drops is an outage until it reconnects;
- ``TransactionEvent`` Started/Updated/Ended and ``MeterValues``: sessions, energy
  (Energy.Active.Import.Register), power (Power.Active.Import), SoC;
- ``NotifyEVChargingNeeds``: the energy the EV asks for and its departure time.

Set-points go out as ``SetChargingProfile``: a TxProfile of the EVSE's transaction, absolute,
from now at the set-point (in W, or in A at the charger's voltage and phases), and 0 from
``duration_s`` on, so a charger that hears nothing more stops rather than run on at a power
nobody agreed.
Readings that are not finite or negative are ignored, not trusted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ocpp.routing import on
from ocpp.v201 import ChargePoint, call, call_result
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from evgrid.field.site import Site

log = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp2.0.1"
#: How long a charger waits between heartbeats [s] (BootNotification's interval).
HEARTBEAT_S = 60
#: Longest wait for a charger's answer to a call [s].
CALL_TIMEOUT_S = 5.0
#: The id of the TxDefaultProfile (EVSE profiles take their station charger number + 1).
DEFAULT_PROFILE_ID = 100_000


def iso(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, UTC).isoformat().replace("+00:00", "Z")


def epoch(text: str | None) -> float:
    """Seconds since the epoch of an OCPP timestamp (NaN if absent or unreadable)."""
    if not text:
        return math.nan
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return math.nan


def _readings(meter_value: list[dict[str, Any]] | None) -> dict[str, float]:
    """The last finite, non-negative value of each measurand (energy defaults, per OCPP)."""
    out: dict[str, float] = {}
    for mv in meter_value or []:
        for sv in mv.get("sampled_value", []):
            v = sv.get("value")
            if isinstance(v, int | float) and math.isfinite(v) and v >= 0:
                out[sv.get("measurand", "Energy.Active.Import.Register")] = float(v)
    return out


@dataclass
class ApplyResult:
    """What one round of set-points came to."""

    accepted: int = 0
    rejected: int = 0  # refused, or no answer within CALL_TIMEOUT_S
    skipped: int = 0  # no transaction, charger offline, or the EV left meanwhile
    seconds: float = 0.0


class ChargerLink(ChargePoint):
    """One charge point's connection (the ``ocpp`` router calls the ``on_*`` handlers)."""

    def __init__(self, cp_id: str, connection: ServerConnection, site: Site) -> None:
        super().__init__(cp_id, connection, response_timeout=CALL_TIMEOUT_S)
        self.site = site
        self.booted = asyncio.Event()

    def _evse(self, evse_id: int | None) -> Any:
        e = self.site.evse(self.id, int(evse_id)) if isinstance(evse_id, int) else None
        if e is None:
            log.warning("charger %s: no EVSE %r in the site file; ignored", self.id, evse_id)
        return e

    @on("BootNotification")
    def on_boot(self, charging_station: dict[str, Any], reason: str,
                **_: Any) -> call_result.BootNotification:
        self.booted.set()
        return call_result.BootNotification(current_time=iso(time.time()),
                                            interval=HEARTBEAT_S, status="Accepted")

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=iso(time.time()))

    @on("StatusNotification")
    def on_status(self, timestamp: str, connector_status: str, evse_id: int, connector_id: int,
                  **_: Any) -> call_result.StatusNotification:
        e = self._evse(evse_id)
        if e is not None:
            e.status = connector_status
        return call_result.StatusNotification()

    @on("NotifyEVChargingNeeds")
    def on_needs(self, charging_needs: dict[str, Any], evse_id: int,
                 **_: Any) -> call_result.NotifyEVChargingNeeds:
        e = self._evse(evse_id)
        if e is None:
            return call_result.NotifyEVChargingNeeds(status="Rejected")
        e.departure_s = epoch(charging_needs.get("departure_time"))
        ac = charging_needs.get("ac_charging_parameters") or {}
        wh = ac.get("energy_amount")
        if isinstance(wh, int | float) and math.isfinite(wh) and wh >= 0:
            e.requested_kwh = wh / 1000.0
        amps, volts = ac.get("ev_max_current"), ac.get("ev_max_voltage")
        if (isinstance(amps, int | float) and isinstance(volts, int | float) and amps > 0
                and volts > 0 and math.isfinite(amps * volts)):
            e.ev_max_kw = amps * volts * e.spec.phases / 1000.0
        return call_result.NotifyEVChargingNeeds(status="Accepted")

    @on("TransactionEvent")
    def on_transaction(self, event_type: str, timestamp: str, trigger_reason: str, seq_no: int,
                       transaction_info: dict[str, Any], meter_value: Any = None,
                       evse: dict[str, Any] | None = None,
                       **_: Any) -> call_result.TransactionEvent:
        e = self._evse((evse or {}).get("id"))
        if e is None:
            return call_result.TransactionEvent()
        tx = transaction_info["transaction_id"]
        read = _readings(meter_value)
        if event_type == "Started" or e.transaction != tx:
            e.transaction, e.arrived_s, e.setpoint_kw, e.ignoring = tx, epoch(timestamp), None, False
            e.departure_s = e.requested_kwh = e.ev_max_kw = e.soc_pct = math.nan
            e.start_wh = read.get("Energy.Active.Import.Register", math.nan)
            e.energy_wh = e.start_wh
        self._meter(e, read)
        if event_type == "Ended":
            e.transaction, e.setpoint_kw, e.power_kw = None, None, 0.0
        return call_result.TransactionEvent()

    @on("MeterValues")
    def on_meter(self, evse_id: int, meter_value: list[dict[str, Any]],
                 **_: Any) -> call_result.MeterValues:
        e = self._evse(evse_id)
        if e is not None:
            self._meter(e, _readings(meter_value))
        return call_result.MeterValues()

    @staticmethod
    def _meter(e: Any, read: dict[str, float]) -> None:
        if "Energy.Active.Import.Register" in read:
            e.energy_wh = read["Energy.Active.Import.Register"]
            if math.isnan(e.start_wh):
                e.start_wh = e.energy_wh
        if "SoC" in read:
            e.soc_pct = read["SoC"]
        if "Power.Active.Import" in read:
            e.metered(read["Power.Active.Import"] / 1000.0)

    async def ask_rate_unit(self) -> None:
        """Which unit this charger's profiles take (W unless it says A only)."""
        unit = "W"
        try:
            res = await self.call(call.GetVariables(get_variable_data=[{
                "component": {"name": "SmartChargingCtrlr"},
                "variable": {"name": "RateUnit"}}]))
            for r in getattr(res, "get_variable_result", None) or []:
                value = str(r.get("attribute_value") or "")
                if r.get("attribute_status") == "Accepted" and "W" not in value and "A" in value:
                    unit = "A"
        except (TimeoutError, ConnectionClosed) as exc:
            log.warning("charger %s: no RateUnit (%s); profiles in W", self.id, exc)
        self.site.rate_unit[self.id] = unit  # type: ignore[assignment]

    async def set_default(self) -> bool:
        """A TxDefaultProfile of 0 on every EVSE: an EV that plugs in waits for its set-point
        (at most a period) instead of drawing its charger's rating unagreed."""
        profile = {
            "id": DEFAULT_PROFILE_ID, "stack_level": 0,
            "charging_profile_purpose": "TxDefaultProfile", "charging_profile_kind": "Relative",
            "charging_schedule": [{
                "id": DEFAULT_PROFILE_ID, "charging_rate_unit": self.site.rate_unit.get(
                    self.id, "W"),
                "charging_schedule_period": [{"start_period": 0, "limit": 0.0}]}],
        }
        try:
            res = await self.call(call.SetChargingProfile(evse_id=0, charging_profile=profile))
        except (TimeoutError, ConnectionClosed) as exc:
            log.warning("charger %s: no default profile (%s)", self.id, type(exc).__name__)
            return False
        ok = getattr(res, "status", None) == "Accepted"
        if not ok:
            log.warning("charger %s refused the default profile: new EVs draw unagreed "
                        "until their first set-point", self.id)
        return ok

    async def set_profile(self, e: Any, kw: float, duration_s: int, now_s: float) -> bool:
        """One EVSE's set-point as a TxProfile; True if the charger accepted it."""
        unit = self.site.rate_unit.get(self.id, "W")
        limit = kw * 1000.0 if unit == "W" else kw * 1000.0 / (e.spec.voltage_v * e.spec.phases)
        profile = {
            "id": e.index + 1, "stack_level": 0, "charging_profile_purpose": "TxProfile",
            "charging_profile_kind": "Absolute", "transaction_id": e.transaction,
            "charging_schedule": [{
                "id": e.index + 1, "charging_rate_unit": unit, "start_schedule": iso(now_s),
                "charging_schedule_period": [{"start_period": 0, "limit": round(limit, 1)},
                                             {"start_period": int(duration_s), "limit": 0.0}]}],
        }
        res = await self.call(call.SetChargingProfile(evse_id=e.evse_id,
                                                      charging_profile=profile))
        ok = getattr(res, "status", None) == "Accepted"
        if ok:
            e.setpoint_kw = kw
        return ok


class SiteCsms:
    """The websocket server and the links of every charge point of ``site``. ``clock`` is the
    site's time (seconds since the epoch; the chargers' clock: wall time in the field, the
    simulator's in a demo), which profiles start from."""

    def __init__(self, site: Site, host: str = "127.0.0.1", port: int = 0,
                 clock: Callable[[], float] = time.time) -> None:
        self.site, self.host, self.port, self.clock = site, host, port, clock
        self.links: dict[str, ChargerLink] = {}  # the link each charge point is served on
        self.open_links: dict[str, list[ChargerLink]] = {}  # every open one, oldest first
        self.server: Server | None = None
        self.connects: dict[str, int] = {c: 0 for c in site.specs}

    async def start(self) -> int:
        """Listen; returns the port (``port`` 0 picks a free one)."""
        self.server = await serve(self._on_connect, self.host, self.port,
                                  subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                                  process_request=self._check_path)
        self.port = int(next(iter(self.server.sockets)).getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def _check_path(self, connection: ServerConnection, request: Any) -> Any:
        cp_id = request.path.strip("/")
        if cp_id not in self.site.specs:
            log.warning("refused a charge point %r not in the site file", cp_id[:64])
            return connection.respond(404, "unknown charge point\n")
        return None

    async def _on_connect(self, ws: ServerConnection) -> None:
        """One charge point's link, for as long as it lasts. A second link under the same id
        (a charger that rebooted before its old connection timed out) takes over; when it
        closes, the older one, if still open, serves again."""
        cp_id = (ws.request.path if ws.request else "").strip("/")
        if ws.subprotocol != SUBPROTOCOL:
            await ws.close(1002, "ocpp2.0.1 only")
            return
        link = ChargerLink(cp_id, ws, self.site)
        stack = self.open_links.setdefault(cp_id, [])
        stack.append(link)
        self.links[cp_id] = link
        self.connects[cp_id] += 1
        self.site.set_online(cp_id, True)
        task = asyncio.create_task(link.start())
        try:
            await asyncio.wait_for(link.booted.wait(), CALL_TIMEOUT_S)
            await link.ask_rate_unit()
            await link.set_default()
            await task
        except (ConnectionClosed, TimeoutError) as exc:
            log.info("charge point %s: link closed (%s)", cp_id, type(exc).__name__)
        finally:
            task.cancel()
            stack.remove(link)
            if stack:
                self.links[cp_id] = stack[-1]
            else:
                self.links.pop(cp_id, None)
                self.site.set_online(cp_id, False)

    async def apply(self, setpoints_kw: dict[int, float], duration_s: int) -> ApplyResult:
        """Send each EVSE (by station charger index) its set-point; chargers in parallel,
        each charger's EVSEs one after another (one call at a time per link, as OCPP says)."""
        t0 = time.perf_counter()
        now = self.clock()
        res = ApplyResult()
        per: dict[str, list[tuple[Any, float]]] = {}
        for idx, kw in setpoints_kw.items():
            e = self.site.evses[idx]
            link = self.links.get(e.charger)
            if link is None or e.transaction is None or not math.isfinite(kw):
                res.skipped += 1
                continue
            per.setdefault(e.charger, []).append((e, max(kw, 0.0)))

        async def one(cp: str, items: list[tuple[Any, float]]) -> list[bool | None]:
            link = self.links[cp]
            out: list[bool | None] = []
            for e, kw in items:
                tx = e.transaction
                if tx is None:  # it left while the profiles before it were on their way
                    out.append(None)
                    continue
                try:
                    ok: bool | None = await link.set_profile(e, kw, duration_s, now)
                except (TimeoutError, ConnectionClosed) as exc:
                    log.warning("charger %s EVSE %d: no answer to its profile (%s)", cp,
                                e.evse_id, type(exc).__name__)
                    ok = False
                if not ok and e.transaction != tx:
                    ok = None  # the EV left while its profile was on its way: nothing to set
                out.append(ok)
            return out

        for oks in await asyncio.gather(*(one(cp, items) for cp, items in per.items())):
            res.accepted += sum(ok is True for ok in oks)
            res.rejected += sum(ok is False for ok in oks)
            res.skipped += sum(ok is None for ok in oks)
        res.seconds = time.perf_counter() - t0
        return res
