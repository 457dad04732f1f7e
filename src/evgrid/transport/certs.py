"""Per-station identity by mutual TLS: a small CA, its certificates, and who a peer is.

A shared bearer token lets anyone who holds it claim to be any station. With mutual TLS each
station presents a certificate that names it, signed by a CA the coordinator trusts, so the
coordinator learns *which* station is calling from the handshake itself. This module makes
that CA and those certificates (``evgrid certs init`` / ``evgrid certs issue``) and reads the
identity back: from a certificate (``station_identity``) or from a gRPC call's auth context
(``identity_from_context``).

Keys are ECDSA P-256: BoringSSL (inside grpcio) accepts them for server and client
authentication under TLS 1.2 and 1.3 alike, which Ed25519 certificates do not reliably get.
A station's identity lives in a SAN URI ``evgrid://station/<id>`` (a URI cannot be mistaken
for a host name) and, for tools that only show the subject, in the CN as well.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
COORDINATOR_CN = "evgrid-coordinator"
STATION_URI_PREFIX = "evgrid://station/"
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")

# Conservative on purpose: the id becomes a file name and part of a URI. It may not start
# with "." (hidden files, "..") or "-" (looks like a command-line option).
_STATION_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
# Certificates are valid from a little in the past, so a station whose clock lags the
# CA's by a few minutes does not reject a certificate issued "in the future".
_BACKDATE = dt.timedelta(minutes=5)


class CertError(ValueError):
    """A user error with certificates (missing CA, unreadable key, bad subject): one line that
    names the file or value at fault, so the CLI can print it as is."""


@dataclass(frozen=True)
class CaPaths:
    """Where ``init_ca`` wrote the CA: its certificate (give it to every peer) and its key
    (keep it off the network; it can mint any station)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class CertPaths:
    """Where ``issue`` wrote one certificate and its private key."""

    cert: Path
    key: Path


def check_station_id(station_id: str) -> str:
    """``station_id`` if it is safe as a file name and URI path segment, else ``CertError``.

    Ids are checked where certificates are made (not only when read), so a bad one fails
    at ``evgrid certs issue`` instead of as an anonymous peer later."""
    if not station_id:
        raise CertError("the station id is empty")
    if "/" in station_id or "\\" in station_id or os.sep in station_id:
        raise CertError(f"the station id {station_id!r} contains a path separator")
    if len(station_id) > 64:
        raise CertError(f"the station id {station_id[:20]!r}... is longer than 64 characters")
    if not _STATION_ID.fullmatch(station_id):
        raise CertError(
            f"the station id {station_id!r} may use only letters, digits, '.', '_' and '-' "
            "(and may not start with '.' or '-')")
    return station_id


# --- writing files --------------------------------------------------------------------


def _refuse_existing(paths: Sequence[Path], force: bool) -> None:
    if force:
        return
    for p in paths:
        if p.exists():
            raise CertError(f"{p} already exists (use --force to overwrite it)")


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write via a temporary file in the same folder: a key is never readable by others,
    not even for a moment (mkstemp creates it 0600), and a crash leaves no half file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CertError(f"cannot create the folder {folder}: {exc.strerror or exc}") from None
    if not folder.is_dir():
        raise CertError(f"{folder} is not a folder")


def _write_pair(cert_path: Path, key_path: Path, cert: x509.Certificate,
                key: ec.EllipticCurvePrivateKey) -> None:
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    try:
        _write_atomic(key_path, key_pem, 0o600)
        _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    except OSError as exc:
        raise CertError(f"cannot write {exc.filename or cert_path.parent}: "
                        f"{exc.strerror or exc}") from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _check_days(days: int) -> None:
    if days < 1:
        raise CertError(f"the validity must be at least 1 day, not {days}")


# --- the CA ---------------------------------------------------------------------------


def init_ca(folder: Path, *, name: str = "evgrid dev CA", days: int = 3650,
            force: bool = False) -> CaPaths:
    """Create a CA in ``folder``: ``ca.pem`` (certificate) and ``ca.key`` (private key, 0600).

    Refuses to overwrite an existing CA unless ``force``: a new CA silently invalidates every
    certificate already handed to stations."""
    folder = Path(folder)
    _check_days(days)
    if not name.strip():
        raise CertError("the CA name is empty")
    paths = CaPaths(cert=folder / CA_CERT, key=folder / CA_KEY)
    _refuse_existing([paths.cert, paths.key], force)
    _make_folder(folder)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        # path_length=0: this CA signs end-entity certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                          decipher_only=False),
            critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_pair(paths.cert, paths.key, cert, key)
    return paths


