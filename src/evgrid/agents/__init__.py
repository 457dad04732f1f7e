"""Agents and their policies: baselines now; StationAgent / CohortAgent join with ADMM.

Plain Python + numpy (+ cvxpy): nothing here imports ray or grpc.
"""
