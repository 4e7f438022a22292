"""The session panel against a real emulator: what it shows follows the frame log; its buttons connect."""

import pytest

from amigo_lab.widgets import (
    EventInspector,
    LatencyWaterfall,
    LiveTimeline,
    Microphone,
    Player,
    SessionPanel,
    SessionView,
)


def test_panel_composes_view_mic_and_player(front_end, session):
    panel = SessionPanel(session, mode="vad")
    view, mic, player, timeline, waterfall, inspector = panel.children
    assert isinstance(timeline, LiveTimeline)
    assert isinstance(view, SessionView) and isinstance(mic, Microphone) and isinstance(player, Player)
    assert isinstance(inspector, EventInspector) and inspector.session is session
    assert isinstance(waterfall, LatencyWaterfall) and [t["kind"] for t in waterfall.turns] == ["greeting"]
    assert panel.mic.mode == "vad"
    assert panel.mic.session is session and panel.player.session is session


def test_view_replays_the_greeting_then_follows_turns_live(front_end, session, wait_until):
    panel = SessionPanel(session)
    view = panel.view
    assert view.state == "connected"
    assert view.conversation_id == session.conversation_id
    greeting = session.greeting.result()
    assert view.transcript[0]["role"] == "agent" and view.transcript[0]["text"] == greeting.text

    reply = session.say("what are your opening hours").result(timeout=60)

    lines = wait_until(lambda: [ln for ln in view.transcript if ln["message_id"] == reply.message_id],
                       what="the answer in the transcript")
    user = [ln for ln in view.transcript if ln["role"] == "user"]
    assert user[-1]["text"].lower() == "what are your opening hours"
    assert lines[0]["role"] == "agent" and lines[0]["text"] == reply.text
    wait_until(lambda: view.latency_ms is not None, what="the turn's latency")
    assert view.latency_name == "latency_first_audio_ms"             # the fold's name, the session's number
    assert view.latency_ms == pytest.approx(reply.timings["latency_first_audio_ms"], abs=0.001)
    answer = next(ln for ln in view.transcript if ln["message_id"] == reply.message_id)
    assert answer["latency_ms"] == view.latency_ms and answer["index"] is not None and answer["t"] > 0


def test_vad_indicator_and_events(front_end, session, wait_until):
    panel = SessionPanel(session)
    assert panel.view.vad == "off"
    session.vad(True)
    wait_until(lambda: panel.view.vad == "listening", what="the VAD indicator")
    session.event("the patient uploaded an insurance card")
    wait_until(lambda: any(ln["role"] == "event" for ln in panel.view.transcript), what="the event line")
    session.vad(False)
    wait_until(lambda: panel.view.vad == "off", what="the VAD indicator to go off")


def test_an_abnormal_close_shows_the_code_and_its_hint(front_end, wait_until):
    from amigo_lab._connect import connect
    from amigo_lab.emulator import Emulator

    with Emulator(idle_timeout_s=0.8, realtime=False) as emulator:
        session = connect(emulator=emulator)
        panel = SessionPanel(session)
        try:
            wait_until(lambda: panel.view.state == "closed", what="the idle timeout to close the connection")
            assert "4408" in panel.view.error
            assert "extend-timeout" in panel.view.hint
        finally:
            panel.close()


def test_connect_and_disconnect_buttons(front_end, emulator, wait_until):
    panel = SessionPanel(emulator=emulator)
    assert panel.session is None and panel.view.state == "disconnected"

    front_end.custom(panel.view, {"kind": "connect"})
    wait_until(lambda: panel.view.state == "connected", timeout=60, what="the panel to connect")
    session = panel.session
    assert panel.view.conversation_id == session.conversation_id
    assert panel.mic.session is session

    front_end.custom(panel.view, {"kind": "disconnect"})
    wait_until(lambda: panel.view.state == "closed", what="the panel to disconnect")
    assert session.state == "closed"

    front_end.custom(panel.view, {"kind": "connect"})             # reconnects the same conversation
    wait_until(lambda: panel.view.state == "connected", timeout=60, what="the panel to reconnect")
    assert panel.session is session and session.state == "active"

    session.finish()           # ends the conversation on the server too: the module's user may start again
    panel.close()                                                # the panel opened it, so it closes it
    assert session.state == "closed"


def test_a_failed_connect_is_shown_not_raised(front_end, wait_until):
    panel = SessionPanel(organization="org", token="not-a-jwt", host="127.0.0.1:9", timeout=2)
    front_end.custom(panel.view, {"kind": "connect"})
    wait_until(lambda: panel.view.state == "error", timeout=30, what="the error state")
    assert panel.view.error


