"""The live strip against a real emulator: segments follow the frames, meaning follows the fold."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from amigo_lab.widgets import LiveTimeline
from amigo_lab.widgets.timeline import LEVEL_BIN_S


def _lane(timeline, lane):
    return [s for s in timeline.segments() if s["lane"] == lane]


def _answer_segment(timeline, session, wait_until):
    """Ask the opening hours: the reply, its pieces in the log and the strip's segment for them."""
    reply = session.say("what are your opening hours").result(timeout=60)
    frames = session.frames
    pieces = frames[(frames["type"] == "server.new-message") & (frames["message_id"] == reply.message_id)]
    agent = wait_until(lambda: [s for s in _lane(timeline, "agent") if s["seq1"] == int(pieces["seq"].max())],
                       what="the answer's segment")[0]
    return reply, pieces, agent


def test_agent_audio_is_one_segment_per_message_with_its_role(front_end, session, wait_until):
    timeline = LiveTimeline(session)
    _reply, pieces, agent = _answer_segment(timeline, session, wait_until)
    assert agent["n"] == len(pieces) and agent["role"] == "answer"
    assert agent["seq0"] == int(pieces["seq"].min())
    assert agent["t1"] - agent["t0"] >= pieces["audio_ms"].sum() / 1000.0 - 0.01   # laid end to end


def test_user_audio_vad_segments_levels_and_state(front_end, session, question_pcm, wait_until):
    timeline = LiveTimeline(session)
    session.vad(True)
    assert timeline.state == "listening"
    silence = b"\0" * 640
    for chunk in [silence] * 25 + [question_pcm[i:i + 640] for i in range(0, len(question_pcm), 640)] + [silence] * 60:
        session.send_chunk(chunk)
    wait_until(lambda: _lane(timeline, "vad") and _lane(timeline, "vad")[-1]["t1"] > _lane(timeline, "vad")[-1]["t0"],
               timeout=60, what="a closed server VAD segment")
    user = _lane(timeline, "user")
    assert user and sum(s["n"] for s in user) >= 25 + 60
    vad = next(s for s in _lane(timeline, "vad") if s["t1"] > s["t0"])
    [item] = _hover(front_end, timeline, segments=[vad["id"]])["items"]
    assert [f["type"] for f in item["frames"]] == ["server.vad-speech-started", "server.vad-speech-ended"]
    front_end.custom(timeline, {"kind": "hello"})
    wait_until(lambda: any(m[0]["kind"] == "update" and m[0]["levels"] for m in front_end.sent(timeline)),
               what="levels sent to the browser")
    levels = [lv for m in front_end.sent(timeline, "update") for lv in m[0]["levels"]]
    loud = [db for _, side, db, _, _ in levels if side == "in" and db > -40]
    quiet = [db for _, side, db, _, _ in levels if side == "in" and db <= -89]
    assert all(-1.0 <= lo <= hi <= 1.0 for *_, lo, hi in levels)
    assert loud and quiet                                     # the question is louder than the silence
    wait_until(lambda: timeline.state in ("thinking", "agent speaking", "listening"), what="the turn to end")


def test_updates_are_batched(front_end, session, wait_until):
    timeline = LiveTimeline(session)
    for _ in range(200):
        session.send_chunk(b"\0" * 640)
    wait_until(lambda: sum(len(m[0]["segments"]) for m in front_end.sent(timeline, "update")) > 0,
               what="an update")
    assert len(front_end.sent(timeline, "update")) < 200 / 5


def _hover(front_end, timeline, **refs):
    front_end.custom(timeline, {"kind": "hover", "id": 7, **refs})
    answer = front_end.sent(timeline, "hover")[-1][0]
    assert answer["id"] == 7
    return answer


def test_hovering_an_answer_lists_its_pieces_folded_as_one_audio_run(front_end, session, wait_until):
    timeline = LiveTimeline(session)
    reply, pieces, agent = _answer_segment(timeline, session, wait_until)
    answer = _hover(front_end, timeline, segments=[agent["id"]])
    [item] = answer["items"]
    assert item["title"].startswith("answer: ") and answer["more"] == 0
    [run] = item["frames"]
    assert run["type"] == "server.new-message" and run["direction"] == "received"
    assert run["n"] == len(pieces) and run["seq"] == int(pieces["seq"].min())
    assert run["last_seq"] == int(pieces["seq"].max())
    assert run["t"] == round(float(pieces["t"].min()), 3)
    assert run["summary"].startswith(f"audio ×{len(pieces)}, {pieces['audio_ms'].sum() / 1000:.1f} s")
    assert reply.text[:10] in run["summary"]                   # the words of the audio, from its alignment


