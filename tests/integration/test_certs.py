"""Mutual TLS for per-station identity: the CA tooling, real handshakes, the ``certs`` CLI.

Real keys and certificates (``cryptography``), a real ``grpc.aio`` server on 127.0.0.1 port 0
serving the standard health service, and the real typer commands; nothing is mocked. Each
handshake case starts its own server on its own event loop, which takes a few milliseconds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import typer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from typer.testing import CliRunner

from evgrid import cli_certs
from evgrid.transport.certs import (
    CertError,
    identity_from_context,
    init_ca,
    issue,
    station_identity,
)
from evgrid.transport.tls import TlsError, channel_credentials, server_credentials


@dataclass(frozen=True)
class Pki:
    """A CA with a coordinator and a station certificate, and a rogue CA's station."""

    ca: Path
    coordinator: tuple[Path, Path]
    depot: tuple[Path, Path]
    rogue_depot: tuple[Path, Path]  # same name, signed by another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    good = tmp_path_factory.mktemp("ca")
    rogue = tmp_path_factory.mktemp("rogue")
    ca = init_ca(good)
    coord = issue(good, "coordinator", kind="coordinator")
    depot = issue(good, "depot", kind="station")
    init_ca(rogue, name="not ours")
    other = issue(rogue, "depot", kind="station")
    return Pki(ca.cert, (coord.cert, coord.key), (depot.cert, depot.key), (other.cert, other.key))


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _self_signed(cn: str, *, uris: Sequence[str] = (),
                 usage: x509.ObjectIdentifier | None = None) -> x509.Certificate:
    """A throwaway certificate with exactly the given names (``station_identity`` does not
    verify signatures, so it need not come from a CA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)))
    if uris:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(u) for u in uris]), critical=False)
    if usage is not None:
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return b.sign(key, hashes.SHA256())


# --- the library --------------------------------------------------------------------------


def test_init_and_issue_write_private_keys_and_the_right_names(tmp_path: Path) -> None:
    folder = tmp_path / "pki"  # created on demand
    ca = init_ca(folder, name="test CA", days=30)
    assert (ca.cert, ca.key) == (folder / "ca.pem", folder / "ca.key")
    assert _mode(ca.key) == 0o600
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(ca_cert.public_key(), ec.EllipticCurvePublicKey)

    st = issue(folder, "feeder-2", kind="station", out=tmp_path / "edge")
    assert (st.cert, st.key) == (tmp_path / "edge" / "feeder-2.pem", tmp_path / "edge" / "feeder-2.key")
    assert _mode(st.key) == 0o600
    cert = x509.load_pem_x509_certificate(st.cert.read_bytes())
    assert cert.issuer == ca_cert.subject
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "feeder-2"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "evgrid://station/feeder-2"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # Never outlives the CA.
    assert cert.not_valid_after_utc <= ca_cert.not_valid_after_utc
    ca_cert.verify_directly_issued_by(ca_cert)
    cert.verify_directly_issued_by(ca_cert)

    co = issue(folder, "coordinator", kind="coordinator")
    cert = x509.load_pem_x509_certificate(co.cert.read_bytes())
    assert _mode(co.key) == 0o600
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "evgrid-coordinator"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    hosted = issue(folder, "grid", kind="coordinator", hosts=["grid.example.org", "10.0.0.7"])
    san = x509.load_pem_x509_certificate(hosted.cert.read_bytes()).extensions \
        .get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["grid.example.org"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]

    # Existing files stay unless forced; forcing replaces them (a new key).
    for again in (lambda: init_ca(folder), lambda: issue(folder, "coordinator", kind="coordinator")):
        with pytest.raises(CertError, match="already exists") as info:
            again()
        assert "\n" not in str(info.value)
    old = ca.key.read_bytes()
    init_ca(folder, force=True)
    assert ca.key.read_bytes() != old and _mode(ca.key) == 0o600
    assert not list(folder.glob(".*.tmp"))  # no temporary files left behind


@pytest.mark.parametrize("bad", ["", "a/b", "a\\b", "..", ".hidden", "-rf", "dépôt", "a b",
                                 "x" * 65, "ca/../../etc"])
def test_issue_refuses_a_bad_station_id(tmp_path: Path, bad: str) -> None:
    init_ca(tmp_path)
    with pytest.raises(CertError, match="station id") as info:
        issue(tmp_path, bad, kind="station")
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.key", "ca.pem"]


def test_issue_names_the_file_when_the_ca_is_missing_or_broken(tmp_path: Path) -> None:
    with pytest.raises(CertError, match="no CA in") as info:
        issue(tmp_path, "depot", kind="station")
    assert str(tmp_path / "ca.pem") in str(info.value)
    init_ca(tmp_path)
    (tmp_path / "ca.key").write_text("not a key\n")
    with pytest.raises(CertError) as info:
        issue(tmp_path, "depot", kind="station")
    assert str(tmp_path / "ca.key") in str(info.value) and "\n" not in str(info.value)
    # A key of another CA is caught too: the certificates it signed would never verify.
    other = tmp_path / "other"
    init_ca(other)
    (tmp_path / "ca.key").write_bytes((other / "ca.key").read_bytes())
    with pytest.raises(CertError, match="does not belong"):
        issue(tmp_path, "depot", kind="station")
    with pytest.raises(CertError, match="host"):
        issue(other, "grid", kind="coordinator", hosts=["bad host!"])


def test_only_the_san_uri_names_a_station(pki: Pki) -> None:
    pem = pki.depot[0].read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    assert station_identity(pem) == station_identity(der) == station_identity(pem.decode()) \
        == "depot"
    assert station_identity(_self_signed("mall", uris=["evgrid://station/depot"])) == "depot"
    # No identity: a CN alone (any CA may issue one), a server-only certificate, the
    # coordinator's, the CA, ambiguous SAN URIs, an unusable id in the URI, garbage.
    assert station_identity(_self_signed("kiosk")) is None
    assert station_identity(_self_signed("kiosk", usage=ExtendedKeyUsageOID.CLIENT_AUTH)) is None
    assert station_identity(_self_signed("kiosk", usage=ExtendedKeyUsageOID.SERVER_AUTH)) is None
    assert station_identity(pki.coordinator[0].read_bytes()) is None
    assert station_identity(pki.ca.read_bytes()) is None
    assert station_identity(_self_signed(
        "x", uris=["evgrid://station/a", "evgrid://station/b"])) is None
    assert station_identity(_self_signed("depot", uris=["evgrid://station/a/b"])) is None
    assert station_identity(b"hello") is None


def test_tls_credentials_refuse_half_or_mismatched_client_pairs(pki: Pki) -> None:
    cert = pki.depot[0]
    with pytest.raises(TlsError, match="both"):
        channel_credentials(pki.ca, cert=cert)
    with pytest.raises(TlsError, match="does not belong") as info:
        channel_credentials(pki.ca, cert=cert, key=pki.rogue_depot[1])
    assert str(cert) in str(info.value) and str(pki.rogue_depot[1]) in str(info.value)
    with pytest.raises(TlsError, match="client CA certificate"):
        server_credentials(*pki.coordinator, client_ca=cert.parent / "missing.pem")


class _WhoAmI(health_pb2_grpc.HealthServicer):
    """Health checks that record who the server believes is calling."""

    def __init__(self) -> None:
        self.identities: list[str | None] = []
        self.auth: dict[str, list[bytes]] = {}

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        self.auth = dict(context.auth_context())
        self.identities.append(identity_from_context(context))
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


def _check(server_creds: grpc.ServerCredentials | None,
           channel_creds: grpc.ChannelCredentials | None,
           ) -> tuple[grpc.StatusCode, _WhoAmI]:
    """One health check over a fresh server and channel; the call's status and the servicer."""
    servicer = _WhoAmI()

    async def run() -> grpc.StatusCode:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        if server_creds is None:
            port = server.add_insecure_port("127.0.0.1:0")
        else:
            port = server.add_secure_port("127.0.0.1:0", server_creds)
        await server.start()
        try:
            target = f"127.0.0.1:{port}"
            channel = (grpc.aio.insecure_channel(target) if channel_creds is None
                       else grpc.aio.secure_channel(target, channel_creds))
            async with channel:
                try:
                    await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=5)
                except grpc.aio.AioRpcError as exc:
                    return exc.code()
                return grpc.StatusCode.OK
        finally:
            await server.stop(None)

    return asyncio.run(run()), servicer


