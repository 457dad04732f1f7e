from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgentKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_KIND_UNSPECIFIED: _ClassVar[AgentKind]
    AGENT_KIND_STATION: _ClassVar[AgentKind]
    AGENT_KIND_COHORT: _ClassVar[AgentKind]
AGENT_KIND_UNSPECIFIED: AgentKind
AGENT_KIND_STATION: AgentKind
AGENT_KIND_COHORT: AgentKind

class RegisterRequest(_message.Message):
    __slots__ = ("agent_id", "kind", "grid_zone", "max_power_kw", "slots", "chargers")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    GRID_ZONE_FIELD_NUMBER: _ClassVar[int]
    MAX_POWER_KW_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    CHARGERS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    kind: AgentKind
    grid_zone: str
    max_power_kw: float
    slots: _containers.RepeatedScalarFieldContainer[str]
    chargers: int
    def __init__(self, agent_id: _Optional[str] = ..., kind: _Optional[_Union[AgentKind, str]] = ..., grid_zone: _Optional[str] = ..., max_power_kw: _Optional[float] = ..., slots: _Optional[_Iterable[str]] = ..., chargers: _Optional[int] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("agent_id", "grid_zones", "dt_h", "grid_zone", "max_power_kw", "chargers")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    GRID_ZONES_FIELD_NUMBER: _ClassVar[int]
    DT_H_FIELD_NUMBER: _ClassVar[int]
    GRID_ZONE_FIELD_NUMBER: _ClassVar[int]
    MAX_POWER_KW_FIELD_NUMBER: _ClassVar[int]
    CHARGERS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    grid_zones: _containers.RepeatedScalarFieldContainer[str]
    dt_h: float
    grid_zone: str
    max_power_kw: float
    chargers: int
    def __init__(self, agent_id: _Optional[str] = ..., grid_zones: _Optional[_Iterable[str]] = ..., dt_h: _Optional[float] = ..., grid_zone: _Optional[str] = ..., max_power_kw: _Optional[float] = ..., chargers: _Optional[int] = ...) -> None: ...

class Proposal(_message.Message):
    __slots__ = ("round", "agent_id", "horizon_start", "plan_kw", "participants", "objective", "want_now_kw", "start_kw", "dual_objective")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HORIZON_START_FIELD_NUMBER: _ClassVar[int]
    PLAN_KW_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    WANT_NOW_KW_FIELD_NUMBER: _ClassVar[int]
    START_KW_FIELD_NUMBER: _ClassVar[int]
    DUAL_OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    round: int
    agent_id: str
    horizon_start: int
    plan_kw: _containers.RepeatedScalarFieldContainer[float]
    participants: _containers.RepeatedScalarFieldContainer[int]
    objective: float
    want_now_kw: float
    start_kw: _containers.RepeatedScalarFieldContainer[float]
    dual_objective: float
    def __init__(self, round: _Optional[int] = ..., agent_id: _Optional[str] = ..., horizon_start: _Optional[int] = ..., plan_kw: _Optional[_Iterable[float]] = ..., participants: _Optional[_Iterable[int]] = ..., objective: _Optional[float] = ..., want_now_kw: _Optional[float] = ..., start_kw: _Optional[_Iterable[float]] = ..., dual_objective: _Optional[float] = ...) -> None: ...

class ProposalBatch(_message.Message):
    __slots__ = ("round", "horizon_start", "horizon_steps", "agent_ids", "plan_kw_f64", "participants_i32", "objective", "want_now_kw", "start_kw_f64", "dual_objective")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    HORIZON_START_FIELD_NUMBER: _ClassVar[int]
    HORIZON_STEPS_FIELD_NUMBER: _ClassVar[int]
    AGENT_IDS_FIELD_NUMBER: _ClassVar[int]
    PLAN_KW_F64_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_I32_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    WANT_NOW_KW_FIELD_NUMBER: _ClassVar[int]
    START_KW_F64_FIELD_NUMBER: _ClassVar[int]
    DUAL_OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    round: int
    horizon_start: int
    horizon_steps: int
    agent_ids: _containers.RepeatedScalarFieldContainer[str]
    plan_kw_f64: bytes
    participants_i32: bytes
    objective: _containers.RepeatedScalarFieldContainer[float]
    want_now_kw: _containers.RepeatedScalarFieldContainer[float]
    start_kw_f64: bytes
    dual_objective: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, round: _Optional[int] = ..., horizon_start: _Optional[int] = ..., horizon_steps: _Optional[int] = ..., agent_ids: _Optional[_Iterable[str]] = ..., plan_kw_f64: _Optional[bytes] = ..., participants_i32: _Optional[bytes] = ..., objective: _Optional[_Iterable[float]] = ..., want_now_kw: _Optional[_Iterable[float]] = ..., start_kw_f64: _Optional[bytes] = ..., dual_objective: _Optional[_Iterable[float]] = ...) -> None: ...