def _load_ca(folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = folder / CA_CERT, folder / CA_KEY
    for p in (cert_path, key_path):
        if not p.exists():
            raise CertError(f"no CA in {folder}: {p} is missing (run `evgrid certs init` first)")
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except OSError as exc:
        raise CertError(f"cannot read the CA certificate {cert_path}: "
                        f"{exc.strerror or exc}") from None
    except ValueError:
        raise CertError(f"the CA certificate {cert_path} is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except OSError as exc:
        raise CertError(f"cannot read the CA key {key_path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # TypeError: the key is encrypted (a password is needed).
        raise CertError(f"the CA key {key_path} is not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"the CA key {key_path} is not an ECDSA key")
    if key.public_key() != cert.public_key():
        raise CertError(f"the CA key {key_path} does not belong to the certificate {cert_path}")
    return cert, key


# --- end-entity certificates ----------------------------------------------------------


def _host_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for h in hosts:
        h = h.strip()
        if not h:
            raise CertError("a host name is empty")
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h.strip("[]"))))
            continue
        except ValueError:
            pass
        if not re.fullmatch(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", h):
            raise CertError(f"the host {h!r} is neither an IP address nor an ASCII DNS name")
        names.append(x509.DNSName(h))
    return names


def issue(folder: Path, subject: str, *, kind: Literal["station", "coordinator"],
          hosts: Sequence[str] = (), days: int = 825, out: Path | None = None,
          force: bool = False) -> CertPaths:
    """Sign a certificate with the CA in ``folder``; write ``<subject>.pem`` and
    ``<subject>.key`` (0600) to ``out`` (default: ``folder``).

    A station certificate names the station twice, CN = ``subject`` and SAN URI
    ``evgrid://station/<subject>``, and is good for client authentication only, so it
    cannot pose as the coordinator. A coordinator certificate (CN ``evgrid-coordinator``,
    ``subject`` only names the files) carries the ``hosts`` stations dial (default
    localhost, 127.0.0.1 and ::1) and is good for server authentication only. The validity
    ends no later than the CA's: a certificate that outlives its issuer is useless.
    Existing files are kept unless ``force``."""
    folder = Path(folder)
    out = folder if out is None else Path(out)
    check_station_id(subject)  # also names the files, so the same rules apply
    if kind not in ("station", "coordinator"):
        raise CertError(f"the certificate kind must be 'station' or 'coordinator', not {kind!r}")
    if kind == "station" and hosts:
        raise CertError("hosts are for the coordinator's certificate, not a station's")
    _check_days(days)
    ca_cert, ca_key = _load_ca(folder)
    paths = CertPaths(cert=out / f"{subject}.pem", key=out / f"{subject}.key")
    if paths.cert.resolve() == (folder / CA_CERT).resolve() or \
            paths.key.resolve() == (folder / CA_KEY).resolve():
        raise CertError(f"the subject {subject!r} would overwrite the CA in {folder}")
    _refuse_existing([paths.cert, paths.key], force)

    if kind == "station":
        cn = subject
        san: list[x509.GeneralName] = [
            x509.UniformResourceIdentifier(STATION_URI_PREFIX + subject)]
        usage = ExtendedKeyUsageOID.CLIENT_AUTH
    else:
        cn = COORDINATOR_CN
        san = _host_names(list(hosts) or DEFAULT_HOSTS)
        usage = ExtendedKeyUsageOID.SERVER_AUTH

    _make_folder(out)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    if not_after <= now:
        raise CertError(f"the CA certificate {folder / CA_CERT} has expired")
    ca_ski = _subject_key_id(ca_cert)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=False, crl_sign=False, encipher_only=False,
                          decipher_only=False),
            critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_pair(paths.cert, paths.key, cert, key)
    return paths


def _subject_key_id(cert: x509.Certificate) -> x509.SubjectKeyIdentifier:
    """The CA's key id as its certificate states it (computed when absent), so the issued
    certificate's authority key id matches what verifiers look up."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key())


# --- reading an identity back ---------------------------------------------------------


def _id_from_uri(uri: str) -> str | None:
    if not uri.startswith(STATION_URI_PREFIX):
        return None
    ident = uri[len(STATION_URI_PREFIX):]
    return ident if _STATION_ID.fullmatch(ident) else None


def _valid_id(value: str) -> str | None:
    return value if _STATION_ID.fullmatch(value) else None


def station_identity(cert: bytes | str | x509.Certificate) -> str | None:
    """The station a certificate (PEM or DER, or parsed) names, or None if it names none.

    Only the SAN URI ``evgrid://station/<id>`` names a station (two different ones are
    ambiguous and name nobody); a CN never does: a CA that is not evgrid's alone may issue
    certificates whose CN happens to equal a station id. This does not verify the signature:
    use it on a peer certificate that TLS already verified."""
    if isinstance(cert, x509.Certificate):
        parsed = cert
    else:
        data = cert.encode() if isinstance(cert, str) else bytes(cert)
        try:
            parsed = (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                      else x509.load_der_x509_certificate(data))
        except ValueError:
            return None
    try:
        san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    ids = {i for i in map(_id_from_uri, uris) if i is not None}
    return ids.pop() if len(ids) == 1 else None


def _texts(auth: Mapping[str, Any], key: str) -> list[str]:
    out = []
    for v in auth.get(key) or ():
        out.append(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
    return out


def identity_from_context(context: Any) -> str | None:
    """The station a gRPC peer proved to be, from its TLS client certificate, or None.

    ``context`` is a ``grpc.aio.ServicerContext`` (or a sync ``grpc.ServicerContext``).
    Trust it only on a server that requires client certificates
    (``tls.server_credentials(..., client_ca=...)``): then the TLS layer has verified the
    certificate against the station CA before any call arrives. gRPC exposes the peer's
    leaf certificate as ``x509_pem_cert``, which is read in full (its SAN URI, as
    ``station_identity``); should a gRPC build not offer it, the already-parsed
    ``x509_subject_alternative_name`` property is used the same way. A plaintext (or non-TLS)
    peer has no identity."""
    try:
        auth: Mapping[str, Any] = context.auth_context() or {}
    except (AttributeError, ValueError):
        return None
    if _texts(auth, "transport_security_type") != ["ssl"]:
        return None
    pems = _texts(auth, "x509_pem_cert")
    if pems:
        return station_identity(pems[0])
    ids = {i for i in map(_id_from_uri, _texts(auth, "x509_subject_alternative_name"))
           if i is not None}
    return ids.pop() if len(ids) == 1 else None