@pytest.mark.grpc
def test_mutual_tls_names_the_station_and_refuses_everyone_else(pki: Pki) -> None:
    mtls = server_credentials(*pki.coordinator, client_ca=pki.ca)

    code, seen = _check(mtls, channel_credentials(pki.ca, cert=pki.depot[0], key=pki.depot[1]))
    assert code == grpc.StatusCode.OK and seen.identities == ["depot"]
    # What gRPC exposes (the identity comes from x509_pem_cert; the others agree).
    assert seen.auth["transport_security_type"] == [b"ssl"]
    assert seen.auth["x509_common_name"] == [b"depot"]
    assert seen.auth["x509_subject_alternative_name"] == [b"evgrid://station/depot"]
    assert "x509_pem_cert" in seen.auth

    refused = {
        "no client certificate": channel_credentials(pki.ca),
        "a certificate from another CA": channel_credentials(
            pki.ca, cert=pki.rogue_depot[0], key=pki.rogue_depot[1]),
        # BoringSSL checks the extended key usage: the coordinator's certificate is no client.
        "a server certificate": channel_credentials(
            pki.ca, cert=pki.coordinator[0], key=pki.coordinator[1]),
    }
    for why, creds in refused.items():
        code, seen = _check(mtls, creds)
        assert code == grpc.StatusCode.UNAVAILABLE, why
        assert seen.identities == [], why  # refused in the handshake: no call arrived
    code, _ = _check(mtls, None)  # plaintext
    assert code == grpc.StatusCode.UNAVAILABLE

    # TLS without client authentication (and plaintext) still works and names nobody.
    code, seen = _check(server_credentials(*pki.coordinator), channel_credentials(pki.ca))
    assert code == grpc.StatusCode.OK and seen.identities == [None]
    code, seen = _check(None, None)
    assert code == grpc.StatusCode.OK and seen.identities == [None]


