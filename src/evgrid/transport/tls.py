"""TLS for the gRPC link: credentials from PEM files, with errors that name the file.

The bearer token authenticates a station; TLS keeps it (and the schedules) off the wire in
clear. Loopback runs without it; anything else should not (``evgrid coordinator --host
0.0.0.0`` warns when it is off).

Mutual TLS goes one step further: with ``client_ca`` the coordinator demands a certificate
from every station, signed by that CA, so a caller is known by name
(``evgrid.transport.certs.identity_from_context``), not only by holding the shared token.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization


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


def _check_pair(cert: Path, cert_pem: bytes, key: Path, key_pem: bytes) -> None:
    """Fail now, naming both files, when the key does not belong to the certificate: gRPC
    would only find out at the first handshake, as an UNAVAILABLE with no reason given."""
    try:
        public = x509.load_pem_x509_certificate(cert_pem).public_key()
    except ValueError:
        raise TlsError(f"the TLS certificate {cert} is not a PEM certificate") from None
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise TlsError(f"the TLS private key {key} is encrypted (gRPC needs it unencrypted)"
                       ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsError(f"the TLS private key {key} is not a PEM private key") from None
    if private.public_key() != public:
        raise TlsError(f"the TLS private key {key} does not belong to the certificate {cert}")


def _read_pair(cert: Path, key: Path) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM), checked to belong together, in gRPC's order."""
    key_pem = _read_pem(key, "TLS private key")
    cert_pem = _read_pem(cert, "TLS certificate")
    _check_pair(cert, cert_pem, key, key_pem)
    return key_pem, cert_pem


def server_credentials(
    cert: Path, key: Path, *, client_ca: Path | None = None
) -> grpc.ServerCredentials:
    """The coordinator's TLS identity: its certificate (chain) and private key, PEM.

    With ``client_ca`` (PEM, the CA that issues station certificates) every client must
    present a certificate that CA signed; a client without one, or with one from another
    CA, is refused in the handshake, before any RPC or token check runs."""
    pair = _read_pair(cert, key)
    if client_ca is None:
        return grpc.ssl_server_credentials([pair])
    return grpc.ssl_server_credentials(
        [pair],
        root_certificates=_read_pem(client_ca, "client CA certificate"),
        require_client_auth=True,
    )


def channel_credentials(
    ca: Path | None = None, *, cert: Path | None = None, key: Path | None = None
) -> grpc.ChannelCredentials:
    """What an edge station trusts: the CA (or self-signed certificate) in ``ca``, PEM, or
    the system's trust store when ``ca`` is None. With ``cert`` and ``key`` (both or
    neither) the station also presents its own certificate, for a coordinator that
    requires one (mutual TLS)."""
    if (cert is None) != (key is None):
        raise TlsError("a client certificate needs both its certificate and its key file")
    root = None if ca is None else _read_pem(ca, "TLS CA certificate")
    if cert is None or key is None:
        return grpc.ssl_channel_credentials(root_certificates=root)
    key_pem, cert_pem = _read_pair(cert, key)
    return grpc.ssl_channel_credentials(
        root_certificates=root, private_key=key_pem, certificate_chain=cert_pem)
