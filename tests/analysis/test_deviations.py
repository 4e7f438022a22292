"""Server deviations from protocol.md's C rows, recorded through a real frame log: the analysis loses no audio,
ends every turn, and gives the same account as the live fold."""

from __future__ import annotations

import base64
import copy
import json

import pandas as pd
import pytest

from amigo_lab import analysis
from amigo_lab import protocol as p
from amigo_lab.analysis._frames import replay
from amigo_lab.framelog import FrameLog
from amigo_lab.protocol.fold import LATENCIES, Fold

PIECE = bytes(3200)  # 100 ms of PCM16 16 kHz
CHUNK = bytes(640)  # 20 ms
B64 = base64.b64encode(PIECE).decode()


def piece(mid, n, *, stop=False, chars="ab"):
    return {"type": "server.new-message", "message": B64, "message_id": mid, "sequence_number": n, "stop": stop,
            "transcript_alignment": [[i * 40, c] for i, c in enumerate(chars)]}


def base_script():
    """(direction, wire object | frame | local kind, audio bytes): a greeting, a text turn with a filler, a VAD turn."""
    script = [
        ("local", "connection.opened", None),
        ("sent", p.StartConversation(service_id="a" * 24), None),
        ("received", {"type": "server.conversation-created", "conversation_id": "c" * 24}, None),
        ("received", piece("g", 0), PIECE),
        ("received", piece("g", 1, stop=True), PIECE),
        ("received", {"type": "server.interaction-complete", "message_id": "g", "interaction_id": "i0",
                      "full_message": "Hello", "conversation_completed": False}, None),
        ("sent", p.NewTextMessage(text="what are your hours"), None),
        ("received", {"type": "server.user-message-available", "message_id": "u1",
                      "user_message": "what are your hours"}, None),
        ("received", {"type": "server.current-agent-action",
                      "action": {"type": "action-too-long", "filler": "One moment"}}, None),
        ("received", piece("f", 0, stop=True), PIECE),
        *[("received", piece("m1", n, stop=n == 2), PIECE) for n in range(3)],
        ("received", {"type": "server.interaction-complete", "message_id": "m1", "interaction_id": "i1",
                      "full_message": "Nine to five", "conversation_completed": False}, None),
        ("sent", p.SwitchVadMode(vad_mode_on=True), None),
        ("received", {"type": "server.vad-mode-switched", "vad_mode_on": True}, None),
    ]
    for k in range(50):
        script.append(("sent", p.NewAudioMessage.from_bytes(CHUNK), CHUNK))
        if k == 10:
            script.append(("received", {"type": "server.vad-speech-started", "audio_ms": 200}, None))
        if k == 40:
            script.append(("received", {"type": "server.vad-speech-ended", "audio_ms": 700}, None))
    script += [
        ("received", {"type": "server.user-message-available", "message_id": "u2", "user_message": "thanks"}, None),
        *[("received", piece("m2", n, stop=n == 1), PIECE) for n in range(2)],
        ("received", {"type": "server.interaction-complete", "message_id": "m2", "interaction_id": "i2",
                      "full_message": "You are welcome", "conversation_completed": True}, None),
        ("local", "connection.closed", None),
    ]
    return script


def server_objects(script, frame_type=None):
    return [item for direction, item, _ in script
            if direction == "received" and (frame_type is None or item["type"] == frame_type)]


def alignment(shape):
    def apply(script):
        for obj in server_objects(script, "server.new-message"):
            pairs = obj["transcript_alignment"]
            obj["transcript_alignment"] = shape(pairs)
        return script
    return apply


def omit_defaults(script):
    for obj in server_objects(script):
        for key in ("stop", "conversation_completed"):
            if obj.get(key) is False:
                del obj[key]
        if obj.get("sequence_number") == 0:
            del obj["sequence_number"]
    return script


def no_full_message(script):
    for obj in server_objects(script, "server.interaction-complete"):
        del obj["full_message"]
    return script


def move_uma_after_first_piece(script):
    out, held = [], None
    for entry in script:
        item = entry[1]
        if isinstance(item, dict) and item["type"] == "server.user-message-available":
            held = entry
            continue
        out.append(entry)
        if held is not None and isinstance(item, dict) and item["type"] == "server.new-message":
            out.append(held)
            held = None
    return out


def drop(frame_type):
    def apply(script):
        return [e for e in script if not (isinstance(e[1], dict) and e[1]["type"] == frame_type)]
    return apply


def sequence_from_one(script):
    for obj in server_objects(script, "server.new-message"):
        obj["sequence_number"] += 1
    return script


def string_400_mid_reply(script):
    i = next(i for i, e in enumerate(script) if isinstance(e[1], dict) and e[1].get("message_id") == "m1")
    script.insert(i + 1, ("received", {"type": "server.error", "http_error_code": "400",
                                       "error_description": "bad audio chunk"}, None))
    return script


def vad_ack_without_field(script):
    for obj in server_objects(script, "server.vad-mode-switched"):
        del obj["vad_mode_on"]
    return script


