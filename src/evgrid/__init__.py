"""evgrid: city-wide coordination of electric-vehicle charging.

Sign convention (the one place it is written): positive power charges the vehicle, negative
power is V2G discharge. Units are in names: ``_kw``, ``_kwh``, ``_h``, ``_min``, ``_km``.

Heavy libraries (ray, torch, cvxpy, grpc) are imported lazily, only in the modules that use
them, so ``import evgrid`` and the simulator start fast.
"""

__version__ = "0.1.0"
