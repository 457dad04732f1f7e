"""``evgrid certs``: a small CA for mutual TLS, so each station is known by its certificate.

``evgrid certs init`` makes the CA, ``evgrid certs issue depot`` a certificate for station
``depot``, ``evgrid certs issue --coordinator --host grid.example.org`` the coordinator's
server certificate; ``evgrid certs token depot`` a per-station bearer token instead of a
certificate (only its SHA-256 is stored, in the coordinator's token file). Plain functions with typer annotations on the sub-app ``app``, which
``evgrid.cli`` registers as ``certs``; ``evgrid.cli`` is imported lazily, because it imports
this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEFAULT_DIR = Path("certs")

app = typer.Typer(
    name="certs",
    help="Certificates for mutual TLS: a CA, one client certificate per station, and the "
    "coordinator's server certificate.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

DirOption = Annotated[
    Path,
    typer.Option("--dir", help="folder of the CA (ca.pem, ca.key) and the issued files"),
]


def init(
    folder: DirOption = DEFAULT_DIR,
    name: Annotated[str, typer.Option(help="the CA's common name")] = "evgrid dev CA",
    days: Annotated[int, typer.Option(min=1, help="validity of the CA certificate, in days")]
    = 3650,
    force: Annotated[bool, typer.Option(
        "--force", help="overwrite an existing CA (every certificate it issued stops working)")]
    = False,
) -> None:
    """Create the CA: ca.pem (give it to the coordinator and every station) and ca.key
    (mode 0600; keep it off the stations, it can mint any of them)."""
    from evgrid.cli import console, fail
    from evgrid.transport.certs import CertError, init_ca

    try:
        paths = init_ca(folder, name=name, days=days, force=force)
    except CertError as exc:
        raise fail(str(exc)) from None
    console.print(f"wrote {paths.cert} and {paths.key} (keep the key private)", highlight=False)


def issue(
    station: Annotated[str | None, typer.Argument(
        show_default=False,
        help="station id (CN and SAN URI evgrid://station/<id>); with --coordinator only "
        "the file name (default: coordinator)")] = None,
    folder: DirOption = DEFAULT_DIR,
    coordinator: Annotated[bool, typer.Option(
        "--coordinator", help="issue the coordinator's server certificate instead")] = False,
    host: Annotated[list[str] | None, typer.Option(
        "--host", show_default=False,
        help="DNS name or IP address stations dial, for --coordinator; repeat for several "
        "(default: localhost, 127.0.0.1, ::1)")] = None,
    days: Annotated[int, typer.Option(min=1, help="validity of the certificate, in days")]
    = 825,
    out: Annotated[Path | None, typer.Option(
        show_default=False, help="folder for <id>.pem and <id>.key (default: --dir)")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="overwrite an existing certificate and key of the same name")] = False,
) -> None:
    """Sign a certificate with the CA in --dir: <id>.pem and <id>.key (mode 0600)."""
    from evgrid.cli import console, fail
    from evgrid.transport.certs import CertError
    from evgrid.transport.certs import issue as issue_cert

    if coordinator:
        subject = station or "coordinator"
    elif station is None:
        raise fail("give the station id (or --coordinator for the coordinator's certificate)")
    else:
        subject = station
        if host:
            raise fail("--host is for the coordinator's certificate (add --coordinator)")
    try:
        paths = issue_cert(folder, subject, kind="coordinator" if coordinator else "station",
                           hosts=host or (), days=days, out=out, force=force)
    except CertError as exc:
        raise fail(str(exc)) from None
    what = "the coordinator" if coordinator else f"station {subject}"
    console.print(f"wrote {paths.cert} and {paths.key} for {what}", highlight=False)


def token(
    station: Annotated[str, typer.Argument(help="station id the token identifies")],
    file: Annotated[Path, typer.Option(
        "--file", help="token file to add the station to (created if missing; give it to "
        "evgrid coordinator --token-file)")] = Path("tokens.yaml"),
    force: Annotated[bool, typer.Option(
        "--force", help="replace the station's existing token (the old one stops working)")]
    = False,
) -> None:
    """Make a random token for STATION: print it once, store only its SHA-256 in --file."""
    import secrets

    import yaml

    from evgrid.cli import console, fail
    from evgrid.transport.auth import AuthError, read_token_file, token_digest
    from evgrid.transport.certs import CertError, check_station_id

    try:
        check_station_id(station)
        empty = not file.exists() or not file.read_text(encoding="utf-8").strip()
        entries = {} if empty else {v: k for k, v in read_token_file(file).items()}
    except (CertError, AuthError) as exc:
        raise fail(str(exc)) from None
    if station in entries and not force:
        raise fail(f"{file}: {station!r} has a token already (--force replaces it)")
    secret = secrets.token_urlsafe(32)
    entries[station] = token_digest(secret)
    tmp = file.with_name(f".{file.name}.tmp")
    try:
        tmp.write_text(yaml.safe_dump(dict(sorted(entries.items()))), encoding="utf-8")
        tmp.chmod(0o600)
        tmp.replace(file)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise fail(f"{file}: cannot write: {exc.strerror or exc}") from None
    console.print(f"token for {station} (shown once; the station gives it as --token or "
                  f"$EVGRID_TOKEN):\n{secret}", highlight=False)


app.command("init")(init)
app.command("issue")(issue)
app.command("token")(token)
