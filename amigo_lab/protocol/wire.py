"""The wire vocabulary: every name and shape of a frame, in one place, so a correction for the real service is
one line here.

protocol.md marks the wire names of the audio, VAD, finish, close and extend-timeout messages, the continue
handshake, the VAD fields and the alignment shape as **C** rows (our reconstruction). This module holds each
of those choices as one constant or one table entry:

- ``*_TYPE`` constants: the wire ``type`` of each frame; :data:`TYPE_ALIASES` maps other names a server may
  use for the same frame onto ours.
- :data:`FIELD_ALIASES`: other wire keys a server may use for a field, per frame type (``wire key -> field``).
- :data:`REQUIRED`: the keys without which a frame cannot be read at all. Any other key may be missing; it
  then takes its natural default (``stop`` false, ``sequence_number`` unknown, ``conversation_completed``
  false, ``full_message`` unknown).
- ``ALIGNMENT_*``: the shapes of ``transcript_alignment`` that :func:`amigo_lab.protocol.frames.parse`
  normalises to ``((ms, char), ...)``.
- :func:`is_init_ack` and :func:`is_vad_ack`: what a client accepts as the answer to its initialisation and
  to ``client.switch-vad-mode``; :func:`announced_sample_rate`: the rate a frame announces for its audio.

Close codes and their reconnect rule live in :mod:`amigo_lab.protocol.codes`; numbers (sample rate, limits)
in :mod:`amigo_lab.protocol.constants`. A service difference that no table entry covers is adapted at the
session's transport seam, without editing the library.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from amigo_lab.protocol.frames import Frame

# --- frame types (protocol.md §3, §4) ---------------------------------------------------------------------
START_CONVERSATION_TYPE = "client.start-conversation"            # D
CONTINUE_CONVERSATION_TYPE = "client.continue-conversation"      # C
NEW_TEXT_MESSAGE_TYPE = "client.new-text-message"                # D
NEW_AUDIO_MESSAGE_TYPE = "client.new-audio-message"              # C name
SWITCH_VAD_MODE_TYPE = "client.switch-vad-mode"                  # C name
EXTEND_TIMEOUT_TYPE = "client.extend-timeout"                    # C name
FINISH_CONVERSATION_TYPE = "client.finish-conversation"          # C name
CLOSE_CONNECTION_TYPE = "client.close-connection"                # C name

CONVERSATION_CREATED_TYPE = "server.conversation-created"        # D
CONVERSATION_CONTINUED_TYPE = "server.conversation-continued"    # C
USER_MESSAGE_AVAILABLE_TYPE = "server.user-message-available"    # D
CURRENT_AGENT_ACTION_TYPE = "server.current-agent-action"        # D
NEW_MESSAGE_TYPE = "server.new-message"                          # D
INTERACTION_COMPLETE_TYPE = "server.interaction-complete"        # D
VAD_MODE_SWITCHED_TYPE = "server.vad-mode-switched"              # C name
VAD_SPEECH_STARTED_TYPE = "server.vad-speech-started"            # C name
VAD_SPEECH_ENDED_TYPE = "server.vad-speech-ended"                # C name
VAD_SPEECH_RESET_ZERO_TYPE = "server.vad-speech-reset-zero"      # C name
ERROR_TYPE = "server.error"                                      # D

#: The prefix of every frame that answers an initialisation (created, continued, or a name we do not know).
INIT_ACK_PREFIX = "server.conversation-"

#: Other wire types a server may send for one of ours: ``their name -> our name``.
TYPE_ALIASES: dict[str, str] = {
    "server.conversation-resumed": CONVERSATION_CONTINUED_TYPE,
    "server.conversation-started": CONVERSATION_CREATED_TYPE,
    "server.vad-mode-changed": VAD_MODE_SWITCHED_TYPE,
}

_SERVER_TYPES = (CONVERSATION_CREATED_TYPE, CONVERSATION_CONTINUED_TYPE, USER_MESSAGE_AVAILABLE_TYPE,
                 CURRENT_AGENT_ACTION_TYPE, NEW_MESSAGE_TYPE, INTERACTION_COMPLETE_TYPE, VAD_MODE_SWITCHED_TYPE,
                 VAD_SPEECH_STARTED_TYPE, VAD_SPEECH_ENDED_TYPE, VAD_SPEECH_RESET_ZERO_TYPE, ERROR_TYPE)
_NOT_ALNUM = re.compile(r"[^a-z0-9]")


def _spelling(name: str) -> str:
    """A type name with case, separators and the ``server`` prefix taken away: ``newmessage``."""
    key = _NOT_ALNUM.sub("", name.lower())
    return key.removeprefix("server")


_BY_SPELLING: dict[str, str] = {
    **{_spelling(name): name for name in _SERVER_TYPES},
    **{_spelling(theirs): ours for theirs, ours in TYPE_ALIASES.items()},
}


#: The words that end the problem noted on a frame whose type came in another spelling.
TYPE_SPELLING_NOTE = "another spelling of the name"


def server_type_spelled_otherwise(name: str) -> str | None:
    """Our wire name for a server frame type spelled in another convention (``server.new_message``,
    ``newMessage``, ``SERVER.NEW-MESSAGE``, ``new-message``), or None when it is no server type we know.

    Only server types: a client's frames are held to protocol.md's names (the emulator answers 400).
    Next: read the frame as that type, and note the spelling.
    """
    return _BY_SPELLING.get(_spelling(name))


#: Other wire keys a server may use for a field: ``frame type -> {their key: our field}``. Our own key wins
#: when both are present (the other one then stays in ``extra``).
FIELD_ALIASES: dict[str, dict[str, str]] = {
    CONVERSATION_CREATED_TYPE: {"conversationId": "conversation_id", "id": "conversation_id"},
    CONVERSATION_CONTINUED_TYPE: {"conversationId": "conversation_id", "id": "conversation_id"},
    USER_MESSAGE_AVAILABLE_TYPE: {"messageId": "message_id", "text": "user_message", "transcript": "user_message"},
    NEW_MESSAGE_TYPE: {"messageId": "message_id", "sequenceNumber": "sequence_number", "seq": "sequence_number",
                       "alignment": "transcript_alignment", "transcriptAlignment": "transcript_alignment",
                       "audio": "message"},
    INTERACTION_COMPLETE_TYPE: {"messageId": "message_id", "interactionId": "interaction_id",
                                "fullMessage": "full_message", "conversationCompleted": "conversation_completed"},
    VAD_MODE_SWITCHED_TYPE: {"vadModeOn": "vad_mode_on", "vad_mode": "vad_mode_on"},
    VAD_SPEECH_STARTED_TYPE: {"audioMs": "audio_ms", "position_ms": "audio_ms"},
    VAD_SPEECH_ENDED_TYPE: {"audioMs": "audio_ms", "position_ms": "audio_ms"},
    VAD_SPEECH_RESET_ZERO_TYPE: {"audioMs": "audio_ms", "position_ms": "audio_ms"},
    ERROR_TYPE: {"httpErrorCode": "http_error_code", "code": "http_error_code", "status": "http_error_code",
                 "errorDescription": "error_description", "description": "error_description"},
}

#: Keys without which a frame cannot be read: ``frame type -> keys``. Every other key may be missing and
#: takes its natural default. Client frames keep protocol.md's requirements (the emulator answers 400).
REQUIRED: dict[str, tuple[str, ...]] = {
    START_CONVERSATION_TYPE: ("service_id",),
    CONTINUE_CONVERSATION_TYPE: ("conversation_id",),
    NEW_TEXT_MESSAGE_TYPE: ("text",),
    NEW_AUDIO_MESSAGE_TYPE: ("audio",),
    SWITCH_VAD_MODE_TYPE: ("vad_mode_on",),
    NEW_MESSAGE_TYPE: ("message",),
}

# --- transcript_alignment shapes (normalised to ((ms, char), ...)) -----------------------------------------
#: A list of objects: the key of the character, the key of its start in ms, or in seconds (first match wins).
ALIGNMENT_CHAR_KEYS = ("char", "character", "c")
ALIGNMENT_MS_KEYS = ("ms", "start_ms", "start_time_ms", "startMs", "time")
ALIGNMENT_SECONDS_KEYS = ("start_time_seconds", "start_s", "seconds")
#: A dict of arrays, as TTS vendors emit: the characters, and their start times in ms or in seconds.
ALIGNMENT_CHARS_ARRAY_KEYS = ("chars", "characters")
ALIGNMENT_MS_ARRAY_KEYS = ("charStartTimesMs", "char_start_times_ms", "character_start_times_ms")
ALIGNMENT_SECONDS_ARRAY_KEYS = ("character_start_times_seconds", "charStartTimesSeconds",
                                "char_start_times_seconds")

# --- audio announcements -------------------------------------------------------------------------------------
#: Keys under which a server may announce the sample rate of the audio a frame carries (read from ``extra``).
SAMPLE_RATE_KEYS = ("sample_rate", "sampleRate", "sample_rate_hz", "sampling_rate")
#: Keys under which a server may name the audio encoding with its rate, as TTS vendors do (``"pcm_24000"``).
AUDIO_FORMAT_KEYS = ("output_format", "audio_format", "format", "encoding")
_RATE_IN_FORMAT = re.compile(r"(?:pcm|linear16|s16le)[_-]?(\d{4,6})\Z", re.IGNORECASE)


def announced_sample_rate(frame: Frame) -> int | None:
    """The sample rate a frame announces for its audio (e.g. ``"sample_rate": 24000`` or ``"output_format":
    "pcm_24000"`` among its extra keys), or None when it announces none. Next: resample the piece if it differs
    from the session's agent sample rate.
    """
    extra = frame.extra
    for key in SAMPLE_RATE_KEYS:
        value = extra.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and value > 0 and float(value).is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
            return int(value)
    for key in AUDIO_FORMAT_KEYS:
        value = extra.get(key)
        match = _RATE_IN_FORMAT.match(value.strip()) if isinstance(value, str) else None
        if match:
            return int(match.group(1))
    return None


# --- answers a client waits for ----------------------------------------------------------------------------


def init_ack_id(frame: Frame) -> str | None:
    """The conversation id an initialisation answer carries, or None when ``frame`` is not such an answer.

    Any ``server.conversation-*`` frame counts, known or not (a server may name its continue-ack otherwise);
    its id is read from ``conversation_id`` or one of that field's aliases. Next: :func:`is_init_ack`.
    """
    if not frame.type.startswith(INIT_ACK_PREFIX):
        return None
    value = getattr(frame, "conversation_id", None)
    if value is None:
        payload: Mapping[str, Any] = getattr(frame, "payload", {})
        keys = ("conversation_id", *FIELD_ALIASES[CONVERSATION_CONTINUED_TYPE])
        value = next((payload[k] for k in keys if payload.get(k) is not None), None)
    return None if value is None else str(value)


def is_init_ack(frame: Frame, requested_conversation_id: str | None) -> bool:
    """True when ``frame`` answers our start (``requested_conversation_id`` None) or continue of that id.

    A start is answered by any ``server.conversation-*`` frame; a continue by one carrying the requested id
    (or no id at all: the server then continues the one we asked for). Anything else received while
    initialising is not the answer: a ``server.error`` fails the initialisation; other frames are logged.
    Next: take the id with :func:`init_ack_id` and mark the conversation active.
    """
    if not frame.type.startswith(INIT_ACK_PREFIX):
        return False
    return requested_conversation_id is None or init_ack_id(frame) in (None, "", requested_conversation_id)


def is_vad_ack(frame: Frame, requested_on: bool) -> bool:
    """True when ``frame`` answers ``client.switch-vad-mode(requested_on)``.

    A ``server.vad-mode-switched`` without its ``vad_mode_on`` field answers whatever was asked last; one with
    the field answers only that value. Next: release the waiter of that request.
    """
    if frame.type != VAD_MODE_SWITCHED_TYPE:
        return False
    said = getattr(frame, "vad_mode_on", None)
    return said is None or said is requested_on
