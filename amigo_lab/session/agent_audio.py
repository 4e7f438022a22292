"""The agent's audio of one message, put together piece by piece, whatever the service's pieces look like.

protocol.md's C rows say agent audio is PCM16 or MP3 at 16 000 Hz, each MP3 piece decodable alone. A real
service may differ, and a secondary oddity must never cost the audio:

- **sample rate**: PCM at another rate (``connect(agent_sample_rate=...)``, or a ``sample_rate`` a frame
  announces) is kept at that rate and resampled to 16 kHz once per message, so pieces join without seams;
- **odd PCM byte counts**: a piece that ends half way through a sample carries its last byte to the next piece;
- **MP3 as one stream cut into pieces**: when a piece does not start an MP3 stream or does not decode alone,
  the message's bytes are decoded as one stream;
- **alignment against audio**: the span of ``transcript_alignment`` is compared with the audio's duration; a
  large disagreement usually means a wrong sample rate, and :meth:`MessageAudio.disagreement` says so.

Runs on the session's loop thread; no I/O.

Decoded MP3 samples are shared, never decoded again: :func:`on_decoded` lets a display (the live timeline's
level meter and waveform) see each MP3 piece's samples as they are decoded here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from amigo_lab import audio as _audio

SAMPLE_RATE = _audio.SAMPLE_RATE
#: Alignment span / audio duration outside this range is reported (trailing silence stays well inside it).
SPAN_RATIO_RANGE = (0.75, 1.25)
#: Messages shorter than this are too short to judge the alignment span against.
MIN_SPAN_CHECK_MS = 300.0


DecodedListener = Callable[["MessageAudio", "bytes | None", "np.ndarray | None"], object]
_decoded_listeners: list[DecodedListener] = []


def on_decoded(callback: DecodedListener) -> Callable[[], None]:
    """Call ``callback(message, piece, samples)`` as agent MP3 audio is decoded; returns a remover.

    ``piece`` is the bytes object :meth:`MessageAudio.add` got (the one the frame's ``audio_bytes()``
    returns, so a caller holding the frame can tell which piece it is by identity) and ``samples`` its
    float32 samples at 16 kHz. A message decoded as one stream reports each piece with ``samples=None`` when
    it is kept, then ``piece=None`` with the whole message so far each time the stream is decoded. Runs on
    the thread that decodes (the session's loop): keep it short; exceptions are logged and swallowed.
    """
    _decoded_listeners.append(callback)
    return lambda: _decoded_listeners.remove(callback) if callback in _decoded_listeners else None


def _tell(message: MessageAudio, piece: bytes | None, samples: np.ndarray | None) -> None:
    for listener in list(_decoded_listeners):
        try:
            listener(message, piece, samples)
        except Exception:  # a display's bug never costs the audio
            logging.getLogger(__name__).exception("an on_decoded callback failed")


def _starts_mp3_stream(data: bytes) -> bool:
    """True when ``data`` begins an MP3 stream (an ID3 tag or an MPEG frame sync)."""
    return data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)


class MessageAudio:
    """The audio of one agent message. Feed each piece's bytes to :meth:`add`; read :meth:`samples`."""

    def __init__(self, audio_format: str, rate: int) -> None:
        self.audio_format = audio_format
        self.rate = int(rate)
        self._carry = b""
        self._pcm: list[np.ndarray] = []          # PCM at self.rate
        self._mp3_pieces: list[np.ndarray] = []   # MP3 pieces decoded alone, at 16 kHz
        self._mp3_bytes = bytearray()
        self._stream_decoded: tuple[int, np.ndarray] | None = None   # (bytes decoded, samples)
        self.mp3_stream = False
        self.notes: list[str] = []
        self._align_end_ms = 0.0
        self._align_offset_ms = 0.0
        self._align_last_ms = -1.0

    def add(self, data: bytes, *, rate: int | None = None) -> None:
        """Add one piece's wire bytes (``rate``: the rate a frame announced for PCM, if any)."""
        if rate and rate != self.rate and not self._pcm:
            self.rate = int(rate)
        if self.audio_format == "mp3":
            self._add_mp3(data)
            return
        data = self._carry + data
        whole = len(data) // 2 * 2
        self._carry = data[whole:]
        if whole:
            self._pcm.append(_audio.pcm16_to_float(data[:whole]))

    def _add_mp3(self, data: bytes) -> None:
        if not data:
            return
        self._mp3_bytes += data
        if self.mp3_stream:
            _tell(self, data, None)
            return
        if not _starts_mp3_stream(data):
            self._to_stream("a piece does not start an MP3 stream")
            _tell(self, data, None)
            return
        try:
            samples = _audio.decode_mp3(data, sr=SAMPLE_RATE)
        except _audio.AudioError:
            self._to_stream("a piece does not decode alone")
            _tell(self, data, None)
            return
        self._mp3_pieces.append(samples)
        _tell(self, data, samples)

    def _to_stream(self, why: str) -> None:
        self.mp3_stream = True
        self._mp3_pieces = []
        self.notes.append(f"MP3 pieces decoded as one stream per message ({why})")

    def add_alignment(self, pairs: tuple[tuple[float, str], ...] | None,
                      piece_start_ms: Callable[[], float]) -> None:
        """Note a piece's alignment; times may count from the message's start or from the piece's.

        ``piece_start_ms()`` gives where this piece starts in the message; it is asked only when the times
        restart, because for an MP3 stream it means decoding the message so far."""
        if not pairs:
            return
        first = float(pairs[0][0])
        if first + 1.0 < self._align_last_ms:
            self._align_offset_ms = piece_start_ms()  # times restart: they count from this piece's start
        for ms, _char in pairs:
            self._align_last_ms = float(ms)
            self._align_end_ms = max(self._align_end_ms, float(ms) + self._align_offset_ms)

    @property
    def duration_ms(self) -> float:
        """The audio so far, in milliseconds."""
        if self.audio_format == "mp3":
            if self.mp3_stream:
                return self.samples().size * 1000.0 / SAMPLE_RATE
            return sum(p.size for p in self._mp3_pieces) * 1000.0 / SAMPLE_RATE
        return sum(p.size for p in self._pcm) * 1000.0 / self.rate

    def samples(self) -> np.ndarray:
        """The whole message so far as float32 at 16 kHz."""
        if self.audio_format == "mp3":
            if self.mp3_stream:
                if self._stream_decoded is not None and self._stream_decoded[0] == len(self._mp3_bytes):
                    return self._stream_decoded[1]      # nothing new since the last decode
                try:
                    whole = _audio.decode_mp3(bytes(self._mp3_bytes), sr=SAMPLE_RATE)
                    self._stream_decoded = (len(self._mp3_bytes), whole)
                    _tell(self, None, whole)
                    return whole
                except _audio.AudioError as exc:
                    self.notes.append(f"the message's MP3 stream does not decode: {exc}")
                    return np.zeros(0, np.float32)
            pieces = self._mp3_pieces
            return np.concatenate(pieces).astype(np.float32, copy=False) if pieces else np.zeros(0, np.float32)
        if not self._pcm:
            return np.zeros(0, np.float32)
        joined = np.concatenate(self._pcm)
        if self.rate != SAMPLE_RATE:
            joined = _audio.resample(joined, sr_in=self.rate, sr_out=SAMPLE_RATE)
        return joined.astype(np.float32, copy=False)

    def disagreement(self) -> str | None:
        """A sentence when the alignment span and the audio duration disagree, else None."""
        duration = self.duration_ms
        span = self._align_end_ms
        if span <= 0 or duration < MIN_SPAN_CHECK_MS:
            return None
        ratio = span / duration
        low, high = SPAN_RATIO_RANGE
        if low <= ratio <= high:
            return None
        return (f"the transcript alignment spans {span:.0f} ms but the audio lasts {duration:.0f} ms at "
                f"{self.rate} Hz; if the agent speaks at another rate, pass connect(agent_sample_rate=...)")
