"""The Amigo real-time voice protocol, sans-I/O: frames, parse/serialize, close codes, the state machine, the fold.

Standard library only; no sockets, clocks or randomness. Both the session (client) and the emulator
(server) speak through this package and nothing else, so it is the one place where the contract
(protocol.md) lives in code. Start with :func:`parse` / :func:`serialize` and :class:`Conversation`;
:mod:`~amigo_lab.protocol.wire` holds every wire name and shape we chose, :mod:`~amigo_lab.protocol.fold` the
one account of interactions and latencies (:class:`Fold`, :data:`LATENCIES`).
"""

from amigo_lab.protocol import constants, fold, wire
from amigo_lab.protocol.codes import RECONNECT_CODES, CloseCode, describe_close, should_reconnect
from amigo_lab.protocol.conversation import (
    CONVERSATION_COMPLETED,
    TRANSITIONS,
    Conversation,
    ProtocolViolation,
    Role,
    State,
    event_of,
)
from amigo_lab.protocol.endpoint import (
    REDACTED,
    ConnectParams,
    QueryError,
    auth_subprotocol,
    build_url,
    is_loopback_host,
    parse_path,
    parse_query,
    redact,
    region_host,
    token_from_subprotocols,
)
from amigo_lab.protocol.errors import FrameError, LocalProtocolError, ProtocolError, RemoteProtocolError
from amigo_lab.protocol.frames import (
    CLIENT_FRAME_TYPES,
    FRAME_TYPES,
    SERVER_FRAME_TYPES,
    CloseConnection,
    ContinueConversation,
    ConversationContinued,
    ConversationCreated,
    CurrentAgentAction,
    ExtendTimeout,
    FinishConversation,
    Frame,
    InteractionComplete,
    NewAudioMessage,
    NewMessage,
    NewTextMessage,
    ServerError,
    StartConversation,
    SwitchVadMode,
    UnknownFrame,
    UserMessageAvailable,
    VadModeSwitched,
    VadSpeechEnded,
    VadSpeechResetZero,
    VadSpeechStarted,
    from_dict,
    normalise_alignment,
    parse,
    serialize,
)
from amigo_lab.protocol.fold import LATENCIES, Fold, latency_definition
from amigo_lab.protocol.wire import init_ack_id, is_init_ack, is_vad_ack

__all__ = [
    "CLIENT_FRAME_TYPES", "CONVERSATION_COMPLETED", "FRAME_TYPES", "LATENCIES", "RECONNECT_CODES", "REDACTED",
    "SERVER_FRAME_TYPES", "TRANSITIONS",
    "CloseCode", "CloseConnection", "ConnectParams", "ContinueConversation", "Conversation",
    "ConversationContinued", "ConversationCreated", "CurrentAgentAction", "ExtendTimeout", "Fold",
    "FinishConversation", "Frame", "FrameError", "InteractionComplete", "LocalProtocolError",
    "NewAudioMessage", "NewMessage", "NewTextMessage", "ProtocolError", "ProtocolViolation", "QueryError",
    "RemoteProtocolError", "Role", "ServerError", "StartConversation", "State", "SwitchVadMode",
    "UnknownFrame", "UserMessageAvailable", "VadModeSwitched", "VadSpeechEnded", "VadSpeechResetZero",
    "VadSpeechStarted",
    "auth_subprotocol", "build_url", "constants", "describe_close", "event_of", "fold", "from_dict", "init_ack_id",
    "is_init_ack", "is_loopback_host", "is_vad_ack", "latency_definition", "normalise_alignment", "parse",
    "parse_path", "parse_query", "redact", "region_host", "serialize", "should_reconnect",
    "token_from_subprotocols", "wire",
]
