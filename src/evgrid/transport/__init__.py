"""The only package that imports ray or grpc: the codec, Ray actor wrappers, gRPC server/client.

The protobufs in ``evgrid.transport.pb`` are generated from ``protos/evgrid/v1`` by
``make proto``.
"""
