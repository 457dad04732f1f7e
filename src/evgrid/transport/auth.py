"""Who is calling the coordinator: per-station tokens, client certificates, or a shared token.

A station proves its identity in one of two ways, and the coordinator then knows *which*
station is calling, not merely that the caller holds a secret:

* a **client certificate** (mutual TLS) whose SAN URI ``evgrid://station/<id>`` names it,
  issued by the CA the coordinator trusts (``evgrid certs``); the TLS handshake refuses any
  other, so such a call is authenticated before gRPC sees it, and its identity is read from
  the call's auth context;
* a **per-station token** (``Authorization: Bearer <token>``) listed in a token file that maps
  each station id to the SHA-256 of its token (``evgrid certs token`` writes it).

A **shared token** still works, but it says nothing about who holds it: it admits any
station id, so it is for experiments on loopback only (``evgrid coordinator`` refuses it off
loopback). Whatever the way, a caller may act only as its own station (PERMISSION_DENIED
otherwise).

Only metadata is read here; checking it costs a hash and a dict lookup, never a message parse.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: The principal of a shared-token caller: it may act as any station.
ANY_STATION = "*"
#: Prefix of a hashed token in a token file.
SHA256 = "sha256:"


class AuthError(ValueError):
    """A token file or option that cannot be used (one line, names the file)."""


def token_digest(token: str) -> str:
    """The form a token file stores: ``sha256:<hex>`` of the token."""
    return SHA256 + hashlib.sha256(token.encode()).hexdigest()


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of an ``authorization: Bearer <token>`` metadata entry, if any."""
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            if text.startswith("Bearer "):
                return text[len("Bearer "):]
    return None


def read_token_file(path: Path) -> dict[str, str]:
    """Read a token file: a YAML mapping ``station_id: sha256:<hex>`` (or, discouraged, the
    token itself). Returns digest -> station id; errors are one line and name the file."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise AuthError(f"{path}: cannot read the token file: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise AuthError(f"{path}: not a YAML token file ({type(exc).__name__})") from None
    if not isinstance(data, dict) or not data:
        raise AuthError(f"{path}: a token file maps station ids to tokens (station: sha256:...)")
    out: dict[str, str] = {}
    for station, token in data.items():
        if not isinstance(station, str) or not isinstance(token, str) or not token:
            raise AuthError(f"{path}: entry {station!r} is not 'station_id: token'")
        digest = token if token.startswith(SHA256) else token_digest(token)
        if len(digest) != len(SHA256) + 64:
            raise AuthError(f"{path}: the token of {station!r} is not a sha256 digest")
        if digest in out:
            raise AuthError(f"{path}: {station!r} and {out[digest]!r} share one token")
        out[digest] = station
    return out


@dataclass(frozen=True)
class Authenticator:
    """The coordinator's credentials check (module docstring)."""

    shared_token: str | None = None
    station_tokens: Mapping[str, str] = field(default_factory=dict)  # digest -> station id
    client_certs: bool = False  # the server requires client certificates (mutual TLS)

    def __post_init__(self) -> None:
        if self.shared_token is not None and not self.shared_token:
            raise AuthError("an empty token would let anyone in; give a non-empty token")
        if self.shared_token is None and not self.station_tokens and not self.client_certs:
            raise AuthError("no credentials configured: give a token, a token file or a "
                            "client CA")

    def admits(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
        """Whether the call may go on to a handler (before any message is read). With client
        certificates the handshake has already admitted it."""
        return self.client_certs or self._token_principal(bearer_token(metadata)) is not None

    def principal(self, metadata: Iterable[tuple[str, str | bytes]] | None,
                  context: Any = None) -> str | None:
        """The station a call acts for (``ANY_STATION`` for a shared token), or None."""
        if self.client_certs and context is not None:
            from evgrid.transport.certs import identity_from_context

            ident = identity_from_context(context)
            if ident is not None:
                return ident
        return self._token_principal(bearer_token(metadata))

    def _token_principal(self, token: str | None) -> str | None:
        if not token:
            return None
        station = self.station_tokens.get(token_digest(token))
        if station is not None:
            return station
        if self.shared_token is not None and hmac.compare_digest(
                token.encode(), self.shared_token.encode()):
            return ANY_STATION
        return None


def may_act_as(principal: str | None, agent_id: str) -> bool:
    """Whether a caller authenticated as ``principal`` may speak for station ``agent_id``."""
    return principal is not None and principal in (ANY_STATION, agent_id)
