"""Seed 000's three layers (000_f74a305f822cf870.txt §3.2–3.6): the spatial layout of the SoC
zones (``layout``), the scale-adaptive allocation of arriving EVs to chargers (``allocation``),
and the performance feedback between the layers (``feedback``)."""
