"""The frame log: an append-only, durable record of every frame of a session, and its reader.

A recorded session is a folder::

    DIR/meta.json           lab version, url (never a token), org, region, service_id, formats, started_at, clock
                            note, ``fast`` (true when audio went faster than real time), ``parquet`` (what the
                            Parquet file covers)
    DIR/frames.jsonl        one JSON object per entry: the envelope (seq, t, wall, direction, type, size, audio
                            reference), the exact wire text in ``wire``, and the columns projected from it
    DIR/audio-sent.bin      raw wire audio (pcm or mp3, as sent) of client.new-audio-message frames, concatenated
    DIR/audio-received.bin  raw wire audio of agent audio pieces and binary messages, concatenated
    DIR/frames.parquet      the DataFrame, written on close() (and by export_parquet())

What the log keeps. Every message the wire delivers is an entry: a frame that parses (its columns filled), a
text that does not (``client.invalid-frame``, the text whole in ``wire``, never truncated), a binary message
(``binary``, its bytes kept as audio). A string holding a lone UTF-16 surrogate (valid JSON such as
``"\\ud83d"``, not valid Unicode) is still logged: the ``wire`` text keeps the escape as sent, projected
columns show U+FFFD, and ``flags`` says ``invalid-unicode``. Local entries (``connection.*``, ``playback.*``,
``client.protocol-violation``, ...) are typed: :data:`LOCAL_KINDS` lists each kind and the columns it sets.
Tokens never reach the disk: every string passes through :func:`amigo_lab.protocol.redact` with the secrets
the log was given (the ``wire`` text too, so it is verbatim except for tokens).

Durability. Each line of ``frames.jsonl`` and its audio are written and flushed to the operating system
before :meth:`FrameLog.record` returns, so a crash of the process loses nothing that was recorded; they are
not fsynced, so a power cut or kernel crash can lose the last entries. ``FrameLog(fsync=True)`` fsyncs each
entry for those who need that (slower). A torn last line (the entry being written when the writer died, even
cut inside a multi-byte character) is dropped on load; every earlier line is read. ``frames.parquet`` is
written only on :meth:`FrameLog.close` (off the event loop when closed from one), and used on load only
when it covers every line of the JSONL.

Memory and speed. Entries are not kept in memory: :meth:`FrameLog.to_dataframe` and :func:`load_session`
build the DataFrame from disk on demand (the Parquet when complete, else a vectorised JSONL reader).

Each entry has the columns of :data:`COLUMNS`, in that order; :meth:`FrameLog.to_dataframe` and
:func:`load_session` give the same DataFrame (pandas nullable dtypes, null where a column does not apply).
Times: ``t`` is seconds on ``time.monotonic()`` since the log started, ``wall`` the UTC system clock.

Write with :class:`FrameLog` (a session does it for you); read with :func:`load_session`, then
:func:`frames_view` for a readable table, :attr:`RecordedSession.frames` for analysis and
:meth:`RecordedSession.audio_track` to listen. :func:`feed_row` feeds a row to the protocol's fold, by the
one rule the live session, the analysis and the widgets all use.
"""

from amigo_lab.framelog._reader import entries_to_dataframe, read_parquet
from amigo_lab.framelog._refold import feed_row, frame_of_row
from amigo_lab.framelog._schema import (
    AUDIO_FILES,
    BINARY_FRAME,
    CLOCK_NOTE,
    COLUMNS,
    DIRECTIONS,
    FLAG_BINARY,
    FLAG_INVALID_UNICODE,
    FLAG_RESERIALIZED,
    FLAG_UNPARSED,
    FRAMES_FILE,
    INVALID_FRAME,
    LOCAL_EVENT_TYPES,
    LOCAL_KINDS,
    META_FILE,
    PARQUET_FILE,
    FrameLogError,
    LocalKind,
    default_sessions_dir,
    pcm_ms,
    register_local_kind,
    wire_audio_ms,
)
from amigo_lab.framelog._session import RecordedSession, load_session
from amigo_lab.framelog._view import AUDIO, VIEW_COLUMNS, frames_view
from amigo_lab.framelog._writer import Entry, FrameLog

__all__ = [
    "AUDIO", "AUDIO_FILES", "BINARY_FRAME", "CLOCK_NOTE", "COLUMNS", "DIRECTIONS", "FLAG_BINARY",
    "FLAG_INVALID_UNICODE", "FLAG_RESERIALIZED", "FLAG_UNPARSED", "FRAMES_FILE", "INVALID_FRAME",
    "LOCAL_EVENT_TYPES", "LOCAL_KINDS", "META_FILE", "PARQUET_FILE", "VIEW_COLUMNS",
    "Entry", "FrameLog", "FrameLogError", "LocalKind", "RecordedSession",
    "default_sessions_dir", "entries_to_dataframe", "feed_row", "frame_of_row", "frames_view", "load_session",
    "pcm_ms", "read_parquet",
    "register_local_kind", "wire_audio_ms",
]
