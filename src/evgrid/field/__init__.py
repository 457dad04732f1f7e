"""The field: a station that owns its chargers over OCPP 2.0.1 (``csms``), its site as they
report it (``site``), and a charge-point simulator that speaks the same protocol
(``chargepoint_sim``)."""
