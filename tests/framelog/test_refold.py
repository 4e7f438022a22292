"""feed_row: the one rule by which log rows are replayed into the protocol's fold (analysis and widgets alike)."""

import base64
import json

import pandas as pd
import pytest

from amigo_lab import protocol as p
from amigo_lab.framelog import FrameLog, feed_row, frame_of_row
from amigo_lab.protocol.fold import Fold

PCM = bytes(3200)  # 100 ms of PCM16 16 kHz
B64 = base64.b64encode(PCM).decode()


def _session():
    """(direction, frame or wire text or local kind, audio bytes, local fields) of a voice session with VAD,
    an action, a filler, a deviating greeting, an error and a close."""
    piece = {"type": "server.new-message", "message": B64}
    return [
        ("local", "connection.opened", None, {}),
        ("sent", p.StartConversation(service_id="a" * 24), None, {}),
        ("received", '{"type":"server.conversation-created","conversation_id":"not-hex-42"}', None, {}),
        ("received", json.dumps({**piece, "message_id": "g", "transcript_alignment": [[0, "H"], [50, "i"]]}),
         PCM, {}),
        ("received", '{"type":"server.interaction-complete","message_id":"g","interaction_id":"i0"}', None, {}),
        ("local", "playback.finished", None, {"message_id": "g", "played_ms": 100.0}),
        ("sent", p.SwitchVadMode(vad_mode_on=True), None, {}),
        ("received", p.VadModeSwitched(vad_mode_on=True), None, {}),
        *[("sent", p.NewAudioMessage.from_bytes(PCM), PCM, {}) for _ in range(5)],
        ("received", p.VadSpeechStarted(audio_ms=100.0), None, {}),
        ("received", p.VadSpeechEnded(audio_ms=400.0), None, {}),
        ("received", p.CurrentAgentAction(action={"type": "action-too-long", "filler": "One moment"}), None, {}),
        ("received", json.dumps({**piece, "message_id": "f", "stop": True}), PCM, {}),
        ("received", p.UserMessageAvailable(message_id="u1", user_message="what are your hours"), None, {}),
        *[("received", json.dumps({**piece, "message_id": "m1", "sequence_number": n, "stop": n == 2}), PCM, {})
          for n in range(3)],
        ("received", p.InteractionComplete(message_id="m1", interaction_id="i1", full_message="Nine to five",
                                           conversation_completed=False), None, {}),
        ("sent", p.NewTextMessage(text="thanks"), None, {}),
        ("received", '{"type":"server.error","http_error_code":"503","error_description":"agent down"}', None, {}),
        ("local", "connection.closed", None, {"close_code": 1006, "close_reason": "gone"}),
    ]


@pytest.fixture
def recorded(tmp_path):
    """The session's log rows, and the account of a fold fed as the live session feeds it."""
    log = FrameLog(tmp_path / "session")
    live = Fold(response_format="voice", audio_format="pcm")
    events = []
    for direction, item, audio, fields in _session():
        if direction == "local":
            entry = log.record_local(item, **fields)
            live.feed_local(item, entry["t"], **fields)
        else:
            frame = p.parse(item) if isinstance(item, str) else item
            entry = log.record(direction, frame, raw=item if isinstance(item, str) else None, audio_bytes=audio,
                               audio_format="pcm" if audio is not None else None)
            live.feed(direction, frame, entry["t"], audio_ms=100.0 if audio is not None else None)
        events.extend(live.events_received())
    frames = log.to_dataframe()
    log.close()
    return frames.to_dict("records"), (events, live.interactions())


@pytest.fixture
def rows(recorded):
    return recorded[0]


def _fold(rows, **kwargs):
    fold = Fold(response_format="voice", audio_format="pcm")
    events = []
    for row in rows:
        assert feed_row(fold, row, **kwargs)
        events.extend(fold.events_received())
    return events, fold.interactions()


def test_rows_fold_as_the_live_session_folded_them_with_or_without_their_wire_text(recorded):
    rows, live = recorded
    assert [r.kind for r in live[1]] == ["greeting", "voice", "text"]
    assert _fold(rows) == live
    assert _fold([{k: v for k, v in row.items() if k != "wire"} for row in rows]) == live


def test_a_control_frame_rebuilt_from_its_columns_is_the_frame_that_was_sent(rows):
    for row in rows:
        if row["direction"] == "local" or pd.notna(row["audio_bytes"]):
            continue  # audio rows are rebuilt without their audio, which the fold does not read
        parsed = p.parse(row["wire"])
        rebuilt = frame_of_row({k: v for k, v in row.items() if k != "wire"})
        assert type(rebuilt) is type(parsed), row["type"]
        if not isinstance(parsed, (p.StartConversation, p.ContinueConversation)):  # ids replaced: not read
            assert rebuilt == parsed, row["type"]


def test_a_row_fed_with_its_live_frame_folds_as_the_live_session_did(recorded):
    rows, live = recorded
    frames = [p.parse(row["wire"]) if row["direction"] != "local" else None for row in rows]
    without_wire = [{k: v for k, v in row.items() if k != "wire"} for row in rows]
    fold = Fold(response_format="voice", audio_format="pcm")
    events = []
    for row, frame in zip(without_wire, frames, strict=True):
        assert feed_row(fold, row, frame=frame)
        events.extend(fold.events_received())
    assert (events, fold.interactions()) == live


def test_rows_that_say_nothing_are_passed_over_and_unrebuildable_ones_reported():
    fold = Fold()
    assert feed_row(fold, {"direction": "sent", "type": "client.new-text-message", "t": None})
    assert feed_row(fold, {"direction": "elsewhere", "type": "x", "t": 1.0})
    assert not feed_row(fold, {"direction": "sent", "type": "client.new-text-message", "t": 1.0,
                               "message_type": "user-message"})  # its text is missing
    assert fold.events_received() == []


def test_an_agent_piece_without_audio_in_the_log_is_text_even_in_a_voice_fold():
    # A voice session whose service sent text pieces (its speech failed): the live fold and any replay read text.
    fold = Fold(response_format="voice", audio_format="pcm")
    rows = [
        {"direction": "local", "type": "connection.opened", "t": 0.0},
        {"direction": "sent", "type": "client.new-text-message", "t": 0.1,
         "wire": '{"type":"client.new-text-message","text":"hi","message_type":"user-message"}'},
        {"direction": "received", "type": "server.new-message", "t": 0.2, "audio_bytes": None,
         "wire": '{"type":"server.new-message","message":"Sure, one moment.","message_id":"m","stop":true}'},
        {"direction": "received", "type": "server.interaction-complete", "t": 0.3,
         "wire": '{"type":"server.interaction-complete","message_id":"m","interaction_id":"i"}'},
    ]
    for row in rows:
        assert feed_row(fold, row, key="turn-1" if row["direction"] == "sent" else None)
    (record,) = [r for r in fold.interactions() if r.kind == "text"]
    assert record.reply_text == "Sure, one moment." and record.latencies["latency_first_audio_ms"] is None