def test_closing_a_vad_microphone_switches_the_server_vad_off(front_end, session, wait_until):
    first = SessionPanel(session, mode="vad")
    front_end.custom(first.mic, {"kind": "start", "mode": "vad", "sample_rate": 48000})
    assert session.vad_on
    first.close()                                  # re-running the cell: the browser's "stop" never arrives
    assert not session.vad_on
    second = SessionPanel(session, mode="push-to-talk")
    assert not session.vad_on and second.mic.mode == "push-to-talk"
    second.close()


def test_a_vad_the_user_switched_on_is_left_alone(front_end, session):
    session.vad(True)
    panel = SessionPanel(session, mode="push-to-talk")
    panel.close()
    assert session.vad_on


def test_a_session_that_gives_up_reconnecting_shows_an_error(front_end, wait_until):
    from amigo_lab._connect import connect
    from amigo_lab.emulator import Emulator
    from amigo_lab.session import Backoff

    emulator = Emulator(realtime=False).start()
    try:
        session = connect(emulator=emulator, backoff=Backoff(initial=0.05, maximum=0.1, attempts=2))
        panel = SessionPanel(session)
        assert panel.view.state == "connected"
    finally:
        emulator.stop()                             # the server goes away: 1001, reconnecting, then nothing
    try:
        wait_until(lambda: panel.view.state == "error", timeout=30, what="the panel to show the failure")
        assert session.state not in ("active", "reconnecting")
        assert "Connect" in panel.view.hint
        assert front_end.sent(panel.mic, "release")       # the microphone stops streaming into nothing
    finally:
        panel.close()


def _replayed_bytes(front_end, player, message_id):
    return sum(len(b) for content, buffers in front_end.sent(player, "audio")
               if content["message_id"] == message_id for b in buffers)


def test_replaying_a_text_turn_plays_the_answer_as_received(front_end, session, wait_until):
    from amigo_lab.framelog import load_session

    panel = SessionPanel(session)
    front_end.custom(panel.player, {"kind": "ready"})
    reply = session.say("what are your opening hours").result(timeout=60)
    line = wait_until(lambda: next((ln for ln in panel.view.transcript
                                    if ln["message_id"] == reply.message_id and ln["index"] is not None), None),
                      what="the answer line with its turn")
    before = len(session.frames)
    front_end.custom(panel.view, {"kind": "replay", "index": line["index"]})
    replay_id = f"local-replay-{line['index']}"
    expected = len(load_session(session.log.path).message_audio(reply.message_id)) * 2
    wait_until(lambda: _replayed_bytes(front_end, panel.player, replay_id) == expected, what="the replayed answer")
    front_end.custom(panel.player, {"kind": "finished", "message_id": replay_id, "played_ms": 1000.0})
    assert len(session.frames) == before          # a replay's playback is not the agent's: not logged
    panel.close()


def test_replaying_a_spoken_turn_plays_the_user_first(front_end, session, question_pcm, wait_until):
    panel = SessionPanel(session)
    front_end.custom(panel.player, {"kind": "ready"})
    reply = session.send_audio(question_pcm, sr=16000, realtime=False).result(timeout=60)
    index = wait_until(lambda: next((i for i, r in panel.view.records.items()
                                     if r.answer_message_id == reply.message_id), None), what="the spoken turn")
    panel.replay(index)
    replayed = _replayed_bytes(front_end, panel.player, f"local-replay-{index}")
    agent_bytes = len(reply.audio) * 2
    assert replayed > agent_bytes + 0.3 * 16000 * 2              # the user's speech, a pause, then the answer
    panel.close()


def test_replaying_an_unknown_turn_says_which_exist(front_end, session):
    from amigo_lab.errors import AmigoError

    panel = SessionPanel(session)
    with pytest.raises(AmigoError, match="no turn 99"):
        panel.replay(99)
    panel.close()


def test_a_panel_made_late_shows_what_each_widget_alone_shows(front_end, session):
    for text in ("what are your opening hours", "where are you located"):
        session.say(text).result(timeout=60)
    panel = SessionPanel(session)                       # one shared read of the log for all its widgets
    alone = LatencyWaterfall(session), EventInspector(session), LiveTimeline(session)
    assert panel.waterfall.turns == alone[0].turns and len(panel.waterfall.turns) == 3
    assert panel.inspector.rows() == alone[1].rows()
    assert panel.timeline.segments() == alone[2].segments()
    assert [r.index for r in panel.view.records.values()] == [0, 1, 2]
    panel.close()


def test_a_click_on_the_timeline_finds_the_frame_in_the_inspector(front_end, session):
    panel = SessionPanel(session)
    greeting = next(s for s in panel.timeline.segments() if s["lane"] == "agent")
    front_end.custom(panel.timeline, {"kind": "select", "seq": greeting["seq0"]})
    assert panel.inspector.search == f"#{greeting['seq0']}"
    panel.close()
