"""frames_view(): audio runs folded, a compact column set, type filters, the full table one option away."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from amigo_lab import audio
from amigo_lab.framelog import VIEW_COLUMNS, FrameLog, FrameLogError, frames_view
from amigo_lab.protocol import (
    InteractionComplete,
    NewAudioMessage,
    NewMessage,
    NewTextMessage,
    ServerError,
    VadSpeechEnded,
    VadSpeechStarted,
)


@pytest.fixture
def frames(tmp_path):
    log = FrameLog(tmp_path / "s")
    chunk = audio.float_to_pcm16(np.zeros(320, dtype=np.float32))  # 20 ms
    piece = audio.float_to_pcm16(np.zeros(2560, dtype=np.float32))  # 160 ms
    log.record("received", VadSpeechStarted(audio_ms=100))
    for _ in range(250):
        log.record("sent", NewAudioMessage.from_bytes(chunk), audio_bytes=chunk, audio_format="pcm")
    log.record("received", VadSpeechEnded(audio_ms=5000))
    for n in range(6):  # agent pieces interleaved with the microphone's chunks: two runs, neither broken
        log.record("received", NewMessage.audio_piece(piece, stop=n == 5, sequence_number=n, message_id="m1"),
                   audio_bytes=piece, audio_format="pcm")
        for _ in range(8):
            log.record("sent", NewAudioMessage.from_bytes(chunk), audio_bytes=chunk, audio_format="pcm")
    log.record("received", InteractionComplete(message_id="m1", interaction_id="i1", full_message="We open at nine",
                                               conversation_completed=False))
    log.record("received", ServerError(http_error_code=400, error_description="bad frame"))
    log.record("sent", NewTextMessage(text="thanks"))
    log.record_local("playback.finished", message_id="m1", played_ms=960.0)
    frame = log.to_dataframe()
    log.close()
    return frame


def test_audio_runs_fold_into_one_row_each(frames):
    view = frames_view(frames)
    assert list(view.columns) == list(VIEW_COLUMNS)
    assert len(frames) == 1 + 250 + 1 + 6 * 9 + 4 and len(view) == 9
    assert list(view["type"]) == [
        "server.vad-speech-started", "client.new-audio-message", "server.vad-speech-ended", "server.new-message",
        "client.new-audio-message", "server.interaction-complete", "server.error", "client.new-text-message",
        "playback.finished"]
    assert list(view["summary"].iloc[[1, 3, 4]]) == ["audio ×250, 5.0 s", "audio ×6, 1.0 s", "audio ×48, 1.0 s"]
    assert list(view["n"].iloc[[1, 3, 4]]) == [250, 6, 48]
    assert view["message_id"].iloc[3] == "m1" and pd.isna(view["message_id"].iloc[1])
    assert view["seq"].iloc[1] == 1 and view["t"].iloc[1] == frames["t"].iloc[1]  # a run sits at its first entry
    summaries = dict(zip(view["type"], view["summary"], strict=True))
    assert summaries["server.vad-speech-ended"] == "at 5000 ms"
    assert summaries["server.interaction-complete"] == "We open at nine"
    assert summaries["server.error"] == "400 bad frame"
    assert summaries["playback.finished"] == "played 960 ms"


def test_include_and_exclude_filter_by_type_and_audio(frames):
    assert list(frames_view(frames, exclude="audio")["type"]) == [
        "server.vad-speech-started", "server.vad-speech-ended", "server.interaction-complete", "server.error",
        "client.new-text-message", "playback.finished"]
    assert list(frames_view(frames, include="server.vad-*")["type"]) == [
        "server.vad-speech-started", "server.vad-speech-ended"]
    only = frames_view(frames, include=["server.*"], exclude=["server.error", "audio"])
    assert "server.error" not in set(only["type"]) and "server.new-message" not in set(only["type"])


def test_the_full_table_is_one_option_away(frames):
    full = frames_view(frames, full=True, exclude="playback.*")
    assert list(full.columns) == list(frames.columns) and len(full) == len(frames) - 1
    unfolded = frames_view(frames, fold_audio=False)
    assert len(unfolded) == len(frames) and unfolded["summary"].iloc[1] == "audio 0.02 s"


def test_bad_input_is_named(frames):
    with pytest.raises(FrameLogError, match="frame-log DataFrame"):
        frames_view([1, 2, 3])
    with pytest.raises(FrameLogError, match="include takes"):
        frames_view(frames, include=3)