class ConsensusTarget(_message.Message):
    __slots__ = ("round", "agent_id", "horizon_start", "z_kw", "u", "rho", "price_signal", "done", "alpha", "certify")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HORIZON_START_FIELD_NUMBER: _ClassVar[int]
    Z_KW_FIELD_NUMBER: _ClassVar[int]
    U_FIELD_NUMBER: _ClassVar[int]
    RHO_FIELD_NUMBER: _ClassVar[int]
    PRICE_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    CERTIFY_FIELD_NUMBER: _ClassVar[int]
    round: int
    agent_id: str
    horizon_start: int
    z_kw: _containers.RepeatedScalarFieldContainer[float]
    u: _containers.RepeatedScalarFieldContainer[float]
    rho: float
    price_signal: _containers.RepeatedScalarFieldContainer[float]
    done: bool
    alpha: float
    certify: bool
    def __init__(self, round: _Optional[int] = ..., agent_id: _Optional[str] = ..., horizon_start: _Optional[int] = ..., z_kw: _Optional[_Iterable[float]] = ..., u: _Optional[_Iterable[float]] = ..., rho: _Optional[float] = ..., price_signal: _Optional[_Iterable[float]] = ..., done: _Optional[bool] = ..., alpha: _Optional[float] = ..., certify: _Optional[bool] = ...) -> None: ...

class TargetBatch(_message.Message):
    __slots__ = ("round", "horizon_start", "horizon_steps", "agent_ids", "agent_zone", "zone_u_f64", "zone_shift_f64", "rho", "done", "z_kw_f64", "alpha", "participants_known", "certify")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    HORIZON_START_FIELD_NUMBER: _ClassVar[int]
    HORIZON_STEPS_FIELD_NUMBER: _ClassVar[int]
    AGENT_IDS_FIELD_NUMBER: _ClassVar[int]
    AGENT_ZONE_FIELD_NUMBER: _ClassVar[int]
    ZONE_U_F64_FIELD_NUMBER: _ClassVar[int]
    ZONE_SHIFT_F64_FIELD_NUMBER: _ClassVar[int]
    RHO_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    Z_KW_F64_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    PARTICIPANTS_KNOWN_FIELD_NUMBER: _ClassVar[int]
    CERTIFY_FIELD_NUMBER: _ClassVar[int]
    round: int
    horizon_start: int
    horizon_steps: int
    agent_ids: _containers.RepeatedScalarFieldContainer[str]
    agent_zone: _containers.RepeatedScalarFieldContainer[int]
    zone_u_f64: bytes
    zone_shift_f64: bytes
    rho: float
    done: bool
    z_kw_f64: bytes
    alpha: float
    participants_known: bool
    certify: bool
    def __init__(self, round: _Optional[int] = ..., horizon_start: _Optional[int] = ..., horizon_steps: _Optional[int] = ..., agent_ids: _Optional[_Iterable[str]] = ..., agent_zone: _Optional[_Iterable[int]] = ..., zone_u_f64: _Optional[bytes] = ..., zone_shift_f64: _Optional[bytes] = ..., rho: _Optional[float] = ..., done: _Optional[bool] = ..., z_kw_f64: _Optional[bytes] = ..., alpha: _Optional[float] = ..., participants_known: _Optional[bool] = ..., certify: _Optional[bool] = ...) -> None: ...

