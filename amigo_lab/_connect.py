"""``connect()``: the one call that gives a notebook a :class:`~amigo_lab.session.Session`.

With no organization and token (as arguments or in ``AMIGO_ORG`` / ``AMIGO_TOKEN``) it talks to an
embedded emulator on loopback, started on first use and shared by the process, so a notebook runs offline.
With them it talks to Amigo's real service over TLS (``wss://``, certificates verified). A staging host
that is not loopback gets plain ``ws://`` only with ``secure=False``, and a self-signed certificate only with
``ssl_context=`` (one that trusts its authority) or ``verify_tls=False``: both on purpose, both warned about.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import weakref
from typing import TYPE_CHECKING, Any

from amigo_lab.protocol import (
    ConnectParams,
    QueryError,
    constants,
    is_loopback_host,
    region_host,
)
from amigo_lab.session import Session, SessionError

if TYPE_CHECKING:
    from amigo_lab.emulator import Emulator

#: Environment variables read when the matching argument is not given.
ENV_ORG, ENV_TOKEN, ENV_REGION = "AMIGO_ORG", "AMIGO_TOKEN", "AMIGO_REGION"
ENV_SERVICE_ID, ENV_VERSION_SET, ENV_HOST = "AMIGO_SERVICE_ID", "AMIGO_VERSION_SET", "AMIGO_HOST"

logger = logging.getLogger("amigo_lab.session")

_shared_lock = threading.Lock()
_shared_emulator: Emulator | None = None
# Sessions connect() opened on the shared emulator, by service id: a notebook cell that runs connect()
# again replaces its session, so the previous one is finished first (the protocol allows one connection
# and one unfinished conversation per user and service).
_shared_sessions: weakref.WeakValueDictionary[str, Session] = weakref.WeakValueDictionary()


def shared_emulator() -> Emulator:
    """The process's embedded emulator, started on first use (loopback, a free port)."""
    global _shared_emulator
    with _shared_lock:
        if _shared_emulator is None:
            from amigo_lab.emulator import Emulator
            _shared_emulator = Emulator().start()
        return _shared_emulator



