"""Agent audio put together piece by piece (no socket): an MP3 stream cut into pieces is decoded once per
reading, not once per piece."""

from __future__ import annotations

import itertools

import numpy as np

from amigo_lab import audio
from amigo_lab.session import agent_audio
from amigo_lab.session.agent_audio import MessageAudio


def _stream_pieces(seconds: float = 3.0, pieces: int = 30) -> list[bytes]:
    t = np.arange(int(seconds * 16000)) / 16000
    mp3 = audio.encode_mp3(audio.float_to_pcm16(0.3 * np.sin(2 * np.pi * 220 * t).astype(np.float32)), sr=16000)
    cut = np.linspace(0, len(mp3), pieces + 1).astype(int)
    # Cuts at arbitrary bytes: after the first, no piece starts an MP3 frame, so the message is one stream.
    return [mp3[a:b] for a, b in itertools.pairwise(cut)]


def test_an_mp3_stream_is_not_decoded_again_for_every_piece(monkeypatch):
    decodes = []
    real = audio.decode_mp3

    def counting(data, **kwargs):
        decodes.append(len(data))
        return real(data, **kwargs)

    monkeypatch.setattr(agent_audio._audio, "decode_mp3", counting)
    message = MessageAudio("mp3", 16000)
    for index, piece in enumerate(_stream_pieces()):
        # Alignment times count from the message's start, as protocol.md's rows show them.
        message.add_alignment(((index * 100.0, "a"), (index * 100.0 + 50, "b")), lambda: message.duration_ms)
        message.add(piece)
    assert message.mp3_stream
    before = len(decodes)
    first = message.samples()
    again = message.samples()
    assert again is first and len(decodes) == before + 1
    assert abs(first.size / 16000 - 3.0) < 0.1
    assert before <= 2      # the pieces tried alone before the switch to one stream; none per piece after


def test_alignment_that_restarts_per_piece_still_finds_each_piece_start():
    message = MessageAudio("mp3", 16000)
    for piece in _stream_pieces(pieces=6):
        message.add_alignment(((0.0, "a"), (400.0, "b")), lambda: message.duration_ms)
        message.add(piece)
    # Six pieces of 0.5 s, each alignment counting from its own start: the span ends near 2.9 s, not 0.4 s.
    assert message.disagreement() is None
    assert message._align_end_ms > 2500