def no_greeting(script):
    return [e for e in script if not (isinstance(e[1], dict) and (e[1].get("message_id") == "g"))]


def camel_case(script):
    names = {"message_id": "messageId", "sequence_number": "sequenceNumber", "interaction_id": "interactionId",
             "full_message": "fullMessage", "transcript_alignment": "transcriptAlignment", "audio_ms": "audioMs"}
    for obj in server_objects(script):
        for ours, theirs in names.items():
            if ours in obj:
                obj[theirs] = obj.pop(ours)
    return script


def extra_keys(script):
    for obj in server_objects(script):
        obj["extra"] = {"trace": "t-1"}
        obj["latency_hint_ms"] = 12
    return script


DEVIATIONS = {
    "alignment [char, ms]": alignment(lambda pairs: [[c, ms] for ms, c in pairs]),
    "alignment objects": alignment(lambda pairs: [{"char": c, "start_ms": ms} for ms, c in pairs]),
    "alignment dict of arrays (ms)": alignment(
        lambda pairs: {"chars": [c for _, c in pairs], "charStartTimesMs": [ms for ms, _ in pairs]}),
    "alignment dict of arrays (seconds)": alignment(
        lambda pairs: {"characters": [c for _, c in pairs],
                       "character_start_times_seconds": [ms / 1000 for ms, _ in pairs]}),
    "alignment unreadable": alignment(lambda pairs: "?" * 3000),
    "false and zero fields omitted": omit_defaults,
    "interaction-complete without full_message": no_full_message,
    "user-message-available after the first piece": move_uma_after_first_piece,
    "user-message-available never": drop("server.user-message-available"),
    "sequence_number from 1": sequence_from_one,
    "string 400 in the middle of a reply": string_400_mid_reply,
    "vad-mode-switched without its field": vad_ack_without_field,
    "no greeting": no_greeting,
    "camelCase keys": camel_case,
    "extra keys, one named extra": extra_keys,
}


def record(script, folder):
    log = FrameLog(folder)
    live = Fold(response_format="voice")
    for direction, item, audio in script:
        if direction == "local":
            fields = {"close_code": 1000} if item == "connection.closed" else {}
            entry = log.record_local(item, **fields)
            live.feed_local(item, entry["t"], **fields)
            continue
        raw = json.dumps(item) if isinstance(item, dict) else None
        frame = p.parse(raw) if raw is not None else item
        entry = log.record(direction, frame, raw=raw, audio_bytes=audio, audio_format="pcm" if audio else None)
        live.feed(direction, frame, entry["t"], audio_ms=len(audio) / 32 if audio else None)
    frames = log.to_dataframe()
    log.close()
    return frames, live


@pytest.mark.parametrize("name", list(DEVIATIONS))
def test_every_deviation_keeps_the_audio_ends_every_turn_and_agrees_live_and_offline(name, tmp_path):
    script = DEVIATIONS[name](copy.deepcopy(base_script()))
    frames, live = record(script, tmp_path / "session")
    table = analysis.turns(frames)
    greeting = name != "no greeting"
    assert list(table["status"]) == ["complete"] * 3, table[["status", "error"]]
    assert list(table["user_kind"]) == ["greeting", "text", "voice"]
    expected_audio = [200.0 if greeting else None, 300.0, 200.0]
    for got, want in zip(table["reply_audio_ms"], expected_audio, strict=True):
        assert got == want if want is not None else pd.isna(got)  # the empty greeting has no audio
    text, voice = table.iloc[1], table.iloc[2]
    # Without user-message-available the transcript is what the client sent (none for speech).
    assert text["transcript"] == "what are your hours"
    if name == "user-message-available never":
        assert pd.isna(voice["transcript"]) and pd.isna(voice["user_message_id"])
    else:
        assert voice["transcript"] == "thanks" and voice["user_message_id"] == "u2"
    if not greeting:
        assert table.iloc[0]["reply_text"] == ""
    assert voice["vad_end_t"] == pytest.approx(voice["user_end_t"]) and voice["vad_latency_first_audio_ms"] > 0
    assert text["n_fillers"] == 1 and text["answer_message_id"] == "m1" and text["filler_text"] == "One moment"
    assert voice["conversation_completed"]
    # Every byte of agent audio reached the log.
    received = frames[(frames["direction"] == "received") & (frames["type"] == "server.new-message")]
    assert received["audio_bytes"].sum() == len(PIECE) * (len(received))
    # The live fold and the replayed log give one account.
    offline = replay(frames).interactions
    assert len(offline) == len(live.interactions()) == 3
    for mine, theirs in zip(live.interactions(), offline, strict=True):
        assert (mine.kind, mine.status, mine.reply_text, mine.reply_audio_ms, mine.filler_message_ids) == \
            (theirs.kind, theirs.status, theirs.reply_text, theirs.reply_audio_ms, theirs.filler_message_ids)
        for latency in LATENCIES:
            assert mine.latencies[latency] == pytest.approx(theirs.latencies[latency]), latency
