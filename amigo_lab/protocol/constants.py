"""Every choice protocol.md marks **C** (ours, because Amigo's text is silent), as one named constant each.

The real service may differ on any of these; a later correction should be a one-line change here. The
client tolerates other behaviour (unknown frame types and extra fields are logged, never fatal); the
emulator does exactly what these constants say.
"""

from __future__ import annotations

# --- connection (protocol.md §1) ------------------------------------------------------------------------
#: Path of the endpoint; ``{organization}`` is the org id. (D)
ENDPOINT_PATH = "/v1/{organization}/conversation/converse_realtime"
#: Region name -> API host. ``us`` is documented (D); the others are the REST hosts of those regions (C).
REGION_HOSTS = {
    "us": "api.amigo.ai",
    "eu": "api-eu-central-1.amigo.ai",
    "au": "api-ap-southeast-2.amigo.ai",
    "ca": "api-ca-central-1.amigo.ai",
}
DEFAULT_REGION = "us"
#: The JWT travels as this subprotocol prefix + token; the server echoes the whole string. (D)
AUTH_SUBPROTOCOL_PREFIX = "bearer.authorization.amigo.ai."
RESPONSE_FORMATS = ("text", "voice")
AUDIO_FORMATS = ("pcm", "mp3")

# --- conversation (§2, §3) ------------------------------------------------------------------------------
DEFAULT_VERSION_SET = "release"
MESSAGE_TYPE_USER = "user-message"
MESSAGE_TYPE_EXTERNAL_EVENT = "external-event"
MESSAGE_TYPES = (MESSAGE_TYPE_USER, MESSAGE_TYPE_EXTERNAL_EVENT)

# --- agent actions (§4) -----------------------------------------------------------------------------------
ACTION_TOOL_CALL_STARTED = "tool-call-started"
ACTION_TOOL_CALL_ENDED = "tool-call-ended"
ACTION_TOO_LONG = "action-too-long"

# --- audio, VAD, limits (§6) ------------------------------------------------------------------------------
SAMPLE_RATE = 16_000
SAMPLE_WIDTH_BYTES = 2
CHANNELS = 1
RECOMMENDED_CHUNK_MS = (20, 200)
MAX_CHUNK_MS = 1000
VAD_END_SILENCE_MS = 500
VAD_MIN_SPEECH_MS = 200
IDLE_TIMEOUT_S = 120.0
MAX_FRAME_BYTES = 1 << 20
MAX_NEW_CONVERSATIONS_PER_MINUTE = 5
MAX_FRAMES_PER_SECOND = 100
KEEPALIVE_INTERVAL_S = 20.0
KEEPALIVE_TIMEOUT_S = 20.0
#: Agent audio pieces last this long, and run at most this far ahead of real time (barge-in needs both).
AGENT_PIECE_MS = 160
AGENT_MAX_LEAD_MS = 1000

# --- languages (§7) ---------------------------------------------------------------------------------------
LANGUAGES = ("eng", "spa", "fra", "deu", "ita", "por")