def test_hovering_an_event_mark_lists_the_event_sent(front_end, session, wait_until):
    timeline = LiveTimeline(session)
    session.event("the patient uploaded an insurance card")
    mark = wait_until(lambda: [m for m in timeline.marks() if m["kind"] == "event"], what="the event mark")[0]
    [item] = _hover(front_end, timeline, marks=[mark["id"]])["items"]
    [frame] = item["frames"]
    assert frame["type"] == "client.new-text-message" and frame["direction"] == "sent"
    assert frame["seq"] == mark["seq"] and "insurance card" in frame["summary"]


def test_a_hover_lists_eight_frames_then_counts_the_rest(front_end):
    timeline = LiveTimeline()
    seq = 0

    def feed(**entry):
        nonlocal seq
        seq += 1
        timeline.feed({"seq": seq, **entry})

    for k in range(250):
        feed(t=1.0 + k * 0.02, direction="sent", type="client.new-audio-message", audio_bytes=640, audio_ms=20.0)
    for k in range(12):
        feed(t=9.0, direction="sent", type="client.new-text-message", message_type="external-event", text=f"e{k}")
    [user] = _lane(timeline, "user")
    [item] = _hover(front_end, timeline, segments=[user["id"]])["items"]
    assert [f["summary"] for f in item["frames"]] == ["audio ×250, 5.0 s"]
    answer = _hover(front_end, timeline, marks=[m["id"] for m in timeline.marks()][:8])
    assert sum(len(i["frames"]) for i in answer["items"]) == 8 and answer["more"] == 0
    answer = timeline.hover(marks=[m["id"] for m in timeline.marks()])
    assert sum(len(i["frames"]) for i in answer["items"]) == 8 and answer["more"] == 4
    assert answer["items"][0]["frames"][0]["summary"] == "“e0”"
    assert timeline.hover(segments=[999])["items"] == []          # gone from the kernel: nothing to list


@pytest.mark.parametrize("audio_format", ["pcm", "mp3"])
def test_the_output_meter_and_waveform_get_the_agents_audio(front_end, open_session, wait_until, audio_format):
    session = open_session(audio_format=audio_format)
    session.greeting.result(timeout=60)
    timeline = LiveTimeline(session)
    front_end.custom(timeline, {"kind": "hello"})
    reply = session.say("what are your opening hours").result(timeout=60)
    frames = session.frames
    pieces = frames[(frames["type"] == "server.new-message") & (frames["message_id"] == reply.message_id)]
    assert set(pieces["audio_format"]) == {audio_format}
    start = float(pieces["t"].min())

    def out_levels():
        return [lv for m in front_end.sent(timeline, "update") for lv in m[0]["levels"]
                if lv[1] == "out" and lv[0] >= start - 0.001]

    seconds = len(reply.audio) / reply.sr
    levels = wait_until(lambda: (lv := out_levels()) and len(lv) * LEVEL_BIN_S >= seconds * 0.9 and lv,
                        what="the answer's levels")
    assert len(levels) * LEVEL_BIN_S <= seconds + len(pieces) * LEVEL_BIN_S     # each bin once, whole pieces
    assert [lv for lv in levels if lv[2] > -40]                                 # the agent speaks
    peak = max(max(-lo, hi) for *_, lo, hi in levels)
    assert peak == pytest.approx(float(np.abs(reply.audio).max()), abs=0.002)   # the samples the Reply holds
    assert all(lv[0] <= float(pieces["t"].max()) + seconds + 0.01 for lv in levels)


