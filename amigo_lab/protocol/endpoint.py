"""The endpoint: URL, query parameters, the auth subprotocol, and token redaction (protocol.md §1).

Both sides use this module: the client to build a URL (:func:`build_url`) and its subprotocol
(:func:`auth_subprotocol`), the emulator to check a query (:func:`parse_query`) and find the token
(:func:`token_from_subprotocols`). :func:`redact` removes tokens from any text before it is shown or stored.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode

from amigo_lab.protocol.codes import CloseCode
from amigo_lab.protocol.constants import (
    AUDIO_FORMATS,
    AUTH_SUBPROTOCOL_PREFIX,
    ENDPOINT_PATH,
    REGION_HOSTS,
    RESPONSE_FORMATS,
)
from amigo_lab.protocol.errors import ProtocolError

REDACTED = "<redacted>"
_SUBPROTOCOL_TOKEN = re.compile(re.escape(AUTH_SUBPROTOCOL_PREFIX) + r"[^\s,'\"]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s,'\"]+")


@dataclass(frozen=True)
class ConnectParams:
    """The validated query of a connection: what the client asked the server to send."""

    response_format: str
    audio_format: str | None = None
    current_agent_action_type: str | None = None

    def __post_init__(self) -> None:
        if self.response_format not in RESPONSE_FORMATS:
            raise QueryError(f"response_format must be one of {list(RESPONSE_FORMATS)}, got {self.response_format!r}")
        if self.audio_format is not None and self.audio_format not in AUDIO_FORMATS:
            raise QueryError(f"audio_format must be one of {list(AUDIO_FORMATS)}, got {self.audio_format!r}")
        if self.response_format == "voice" and self.audio_format is None:
            raise QueryError("audio_format is required when response_format=voice (pcm or mp3)")
        if self.current_agent_action_type is not None:
            try:
                re.compile(self.current_agent_action_type)
            except re.error as exc:
                raise QueryError(f"current_agent_action_type is not a regular expression: {exc}") from exc

    def to_query(self) -> str:
        """The query string, without the leading ``?``."""
        items = {"response_format": self.response_format}
        if self.audio_format is not None:
            items["audio_format"] = self.audio_format
        if self.current_agent_action_type is not None:
            items["current_agent_action_type"] = self.current_agent_action_type
        return urlencode(items)

    def admits_action(self, action_type: str) -> bool:
        """True when a ``server.current-agent-action`` of this type may be sent (the regex matches)."""
        if self.current_agent_action_type is None:
            return False
        return re.search(self.current_agent_action_type, action_type) is not None


class QueryError(ProtocolError, ValueError):
    """The connection's query is invalid; the server closes with 4400."""

    def __init__(self, message: str) -> None:
        super().__init__(message, close_code=int(CloseCode.BAD_REQUEST))


def parse_query(query: str) -> ConnectParams:
    """Validate a query string (``response_format=voice&audio_format=pcm``). Raises :class:`QueryError`."""
    values = parse_qs(query, keep_blank_values=True)
    for key, items in values.items():
        if len(items) > 1:
            raise QueryError(f"query parameter {key} is given {len(items)} times; give it once")
    if "response_format" not in values:
        raise QueryError("response_format is required (text or voice)")
    return ConnectParams(
        response_format=values["response_format"][0],
        audio_format=values.get("audio_format", [None])[0],
        current_agent_action_type=values.get("current_agent_action_type", [None])[0],
    )


def region_host(region: str) -> str:
    """The API host of a region (us, eu, au, ca)."""
    try:
        return REGION_HOSTS[region.lower()]
    except KeyError:
        raise ValueError(f"unknown region {region!r}; use one of {sorted(REGION_HOSTS)}") from None


def build_url(*, organization: str, params: ConnectParams, host: str | None = None, region: str = "us",
              secure: bool = True) -> str:
    """The WebSocket URL for an organization. ``host`` overrides the region (e.g. ``127.0.0.1:8765``)."""
    if not organization or "/" in organization:
        raise ValueError(f"organization must be a non-empty id without '/', got {organization!r}")
    scheme = "wss" if secure else "ws"
    path = ENDPOINT_PATH.format(organization=organization)
    return f"{scheme}://{host or region_host(region)}{path}?{params.to_query()}"


def parse_path(path: str) -> str | None:
    """The organization of an endpoint path, or None when the path is not the endpoint."""
    prefix, _, suffix = ENDPOINT_PATH.partition("{organization}")
    path = path.split("?", 1)[0]
    if not (path.startswith(prefix) and path.endswith(suffix)):
        return None
    org = path[len(prefix): len(path) - len(suffix)]
    return org if org and "/" not in org else None


def is_loopback_host(host: str) -> bool:
    """True for a loopback ``host`` or ``host:port``: an address in 127.0.0.0/8 or ``::1``, or ``localhost``.

    ``127.0.0.1``, ``localhost:8765``, ``[::1]:8765`` and ``::ffff:127.0.0.1`` are loopback; ``127.evil.com``
    (a name that merely starts with digits) is not. Loopback means the embedded emulator: plain ``ws://`` and
    no proxy are right there, and only there.
    """
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        name = host.split(":", 1)[0]
    else:
        name = host  # a bare name, an IPv4 address, or an IPv6 address without a port
    name = name.rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])  # an IPv6 zone (``::1%lo``) is not part of it
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def auth_subprotocol(token: str) -> str:
    """The subprotocol that carries a token. The server echoes it; browsers drop the socket otherwise."""
    if not token or any(c.isspace() or c == "," for c in token):
        raise ValueError("token must be non-empty, without spaces or commas")
    return AUTH_SUBPROTOCOL_PREFIX + token


def token_from_subprotocols(offered: list[str] | tuple[str, ...]) -> tuple[str | None, str | None]:
    """Find the auth subprotocol among those offered: ``(subprotocol, token)``, or ``(None, None)``."""
    for item in offered:
        if item.startswith(AUTH_SUBPROTOCOL_PREFIX):
            return item, item[len(AUTH_SUBPROTOCOL_PREFIX):]
    return None, None


def redact(text: str, *secrets: str | None) -> str:
    """Remove tokens from a text: auth subprotocols, JWT-shaped strings, bearer values and given secrets."""
    if not isinstance(text, str):
        return text
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    text = _SUBPROTOCOL_TOKEN.sub(AUTH_SUBPROTOCOL_PREFIX + REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    return _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
