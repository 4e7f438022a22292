"""The analysis and a live fold give the same account of the same frames, through a real frame log."""

import base64
import json
import math

import pytest

from amigo_lab import analysis
from amigo_lab import protocol as p
from amigo_lab.analysis._frames import replay
from amigo_lab.framelog import FrameLog
from amigo_lab.protocol.fold import LATENCIES, Fold

PCM = bytes(3200)  # 100 ms of PCM16 16 kHz
B64 = base64.b64encode(PCM).decode()


def deviating_session():
    """(direction, wire text or frame, audio bytes) in order: a session whose server deviates from the C rows."""
    return [
        ("local", "connection.opened", None),
        ("sent", p.StartConversation(service_id="a" * 24), None),
        ("received", '{"type":"server.conversation-created","conversation_id":"not-hex-42"}', None),
        # A greeting whose pieces omit stop and sequence_number, with a vendor-style alignment.
        ("received", json.dumps({"type": "server.new-message", "message": B64, "message_id": "g",
                                 "transcript_alignment": {"chars": ["H", "i"], "charStartTimesMs": [0, 50]}}), PCM),
        ("received", json.dumps({"type": "server.new-message", "message": B64, "message_id": "g",
                                 "transcript_alignment": [{"char": "!", "start_ms": 0}]}), PCM),
        ("received", '{"type":"server.interaction-complete","message_id":"g","interaction_id":"i0"}', None),
        ("sent", p.NewTextMessage(text="what are your hours"), None),
        # Agent output before the transcript; an unreadable alignment keeps the audio.
        ("received", json.dumps({"type": "server.new-message", "message": B64, "message_id": "m1",
                                 "sequence_number": 1, "transcript_alignment": "??"}), PCM),
        ("received", ('{"type":"server.user-message-available","message_id":"u1","user_message":"what are your '
                      'hours"}'), None),
        ("received", '{"type":"server.error","http_error_code":"400","error_description":"bad chunk"}', None),
        ("received", json.dumps({"type": "server.new-message", "message": B64, "message_id": "m1",
                                 "sequence_number": 2, "stop": True}), PCM),
        ("received", ('{"type":"server.interaction-complete","message_id":"m1","interaction_id":"i1",'
                      '"full_message":"Nine to five"}'), None),
        ("sent", p.NewTextMessage(text="thanks"), None),
        ("received", '{"type":"server.error","http_error_code":"503","error_description":"agent down"}', None),
        ("local", "connection.closed", None),
    ]


def record_and_fold(tmp_path):
    log = FrameLog(tmp_path / "session")
    fold = Fold(response_format="voice")
    for direction, item, audio in deviating_session():
        if direction == "local":
            fields = {"close_code": 1006} if item == "connection.closed" else {}
            entry = log.record_local(item, **fields)
            fold.feed_local(item, entry["t"], **fields)
            continue
        frame = p.parse(item) if isinstance(item, str) else item
        entry = log.record(direction, frame, raw=item if isinstance(item, str) else None, audio_bytes=audio,
                           audio_format="pcm" if audio is not None else None)
        fold.feed(direction, frame, entry["t"], audio_ms=100.0 if audio is not None else None)
    frames = log.to_dataframe()
    log.close()
    return frames, fold


def test_the_analysis_replays_the_same_account_as_the_live_fold(tmp_path):
    frames, live = record_and_fold(tmp_path)
    offline = replay(frames).interactions
    assert [r.status for r in offline] == ["completed", "completed", "voided"]
    for mine, theirs in zip(live.interactions(), offline, strict=True):
        assert (mine.kind, mine.status, mine.reply_text, mine.answer_message_id, mine.user_text) == \
            (theirs.kind, theirs.status, theirs.reply_text, theirs.answer_message_id, theirs.user_text)
        assert mine.reply_audio_ms == theirs.reply_audio_ms
        for name in LATENCIES:
            assert mine.latencies[name] == pytest.approx(theirs.latencies[name]), name


def test_deviations_keep_the_audio_and_end_every_turn(tmp_path):
    frames, _ = record_and_fold(tmp_path)
    table = analysis.turns(frames)
    assert list(table["status"]) == ["complete", "complete", "error"]
    greeting, answered, failed = (table.iloc[i] for i in range(3))
    assert greeting["reply_audio_ms"] == 200.0 and greeting["reply_text"] == "Hi!"  # no full_message: the alignments
    assert answered["reply_audio_ms"] == 200.0 and answered["reply_text"] == "Nine to five"
    assert answered["transcript"] == "what are your hours" and not math.isnan(answered["latency_first_audio_ms"])
    assert failed["error"] == "503: agent down"


def test_latency_definitions_are_reachable_from_the_analysis():
    for name in analysis.LATENCY_METRICS:
        assert analysis.latency_definition(name).startswith("from ")
    with pytest.raises(analysis.AnalysisError, match="not a latency"):
        analysis.latency_definition("latency_ms")


def test_agent_audio_in_binary_messages_counts_as_a_piece_of_the_open_message(tmp_path):
    log = FrameLog(tmp_path / "binary")
    log.record_local("connection.opened")
    log.record("sent", p.StartConversation(service_id="a" * 24))
    log.record("received", p.ConversationCreated(conversation_id="c" * 24))
    log.record("received", None, raw=PCM, audio_format="pcm", message_id="g")
    log.record("received", p.InteractionComplete(message_id="g", interaction_id="i0", full_message="Hi"))
    frames = log.to_dataframe()
    log.close()
    assert "binary" in set(frames["type"])
    row = analysis.turns(frames).iloc[0]
    assert row["reply_audio_ms"] == 100.0 and row["reply_text"] == "Hi"


def test_a_row_that_cannot_be_rebuilt_is_counted_not_fatal():
    from .logs import Log

    log = Log().opened(0.0).start(0.1)
    log.add(0.5, "sent", "client.new-text-message", message_type="user-message")  # its text is missing
    replayed = replay(log.frames())
    assert replayed.skipped == 1 and [r.kind for r in replayed.interactions] == ["greeting"]
