"""The deviations the client is tested against: each one a way the real service may differ from a C row.

Grouped by class; ``why`` says what a real service would plausibly do. The expectations say what the
client makes of it (by default: every turn resolves with the server's text and all of its audio).
"""

from __future__ import annotations

from deviation.server import Deviation as D

_ALL_DEFAULTS = frozenset({"stop", "sequence_number", "conversation_completed"})
_RECONNECT = "reconnect"

DEVIATION_LIST: list[D] = [
    # --- transcript alignment in other shapes ----------------------------------------------------------
    D("alignment-char-first", "alignment as [char, ms] pairs", alignment="char-first"),
    D("alignment-objects", "alignment as a list of {char, start_ms} objects", alignment="objects"),
    D("alignment-dict-of-arrays", "alignment as a dict of arrays, as common TTS vendors emit",
      alignment="dict-of-arrays"),
    D("alignment-unparseable", "alignment as a string no client can read", alignment="garbage"),
    D("alignment-span-mismatch", "alignment times on another clock than the audio", alignment_scale=2.0,
      expect_warning="alignment"),
    # --- omitted false / 0 fields ----------------------------------------------------------------------
    D("omit-stop-false", "stop omitted unless true", omit_defaults=frozenset({"stop"})),
    D("omit-sequence-number-zero", "sequence_number omitted when 0", omit_defaults=frozenset({"sequence_number"})),
    D("omit-conversation-completed-false", "conversation_completed omitted unless true",
      omit_defaults=frozenset({"conversation_completed"})),
    D("omit-all-defaults", "every false / 0 field omitted", omit_defaults=_ALL_DEFAULTS),
    D("complete-without-full-message", "interaction-complete without full_message", full_message=False,
      check_text=False),
    D("complete-without-interaction-id", "interaction-complete without interaction_id", interaction_id=False),
    D("pieces-without-message-id", "new-message pieces without message_id", piece_message_id=False),
    # --- order and presence ----------------------------------------------------------------------------
    D("user-message-late", "user-message-available after the first agent piece", user_message="after-first-piece"),
    D("user-message-never", "no user-message-available at all", user_message="never"),
    D("echo-normalised", "the user's text echoed lower-cased, punctuation stripped", echo_normalised=True),
    D("no-greeting", "no greeting after conversation-created", greeting="none", greeting_empty=True),
    D("greeting-complete-only", "a greeting that is only interaction-complete", greeting="complete-only"),
    D("duplicated-frames", "user-message-available and interaction-complete sent twice",
      duplicate=frozenset({"server.user-message-available", "server.interaction-complete"})),
    D("complete-before-last-piece", "interaction-complete overtakes the last piece", complete_before_last_piece=True,
      check_reply_audio=False),
    D("stop-never", "no piece says stop: true; interaction-complete ends the message", stop_piece=False),
    # --- sequence numbers ------------------------------------------------------------------------------
    D("sequence-from-1", "sequence_number counts from 1", seq_start=1),
    D("sequence-gaps", "sequence_number rises by 2", seq_step=2),
    # --- audio -----------------------------------------------------------------------------------------
    D("pcm-odd-bytes", "PCM pieces cut at odd byte counts", pcm_odd_pieces=True),
    D("mp3-pieces", "MP3 pieces that each decode alone (our C row)", connect=(("audio_format", "mp3"),)),
    D("mp3-one-stream", "MP3 as one stream per message cut into byte pieces", mp3_stream=True,
      connect=(("audio_format", "mp3"),)),
    D("agent-pcm-24k", "agent PCM at 24 kHz, set by the user", agent_rate=24_000,
      connect=(("agent_sample_rate", 24_000),)),
    D("agent-pcm-8k", "agent PCM at 8 kHz, set by the user", agent_rate=8_000,
      connect=(("agent_sample_rate", 8_000),)),
    D("agent-rate-announced", "agent PCM at 24 kHz announced in each frame", agent_rate=24_000,
      announce_rate=True),
    D("agent-rate-unannounced", "agent PCM at 24 kHz, nobody says so: the client warns", agent_rate=24_000,
      check_reply_audio=False, expect_warning="alignment"),
    D("binary-audio", "agent audio in binary WebSocket frames", binary_audio=True),
    D("text-pieces-in-voice", "voice asked for, the reply streamed as text pieces (the service's speech failed)",
      text_in_voice=True),
    D("text-pieces-in-voice-no-full-message", "text pieces in voice mode, interaction-complete without full_message",
      text_in_voice=True, full_message=False),
    D("base64-lines", "base64 audio with a line break every 76 characters (MIME, Python's encodebytes)",
      base64_form="lines"),
    D("base64-url-safe", "base64 audio in the URL-safe alphabet", base64_form="url-safe"),
    D("base64-unpadded", "base64 audio without its = padding", base64_form="unpadded"),
    D("base64-data-uri", "base64 audio as a data URI (data:audio/pcm;base64,...), as FileReader writes it",
      base64_form="data-uri"),
    # --- errors ----------------------------------------------------------------------------------------
    D("error-code-string", "http_error_code as a string", error_code_as_string=True,
      expect_fail=(("say1", "400"),)),
    D("error-400-mid-reply", "a recoverable 400 in the middle of a reply", error_mid_reply=True),
    D("error-repeats-token", "server.error that repeats the token", error_repeats_token=True,
      expect_fail=(("say1", "400"),)),
    # --- more than the contract says -------------------------------------------------------------------
    D("unknown-frame-types", "frame types this client does not know", unknown_frames=True),
    D("types-snake-case", "type names in snake case (server.new_message)", type_spelling="snake"),
    D("types-camel-case", "type names in camel case without the prefix (newMessage)", type_spelling="camel"),
    D("types-camel-case-vad", "camel-case type names, server VAD on (vadSpeechEnded)", scenario="vad",
      type_spelling="camel"),
    D("frames-batched", "up to 4 frames in one message, one per line, as a batching gateway sends them",
      batch=4),
    D("frames-batched-vad", "frames batched in one message, server VAD on", scenario="vad", batch=3),
    D("extra-fields", "extra keys on every frame", extra_fields=True),
    D("wire-key-named-extra", "a wire key literally named 'extra'", wire_key_extra=True),
    D("lone-surrogate", "half an emoji (a lone UTF-16 surrogate) in the agent's text", lone_surrogate=True),
    D("filler-interleaved", "filler pieces interleaved with the answer's", filler_interleaved=True),
    D("action-as-string", "current-agent-action whose action is a string", action_shape="string"),
    D("action-without-type", "current-agent-action whose action has no type", action_shape="no-type"),
    # --- text responses --------------------------------------------------------------------------------
    D("text-omit-defaults", "text responses with every false / 0 field omitted", scenario="text",
      omit_defaults=_ALL_DEFAULTS, connect=(("response_format", "text"), ("audio_format", None))),
    D("text-without-full-message", "text responses, interaction-complete without full_message", scenario="text",
      full_message=False, connect=(("response_format", "text"), ("audio_format", None))),
    # --- VAD -------------------------------------------------------------------------------------------
    D("vad-as-documented", "server VAD as our C rows say", scenario="vad"),
    D("vad-ack-without-field", "vad-mode-switched without vad_mode_on", scenario="vad", vad_ack_field=False),
    D("vad-events-without-audio-ms", "VAD events without audio_ms", scenario="vad", vad_audio_ms=False),
    # --- close codes and reconnects --------------------------------------------------------------------
    D("close-1001", "going away after a turn", scenario=_RECONNECT, close_after_first_turn=1001),
    D("close-1006", "the connection drops after a turn", scenario=_RECONNECT, close_after_first_turn=1006),
    D("close-1011", "internal error after a turn", scenario=_RECONNECT, close_after_first_turn=1011),
    D("close-1012", "service restart (1012) after a turn", scenario=_RECONNECT, close_after_first_turn=1012),
    D("close-1013", "try again later (1013) after a turn", scenario=_RECONNECT, close_after_first_turn=1013),
    D("close-4503", "service unavailable (4503) after a turn", scenario=_RECONNECT, close_after_first_turn=4503),
    D("close-1000", "a normal close (1000) after a turn, the conversation not completed (an idle limit)",
      scenario=_RECONNECT, close_after_first_turn=1000, expect_fail=(("say2", "session.reconnect()"),)),
    D("continue-ack-renamed", "continue answered by server.conversation-resumed", scenario=_RECONNECT,
      close_after_first_turn=1001, continue_ack="server.conversation-resumed"),
    D("non-hex-conversation-id", "conversation ids that are not 24 hex", scenario=_RECONNECT,
      close_after_first_turn=1001, conversation_id="conv_2026-11-30/abc.DEF"),
    D("drop-on-first-turn", "the socket drops as the first turn arrives, before any answer", scenario=_RECONNECT,
      drop_on_first_turn=True),
    D("drop-mid-reply", "the socket drops half way through a reply", scenario=_RECONNECT, drop_mid_reply=True,
      expect_fail=(("say1", "1006"),)),
    # --- silence ---------------------------------------------------------------------------------------
    D("black-hole", "the link swallows everything after the greeting, pings included", scenario=_RECONNECT,
      black_hole_after_greeting=True, connect=(("response_timeout", 2.0),), expect_fail=(("say1", "no answer"),)),
    D("silence-after-user-message", "user-message-available, then nothing", scenario=_RECONNECT,
      silence_after_user_message=True, connect=(("response_timeout", 2.0),),
      expect_fail=(("say1", "interaction-complete"),)),
    D("finish-ignored", "finish-conversation is never answered and the socket stays open", scenario="finish",
      finish_ignored=True, connect=(("response_timeout", 2.0),)),
]

DEVIATIONS = {d.name: d for d in DEVIATION_LIST}
assert len(DEVIATIONS) == len(DEVIATION_LIST), "deviation names must be unique"
