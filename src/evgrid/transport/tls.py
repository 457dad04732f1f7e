"""TLS for the gRPC link: credentials from PEM files, with errors that name the file.

The bearer token authenticates a station; TLS keeps it (and the schedules) off the wire in
clear. Loopback runs without it; anything else should not (``evgrid coordinator --host
0.0.0.0`` warns when it is off).
"""

from __future__ import annotations

from pathlib import Path

import grpc


class TlsError(ValueError):
    """A certificate or key that cannot be used; the message names the file and why."""


def _read_pem(path: Path, what: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise TlsError(f"the {what} {path} is not PEM (no '-----BEGIN' line)")
    return data


def server_credentials(cert: Path, key: Path) -> grpc.ServerCredentials:
    """The coordinator's TLS identity: its certificate (chain) and private key, PEM."""
    return grpc.ssl_server_credentials(
        [(_read_pem(key, "TLS private key"), _read_pem(cert, "TLS certificate"))])


def channel_credentials(ca: Path | None = None) -> grpc.ChannelCredentials:
    """What an edge station trusts: the CA (or self-signed certificate) in ``ca``, PEM, or
    the system's trust store when ``ca`` is None."""
    return grpc.ssl_channel_credentials(
        root_certificates=None if ca is None else _read_pem(ca, "TLS CA certificate"))
