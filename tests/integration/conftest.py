"""Fixtures of the integration tests: the gRPC harness's servers, edge loop and small city."""

from tests.grpc_harness import edges, serve, small

__all__ = ["edges", "serve", "small"]