class StationState(_message.Message):
    __slots__ = ("agent_id", "horizon_start", "dt_h", "charger", "arrival_step", "departure_step", "horizon_steps", "upper_kw", "eta", "owed_kwh", "price_per_kwh", "carbon_kg_per_kwh", "context")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HORIZON_START_FIELD_NUMBER: _ClassVar[int]
    DT_H_FIELD_NUMBER: _ClassVar[int]
    CHARGER_FIELD_NUMBER: _ClassVar[int]
    ARRIVAL_STEP_FIELD_NUMBER: _ClassVar[int]
    DEPARTURE_STEP_FIELD_NUMBER: _ClassVar[int]
    HORIZON_STEPS_FIELD_NUMBER: _ClassVar[int]
    UPPER_KW_FIELD_NUMBER: _ClassVar[int]
    ETA_FIELD_NUMBER: _ClassVar[int]
    OWED_KWH_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_KWH_FIELD_NUMBER: _ClassVar[int]
    CARBON_KG_PER_KWH_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    horizon_start: int
    dt_h: float
    charger: _containers.RepeatedScalarFieldContainer[int]
    arrival_step: _containers.RepeatedScalarFieldContainer[int]
    departure_step: _containers.RepeatedScalarFieldContainer[int]
    horizon_steps: int
    upper_kw: _containers.RepeatedScalarFieldContainer[float]
    eta: _containers.RepeatedScalarFieldContainer[float]
    owed_kwh: _containers.RepeatedScalarFieldContainer[float]
    price_per_kwh: _containers.RepeatedScalarFieldContainer[float]
    carbon_kg_per_kwh: _containers.RepeatedScalarFieldContainer[float]
    context: StationContext
    def __init__(self, agent_id: _Optional[str] = ..., horizon_start: _Optional[int] = ..., dt_h: _Optional[float] = ..., charger: _Optional[_Iterable[int]] = ..., arrival_step: _Optional[_Iterable[int]] = ..., departure_step: _Optional[_Iterable[int]] = ..., horizon_steps: _Optional[int] = ..., upper_kw: _Optional[_Iterable[float]] = ..., eta: _Optional[_Iterable[float]] = ..., owed_kwh: _Optional[_Iterable[float]] = ..., price_per_kwh: _Optional[_Iterable[float]] = ..., carbon_kg_per_kwh: _Optional[_Iterable[float]] = ..., context: _Optional[_Union[StationContext, _Mapping]] = ...) -> None: ...

class StationContext(_message.Message):
    __slots__ = ("chargers", "rated_kw", "price_scale", "demand_share", "zone_peak_kw", "zone_limit_kw", "city_share", "day_left")
    CHARGERS_FIELD_NUMBER: _ClassVar[int]
    RATED_KW_FIELD_NUMBER: _ClassVar[int]
    PRICE_SCALE_FIELD_NUMBER: _ClassVar[int]
    DEMAND_SHARE_FIELD_NUMBER: _ClassVar[int]
    ZONE_PEAK_KW_FIELD_NUMBER: _ClassVar[int]
    ZONE_LIMIT_KW_FIELD_NUMBER: _ClassVar[int]
    CITY_SHARE_FIELD_NUMBER: _ClassVar[int]
    DAY_LEFT_FIELD_NUMBER: _ClassVar[int]
    chargers: int
    rated_kw: float
    price_scale: float
    demand_share: float
    zone_peak_kw: float
    zone_limit_kw: float
    city_share: float
    day_left: float
    def __init__(self, chargers: _Optional[int] = ..., rated_kw: _Optional[float] = ..., price_scale: _Optional[float] = ..., demand_share: _Optional[float] = ..., zone_peak_kw: _Optional[float] = ..., zone_limit_kw: _Optional[float] = ..., city_share: _Optional[float] = ..., day_left: _Optional[float] = ...) -> None: ...