def test_mp3_decoded_as_one_stream_reaches_the_meter_once(front_end, tmp_path, logged_session, wait_until):
    """A service whose MP3 pieces are one stream cut up: the session decodes the message as a whole, and the
    meter shows each stretch of it once, as the session's decoder reaches it."""
    from amigo_lab.audio import encode_mp3
    from amigo_lab.framelog import FrameLog
    from amigo_lab.protocol import NewMessage, serialize
    from amigo_lab.session.agent_audio import MessageAudio

    log = FrameLog(tmp_path / "session", meta={"response_format": "voice", "audio_format": "mp3"})
    timeline = LiveTimeline(logged_session(log, audio_format="mp3"))
    front_end.custom(timeline, {"kind": "hello"})
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.float32)
    stream = encode_mp3(tone, sr=16000)
    cuts = np.linspace(0, len(stream), 6).astype(int)
    message = MessageAudio("mp3", 16000)
    for i, (a, b) in enumerate(itertools.pairwise(cuts)):
        frame = NewMessage.audio_piece(stream[a:b], stop=i == 4, sequence_number=i, message_id="m1")
        log.record("received", frame, raw=serialize(frame), audio_bytes=frame.audio_bytes(), audio_format="mp3",
                   audio_ms=400.0)
        _ = message.duration_ms                  # what the session's tracker asks before each piece
        message.add(frame.audio_bytes())
    whole = message.samples()                    # the Reply's audio, decoded as one stream
    assert message.mp3_stream

    def out():
        return [lv for m in front_end.sent(timeline, "update") for lv in m[0]["levels"] if lv[1] == "out"]

    levels = wait_until(lambda: (lv := out()) and len(lv) * LEVEL_BIN_S >= len(whole) / 16000 * 0.95 and lv,
                        what="the stream's levels")
    times = [lv[0] for lv in levels]
    assert len(times) == len(set(times))                                  # no stretch shown twice
    assert max(max(-lo, hi) for *_, lo, hi in levels) == pytest.approx(float(np.abs(whole).max()), abs=0.002)
    log.close()



def test_a_mark_of_the_fold_lists_the_frame_that_made_it(front_end):
    """Marks made from the fold's events (here: speech discarded) stand for the frames at their moment."""
    import json

    from amigo_lab.protocol import parse
    from amigo_lab.protocol.fold import Fold, SpeechDiscarded

    timeline = LiveTimeline()
    fold = Fold(response_format="voice")
    frames = [(1.0, {"type": "server.vad-mode-switched", "vad_mode_on": True}),
              (2.0, {"type": "server.vad-speech-started", "audio_ms": 1500}),
              (2.2, {"type": "server.vad-speech-reset-zero", "audio_ms": 1700})]
    for seq, (t, obj) in enumerate(frames, start=1):
        timeline.feed({"seq": seq, "t": t, "direction": "received", "type": obj["type"],
                       "vad_mode_on": obj.get("vad_mode_on"), "vad_ms": obj.get("audio_ms"), "wire": json.dumps(obj)})
        fold.feed("received", parse(json.dumps(obj)), t)
        for event in fold.events_received():
            timeline.apply_fold(event)
            assert not isinstance(event, SpeechDiscarded) or event.t == t
    [mark] = [m for m in timeline.marks() if m["kind"] == "discarded"]
    assert mark["seq"] == 3                                     # a click finds the frame in the inspector
    [item] = timeline.hover(marks=[mark["id"]])["items"]
    assert [f["type"] for f in item["frames"]] == ["server.vad-speech-reset-zero"]
    assert item["frames"][0]["summary"] == "at 1700 ms"


def test_the_input_meter_reads_the_users_mp3_chunks(front_end, open_session, question_pcm, wait_until):
    session = open_session(audio_format="mp3")
    session.greeting.result(timeout=60)
    timeline = LiveTimeline(session)
    front_end.custom(timeline, {"kind": "hello"})
    for i in range(0, len(question_pcm), 640):
        session.send_chunk(question_pcm[i:i + 640])
    wanted = len(question_pcm) // 640

    def chunks():
        sent = session.frames.query("type == 'client.new-audio-message'")
        return len(sent) >= wanted and sent["audio_format"].dropna().tolist()

    formats = wait_until(chunks, what="the chunks sent")
    assert set(formats) == {"mp3"}
    levels = wait_until(lambda: [lv for m in front_end.sent(timeline, "update") for lv in m[0]["levels"]
                                 if lv[1] == "in"] or None, what="input levels")
    assert [lv for lv in levels if lv[2] > -40] and [lv for lv in levels if lv[4] > 0.05]
