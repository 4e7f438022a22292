"""The live strip against a real emulator: segments follow the frames, meaning follows the fold."""

from __future__ import annotations

from amigo_lab.widgets import LiveTimeline


def _lane(timeline, lane):
    return [s for s in timeline.segments() if s["lane"] == lane]


def test_agent_audio_is_one_segment_per_message_with_its_role(front_end, session, wait_until):
    timeline = LiveTimeline(session)
    reply = session.say("what are your opening hours").result(timeout=60)
    frames = session.frames
    pieces = frames[(frames["type"] == "server.new-message") & (frames["message_id"] == reply.message_id)]
    agent = wait_until(lambda: [s for s in _lane(timeline, "agent") if s["seq1"] == int(pieces["seq"].max())],
                       what="the answer's segment")[0]
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
    front_end.custom(timeline, {"kind": "hello"})
    wait_until(lambda: any(m[0]["kind"] == "update" and m[0]["levels"] for m in front_end.sent(timeline)),
               what="levels sent to the browser")
    levels = [lv for m in front_end.sent(timeline, "update") for lv in m[0]["levels"]]
    loud = [db for _, side, db in levels if side == "in" and db > -40]
    quiet = [db for _, side, db in levels if side == "in" and db <= -89]
    assert loud and quiet                                     # the question is louder than the silence
    wait_until(lambda: timeline.state in ("thinking", "agent speaking", "listening"), what="the turn to end")


def test_updates_are_batched(front_end, session, wait_until):
    timeline = LiveTimeline(session)
    for _ in range(200):
        session.send_chunk(b"\0" * 640)
    wait_until(lambda: sum(len(m[0]["segments"]) for m in front_end.sent(timeline, "update")) > 0,
               what="an update")
    assert len(front_end.sent(timeline, "update")) < 200 / 5