class PeriodStart(_message.Message):
    __slots__ = ("horizon_start", "horizon_steps", "state", "target")
    HORIZON_START_FIELD_NUMBER: _ClassVar[int]
    HORIZON_STEPS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    horizon_start: int
    horizon_steps: int
    state: StationState
    target: ConsensusTarget
    def __init__(self, horizon_start: _Optional[int] = ..., horizon_steps: _Optional[int] = ..., state: _Optional[_Union[StationState, _Mapping]] = ..., target: _Optional[_Union[ConsensusTarget, _Mapping]] = ...) -> None: ...

class SetpointSchedule(_message.Message):
    __slots__ = ("agent_id", "step", "charger", "power_kw", "agreed_kw", "envelope_kw")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    CHARGER_FIELD_NUMBER: _ClassVar[int]
    POWER_KW_FIELD_NUMBER: _ClassVar[int]
    AGREED_KW_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_KW_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    step: int
    charger: _containers.RepeatedScalarFieldContainer[int]
    power_kw: _containers.RepeatedScalarFieldContainer[float]
    agreed_kw: float
    envelope_kw: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, agent_id: _Optional[str] = ..., step: _Optional[int] = ..., charger: _Optional[_Iterable[int]] = ..., power_kw: _Optional[_Iterable[float]] = ..., agreed_kw: _Optional[float] = ..., envelope_kw: _Optional[_Iterable[float]] = ...) -> None: ...

class Telemetry(_message.Message):
    __slots__ = ("agent_id", "step", "power_kw", "connected_evs", "energy_owed_kwh", "fallback")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    POWER_KW_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_EVS_FIELD_NUMBER: _ClassVar[int]
    ENERGY_OWED_KWH_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    step: int
    power_kw: float
    connected_evs: int
    energy_owed_kwh: float
    fallback: bool
    def __init__(self, agent_id: _Optional[str] = ..., step: _Optional[int] = ..., power_kw: _Optional[float] = ..., connected_evs: _Optional[int] = ..., energy_owed_kwh: _Optional[float] = ..., fallback: _Optional[bool] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class ExchangeRequest(_message.Message):
    __slots__ = ("hello", "proposal", "telemetry", "executed", "claim")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    EXECUTED_FIELD_NUMBER: _ClassVar[int]
    CLAIM_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    proposal: Proposal
    telemetry: Telemetry
    executed: SetpointSchedule
    claim: StationState
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., proposal: _Optional[_Union[Proposal, _Mapping]] = ..., telemetry: _Optional[_Union[Telemetry, _Mapping]] = ..., executed: _Optional[_Union[SetpointSchedule, _Mapping]] = ..., claim: _Optional[_Union[StationState, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("agent_id", "step")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    step: int
    def __init__(self, agent_id: _Optional[str] = ..., step: _Optional[int] = ...) -> None: ...

class Farewell(_message.Message):
    __slots__ = ("reason", "last_step")
    REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_STEP_FIELD_NUMBER: _ClassVar[int]
    reason: str
    last_step: int
    def __init__(self, reason: _Optional[str] = ..., last_step: _Optional[int] = ...) -> None: ...

class ExchangeResponse(_message.Message):
    __slots__ = ("period", "target", "welcome", "farewell")
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    FAREWELL_FIELD_NUMBER: _ClassVar[int]
    period: PeriodStart
    target: ConsensusTarget
    welcome: Welcome
    farewell: Farewell
    def __init__(self, period: _Optional[_Union[PeriodStart, _Mapping]] = ..., target: _Optional[_Union[ConsensusTarget, _Mapping]] = ..., welcome: _Optional[_Union[Welcome, _Mapping]] = ..., farewell: _Optional[_Union[Farewell, _Mapping]] = ...) -> None: ...