@dataclass
class _AuthOnly:
    """The auth context of a gRPC build that does not expose ``x509_pem_cert``: the
    identity then comes from the parsed properties (a stand-in object, not a mock)."""

    auth: dict[str, list[bytes]]

    def auth_context(self) -> dict[str, list[bytes]]:
        return self.auth


def test_identity_from_context_without_the_pem_certificate() -> None:
    ssl = {"transport_security_type": [b"ssl"]}
    assert identity_from_context(_AuthOnly({**ssl, "x509_common_name": [b"mall"],
        "x509_subject_alternative_name": [b"evgrid://station/depot"]})) == "depot"
    # A CN alone names nobody: another CA's certificate may carry any CN.
    assert identity_from_context(_AuthOnly({**ssl, "x509_common_name": [b"mall"]})) is None
    assert identity_from_context(_AuthOnly(
        {**ssl, "x509_common_name": [b"evgrid-coordinator"]})) is None
    assert identity_from_context(_AuthOnly({"x509_common_name": [b"mall"]})) is None
    assert identity_from_context(_AuthOnly({})) is None


# --- the CLI -------------------------------------------------------------------------------


def _app() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(cli_certs.app, name="certs")
    return app


def test_certs_commands(tmp_path: Path) -> None:
    run = CliRunner().invoke
    app, d = _app(), str(tmp_path / "pki")

    def failed(args: list[str], says: str) -> None:
        res = run(app, args)
        text = " ".join(res.output.split())  # rich wraps long paths; the message is one line
        assert res.exit_code == 2 and says in text, (args, res.output)
        assert text.count("error:") == 1 and "Traceback" not in text, res.output

    failed(["certs", "issue", "depot", "--dir", d], "no CA in")
    res = run(app, ["certs", "init", "--dir", d])
    assert res.exit_code == 0, res.output
    assert _mode(tmp_path / "pki" / "ca.key") == 0o600
    failed(["certs", "init", "--dir", d], "already exists (use --force")
    assert run(app, ["certs", "init", "--dir", d, "--force"]).exit_code == 0

    res = run(app, ["certs", "issue", "depot", "--dir", d, "--days", "90"])
    assert res.exit_code == 0, res.output
    assert station_identity((tmp_path / "pki" / "depot.pem").read_bytes()) == "depot"
    assert _mode(tmp_path / "pki" / "depot.key") == 0o600
    failed(["certs", "issue", "depot", "--dir", d], "already exists")
    assert run(app, ["certs", "issue", "depot", "--dir", d, "--force"]).exit_code == 0
    failed(["certs", "issue", "bad/id", "--dir", d], "path separator")
    failed(["certs", "issue", "dépôt", "--dir", d], "may use only letters")
    failed(["certs", "issue", "--dir", d], "give the station id")
    failed(["certs", "issue", "depot2", "--dir", d, "--host", "x"], "--coordinator")

    res = run(app, ["certs", "issue", "--coordinator", "--dir", d, "--host", "grid.local",
                    "--host", "192.0.2.1"])
    assert res.exit_code == 0, res.output
    san = x509.load_pem_x509_certificate((tmp_path / "pki" / "coordinator.pem").read_bytes()) \
        .extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["grid.local"]