def connect(organization: str | None = None, token: str | None = None, *, region: str | None = None,
            service_id: str | None = None, version_set: str = constants.DEFAULT_VERSION_SET,
            host: str | None = None, response_format: str = "voice", audio_format: str | None = "pcm",
            agent_actions: str | None = ".*", log_dir: str | os.PathLike[str] | None = None, start: bool = True,
            conversation_id: str | None = None, emulator: Emulator | None = None,
            timeout: float = 30.0, response_timeout: float | None = 30.0, agent_sample_rate: int = 16_000,
            secure: bool | None = None, ssl_context: ssl.SSLContext | None = None, verify_tls: bool = True,
            **session_options: Any) -> Session:
    """Open a session: to the embedded emulator by default, to Amigo's service given an org and a token.

    Parameters
    ----------
    organization, token
        Your Amigo organization id and JWT (default: ``AMIGO_ORG``, ``AMIGO_TOKEN``). Neither given: the
        embedded emulator (or ``emulator=``). The token never reaches logs, files or reprs.
    region
        ``us`` (default), ``eu``, ``au`` or ``ca`` (default ``AMIGO_REGION``); the org lives in one.
    service_id, version_set
        The service to talk to (default ``AMIGO_SERVICE_ID``; the emulator's demo clinic) and its version
        set (``AMIGO_VERSION_SET`` replaces the default ``"release"``).
    host
        ``host[:port]`` instead of the region's (``AMIGO_HOST``); loopback hosts use plain ``ws://``.
    response_format, audio_format
        ``"voice"`` (agent audio) or ``"text"``; ``"pcm"`` or ``"mp3"`` for audio both ways.
    agent_actions
        A regular expression of ``current-agent-action`` types to receive (None: none).
    log_dir
        Folder for the recorded session (default: a fresh one under the temp directory).
    start, conversation_id
        Start a new conversation (the greeting is ``session.greeting``), or continue ``conversation_id``.
    emulator
        An :class:`~amigo_lab.emulator.Emulator` to use instead of the shared embedded one.
    timeout
        Seconds to wait for the server at each step (connect, start, close).
    response_timeout
        Seconds a turn waits for the server to say anything before it fails with
        :class:`~amigo_lab.session.ResponseTimeoutError` (saying what was missing) and the session resets the
        connection and continues the conversation; a black-holed link ends here instead of waiting for
        keep-alive. None: no deadline. Raise it for an agent whose tools run silently for longer.
    agent_sample_rate
        The rate of the agent's PCM audio in Hz (protocol.md says 16 000); a frame that announces a rate
        (``sample_rate``) wins. Replies are resampled to 16 kHz either way.
    secure, ssl_context, verify_tls
        ``secure=False`` sends plain ``ws://`` to a host that is not loopback (the token then travels in
        clear text: only for a staging host on a trusted network). ``ssl_context`` replaces the default
        verifying TLS context (e.g. trusting a staging host's own authority); ``verify_tls=False`` accepts
        any certificate. TLS verification stays on unless one of these says otherwise.
    session_options
        Passed on to :class:`~amigo_lab.session.Session`: ``transport_factory=`` (wrap the socket, e.g. to
        inject faults) and ``backoff=`` (a :class:`~amigo_lab.session.Backoff` for reconnecting).

    Returns a :class:`~amigo_lab.session.Session`; next: ``session.say("...")`` or ``session.send_audio(...)``.
    """
    organization = organization or os.environ.get(ENV_ORG) or None
    token = token or os.environ.get(ENV_TOKEN) or None
    host = host or os.environ.get(ENV_HOST) or None
    if version_set == constants.DEFAULT_VERSION_SET:
        version_set = os.environ.get(ENV_VERSION_SET) or version_set
    try:
        params = ConnectParams(response_format=response_format, audio_format=audio_format,
                               current_agent_action_type=agent_actions)
    except QueryError as exc:
        raise SessionError(f"bad connect() options: {exc}") from None

    shared = False
    if emulator is None and organization is None and token is None:
        emulator, shared = shared_emulator(), True
    if emulator is not None:
        from amigo_lab.emulator import DEFAULT_SERVICE_ID
        organization = organization or emulator.org
        token = token or emulator.token
        host = host or f"{emulator.host}:{emulator.port}"
        service_id = service_id or DEFAULT_SERVICE_ID
        region_name = constants.DEFAULT_REGION
    else:
        if not organization or not token:
            missing = "organization (AMIGO_ORG)" if not organization else "token (AMIGO_TOKEN)"
            raise SessionError(f"connect() to Amigo needs both an organization and a token; the {missing} is "
                               "missing. Call connect() with neither to use the embedded emulator.")
        region_name = (region or os.environ.get(ENV_REGION) or constants.DEFAULT_REGION).lower()
        try:
            region_host(region_name)
        except ValueError as exc:
            raise SessionError(str(exc)) from None
        service_id = service_id or os.environ.get(ENV_SERVICE_ID) or None
        if start and conversation_id is None and not service_id:
            raise SessionError("no service id: pass connect(service_id=...) or set AMIGO_SERVICE_ID "
                               "(24 hex characters, from the Amigo console)")

    loopback = host is not None and is_loopback_host(host)
    if secure is None:
        secure = not loopback
    elif not secure and not loopback:
        logger.warning("connect(secure=False): plain ws:// to %s; the token travels unencrypted", host)
    if not verify_tls and ssl_context is None:
        ssl_context = ssl.create_default_context()
        ssl_context.check_hostname = False
        ssl_context.verify_mode = ssl.CERT_NONE
        logger.warning("connect(verify_tls=False): the server's certificate is not checked")
    if ssl_context is not None and not secure:
        raise SessionError("ssl_context / verify_tls=False apply to wss:// only; drop secure=False to use TLS")
    session = Session(organization=organization, token=token, params=params, host=host, region=region_name,
                      secure=secure, service_id=service_id, version_set=version_set, log_dir=log_dir,
                      timeout=timeout, response_timeout=response_timeout, agent_sample_rate=agent_sample_rate,
                      ssl_context=ssl_context, **session_options)
    if shared and service_id is not None:
        previous = _shared_sessions.get(service_id)
        if previous is not None and previous.state not in ("closed", "failed"):
            previous.finish()
        _shared_sessions[service_id] = session
    try:
        session.open()
        if conversation_id is not None:
            session.resume(conversation_id)
        elif start:
            session.start()
    except BaseException:
        session._discard()
        raise
    return session


__all__ = ["connect", "shared_emulator"]
