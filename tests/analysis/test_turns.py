"""turns() and latency_summary() on hand-built frame logs whose answers we know."""

import math

import pandas as pd
import pytest

from amigo_lab.analysis import LATENCY_METRICS, AnalysisError, latency_summary, turns

from .logs import Log, text_turn


def greeting(log: Log) -> Log:
    log.opened(0.0).start(0.1)
    log.audio_piece(0.5, "g", 0, chars="Hi").audio_piece(0.66, "g", 1, stop=True)
    return log.complete(0.7, "g", "Hi, how can I help?", interaction_id="i0")


def voice_turn_with_filler(log: Log) -> Log:
    """User speech 7.3–8.5 s (server VAD); a 500 ms filler at 9.2 s, the answer from 9.8 s."""
    log.stream(7.0, 2000)
    log.vad(7.6, "started", 300).vad(8.8, "ended", 1500)
    log.user_message(9.0, "what time do you open", "u3")
    log.action(9.1, "action-too-long", filler="One moment")
    log.audio_piece(9.2, "f", 0, ms=500, chars="One moment", stop=True)
    for k in range(5):
        log.audio_piece(9.8 + k * 0.16, "m3", k, ms=160, stop=k == 4)
    return log.complete(10.7, "m3", "We open at nine", interaction_id="i3")


def test_text_turn_latencies_are_exact():
    log = greeting(Log())
    text_turn(log, 2.0, "hello there how are you", "I am fine thanks", latency=0.42)
    table = turns(log.frames())
    row = table.iloc[1]
    assert row["user_kind"] == "text" and row["status"] == "complete"
    assert row["user_end_t"] == 2.0
    assert row["latency_first_text_ms"] == 420.0
    assert row["latency_complete_ms"] == 620.0  # four pieces 50 ms apart, then complete
    assert math.isnan(row["latency_first_audio_ms"])  # a text reply has no audio
    assert row["transcript"] == "hello there how are you"
    assert row["reply_text"] == "I am fine thanks"
    assert row["interaction_id"] == "i1" and row["answer_message_id"] == "m1" and row["user_message_id"] == "u1"
    assert list(table.columns)[: 3] == ["turn", "status", "interaction_id"]


def test_greeting_counts_from_start_conversation():
    table = turns(greeting(Log()).frames())
    assert len(table) == 1
    row = table.iloc[0]
    assert row["user_kind"] == "greeting"
    assert row["latency_first_audio_ms"] == 400.0  # start sent at 0.1 s, first audio at 0.5 s
    assert row["reply_audio_ms"] == 320.0 and row["heard_ms"] == 320.0 and not row["interrupted"]
    assert row["agent_language"] == "eng"


def test_filler_is_excluded_from_first_answer_audio():
    table = turns(voice_turn_with_filler(greeting(Log())).frames())
    row = table.iloc[1]
    assert row["user_kind"] == "voice"
    assert row["n_fillers"] == 1 and row["filler_text"] == "One moment"
    assert row["answer_message_id"] == "m3"
    assert row["latency_first_audio_ms"] == 700.0  # the filler, at 9.2 s, from the VAD end at 8.5 s
    assert row["latency_first_answer_audio_ms"] == 1300.0  # the answer, at 9.8 s
    assert row["latency_first_text_ms"] == 700.0  # the filler's alignment carries text
    assert row["reply_audio_ms"] == 800.0  # the answer only


def test_vad_positions_map_onto_the_log_clock():
    table = turns(voice_turn_with_filler(greeting(Log())).frames())
    row = table.iloc[1]
    # Audio streamed in real time from 7.0 s: position 300 ms is t = 7.3 s, 1500 ms is 8.5 s.
    assert row["vad_start_t"] == pytest.approx(7.3) and row["user_start_t"] == pytest.approx(7.3)
    assert row["vad_end_t"] == pytest.approx(8.5) and row["user_end_t"] == pytest.approx(8.5)


def test_vad_position_of_a_fast_upload_is_when_its_chunk_was_sent():
    log = greeting(Log())
    for k in range(100):  # 2 s of audio sent within 0.1 s
        log.chunk(3.0 + k * 0.001, 20)
    log.vad(3.2, "started", 200).vad(3.3, "ended", 1500)
    log.user_message(3.4, "hello", "u1").text_piece(3.9, "m1", 0, "Hi", stop=True).complete(4.0, "m1", "Hi")
    row = turns(log.frames()).iloc[1]
    assert row["vad_start_t"] == pytest.approx(3.010)  # chunk 10 carried position 200 ms
    assert row["vad_end_t"] == pytest.approx(3.075)  # chunk 75 carried position 1500 ms


def test_each_connection_has_its_own_audio_clock():
    log = greeting(Log())
    log.stream(2.0, 400).closed(2.5, 1001, "going away")
    log.opened(10.0).add(10.0, "sent", "client.continue-conversation")
    log.add(10.05, "received", "server.conversation-continued", conversation_id="a" * 24)
    log.stream(10.1, 1200).vad(10.6, "started", 200).vad(11.2, "ended", 1000)
    log.user_message(11.3, "hello again", "u2").text_piece(11.6, "m2", 0, "Hello", stop=True)
    log.complete(11.7, "m2", "Hello")
    row = turns(log.frames()).iloc[-1]
    assert row["vad_start_t"] == pytest.approx(10.3) and row["user_end_t"] == pytest.approx(11.1)
    assert row["latency_first_text_ms"] == pytest.approx(500.0)


def test_barge_in_marks_the_turn_interrupted_with_heard_ms_from_frames():
    log = greeting(Log())
    log.stream(2.0, 2000)
    log.vad(2.5, "started", 200).vad(3.2, "ended", 1000)
    log.user_message(3.3, "tell me everything", "u1")
    for k in range(3):  # 160 ms pieces, sent ahead of real time from 3.6 s
        log.audio_piece(3.6 + k * 0.1, "m1", k)
    log.vad(4.0, "started", 2200)  # the user speaks again at 4.0 s
    log.audio_piece(4.05, "m1", 3, ms=0, stop=True)
    log.complete(4.1, "m1", "Well, there is")
    row = turns(log.frames()).iloc[1]
    assert row["interrupted"]
    assert row["barge_in_t"] == 4.0
    # 480 ms had arrived before 4.0 s, but only 400 ms can have played since the first audio at 3.6 s.
    assert row["heard_ms"] == pytest.approx(400.0) and row["heard_source"] == "frames"
    assert row["reply_audio_ms"] == 480.0


def test_heard_ms_comes_from_playback_reports_when_present():
    log = greeting(Log())
    text_turn(log, 2.0, "hi", "unused", latency=0.1)
    log.say(3.0, "and then?").user_message(3.01, "and then?", "u2")
    for k in range(4):
        log.audio_piece(3.2 + k * 0.16, "m2", k, stop=k == 3)
    log.complete(3.8, "m2", "Then more")
    log.playback(3.6, "progress", "m2", 250.0).playback(3.7, "flushed", "m2", 330.0)
    row = turns(log.frames()).iloc[2]
    assert row["interrupted"] and row["barge_in_t"] == 3.7  # flushed by the client, no server VAD
    assert row["heard_ms"] == 330.0 and row["heard_source"] == "playback"


def test_an_uninterrupted_reply_is_heard_in_full():
    log = greeting(Log())
    log.say(2.0, "hi").user_message(2.01, "hi", "u1")
    log.audio_piece(2.3, "m1", 0).audio_piece(2.4, "m1", 1, stop=True).complete(2.5, "m1", "Hello")
    log.vad(5.0, "started", 100)  # speech long after the reply ended is not a barge-in
    row = turns(log.frames()).iloc[1]
    assert not row["interrupted"] and math.isnan(row["barge_in_t"])
    assert row["heard_ms"] == 320.0


def test_push_to_talk_ends_at_the_clients_audio_end():
    log = greeting(Log())
    log.stream(2.0, 1000).audio_end(3.05)
    log.user_message(3.4, "book a table", "u1").text_piece(3.5, "m1", 0, "Sure", stop=True)
    log.complete(3.6, "m1", "Sure")
    row = turns(log.frames()).iloc[1]
    assert row["user_kind"] == "audio"
    assert row["user_start_t"] == 2.0 and row["audio_end_t"] == 3.05 and row["user_end_t"] == 3.05
    assert math.isnan(row["vad_end_t"])
    assert row["latency_first_text_ms"] == 450.0


def test_external_events_attach_to_the_next_interaction():
    log = greeting(Log())
    log.event(1.5, "order 42 shipped")
    text_turn(log, 2.0, "where is my order", "It shipped", latency=0.3)
    log.event(4.0, "payment failed")  # alone, it starts an interaction
    log.text_piece(4.5, "m9", 0, "Your payment failed", stop=True).complete(4.6, "m9", "Your payment failed",
                                                                            interaction_id="i9")
    table = turns(log.frames())
    assert table.iloc[1]["events"] == ("order 42 shipped",) and table.iloc[1]["n_events"] == 1
    event_row = table.iloc[2]
    assert event_row["user_kind"] == "event" and event_row["events"] == ("payment failed",)
    assert event_row["user_end_t"] == 4.0 and event_row["latency_first_text_ms"] == 500.0
    assert table.iloc[0]["events"] == ()


def test_a_refused_turn_gets_its_own_row_and_does_not_shift_the_pairing():
    log = greeting(Log())
    log.stream(2.0, 600).audio_end(2.6).error(2.7, 400, "audio could not be transcribed")
    log.stream(3.0, 600).audio_end(3.6)
    log.user_message(3.9, "hello", "u1").text_piece(4.1, "m1", 0, "Hi", stop=True).complete(4.2, "m1", "Hi")
    table = turns(log.frames())
    assert list(table["status"]) == ["complete", "error", "complete"]
    refused, answered = table.iloc[1], table.iloc[2]
    assert refused["error"] == "400: audio could not be transcribed" and refused["user_end_t"] == 2.6
    assert answered["user_end_t"] == 3.6 and answered["latency_first_text_ms"] == 500.0


def test_queued_texts_pair_by_text():
    log = greeting(Log())
    log.say(2.0, "first question").user_message(2.01, "first question", "u1")
    log.say(2.2, "second question")  # sent while the first is answered: queued
    log.text_piece(2.5, "m1", 0, "First answer", stop=True).complete(2.6, "m1", "First answer")
    log.user_message(2.61, "second question", "u2").text_piece(2.9, "m2", 0, "Second", stop=True)
    log.complete(3.0, "m2", "Second", interaction_id="i2")
    table = turns(log.frames())
    assert list(table["transcript"].iloc[1:]) == ["first question", "second question"]
    assert list(table["latency_first_text_ms"].iloc[1:]) == [500.0, 700.0]


def test_an_error_before_complete_voids_the_interaction():
    log = greeting(Log())
    log.say(2.0, "hi").user_message(2.01, "hi", "u1").text_piece(2.3, "m1", 0, "Hel")
    log.error(2.4, 500, "agent crashed")
    table = turns(log.frames())
    row = table.iloc[1]
    assert row["status"] == "error" and row["error"] == "500: agent crashed"
    assert math.isnan(row["complete_t"]) and row["reply_text"] == "Hel"


def test_a_bad_frame_error_does_not_void_the_interaction():
    log = greeting(Log())
    log.say(2.0, "hi").user_message(2.01, "hi", "u1").text_piece(2.3, "m1", 0, "Hel")
    log.error(2.35, 400, "unknown frame type")
    log.text_piece(2.4, "m1", 1, "lo", stop=True).complete(2.5, "m1", "Hello")
    table = turns(log.frames())
    assert len(table) == 2 and table.iloc[1]["status"] == "complete" and table.iloc[1]["reply_text"] == "Hello"


def test_conversation_completed_and_languages():
    log = greeting(Log())
    log.say(2.0, "hola, ¿a qué hora abren?").user_message(2.01, "hola, ¿a qué hora abren?", "u1")
    log.text_piece(2.3, "m1", 0, "Abrimos a las nueve. ¡Adiós!", stop=True)
    log.complete(2.4, "m1", "Abrimos a las nueve. ¡Adiós!", completed=True)
    row = turns(log.frames()).iloc[1]
    assert row["conversation_completed"]
    assert row["user_language"] == "spa" and row["agent_language"] == "spa"


def test_dtypes_are_stable_on_an_empty_log():
    table = turns(Log().frames())
    assert len(table) == 0
    assert str(table["latency_first_text_ms"].dtype) == "float64"
    assert str(table["interrupted"].dtype) == "boolean"


def test_latency_summary_percentiles():
    log = greeting(Log())
    for n, (t, latency) in enumerate([(2.0, 0.1), (4.0, 0.2), (6.0, 0.4)], start=1):
        text_turn(log, t, f"question {n}", "answer", latency=latency, n=n, pieces=1)
    summary = latency_summary(turns(log.frames()))
    assert list(summary.columns) == ["metric", "count", "mean", "p50", "p90"]
    assert list(summary["metric"]) == list(LATENCY_METRICS)
    first_text = summary.set_index("metric").loc["latency_first_text_ms"]
    assert first_text["count"] == 3  # the greeting is left out
    assert first_text["p50"] == pytest.approx(200.0)
    assert first_text["p90"] == pytest.approx(360.0)  # linear between 200 and 400
    assert first_text["mean"] == pytest.approx(700.0 / 3)
    audio = summary.set_index("metric").loc["latency_first_audio_ms"]
    assert audio["count"] == 0 and math.isnan(audio["p50"])
    with_greeting = latency_summary(turns(log.frames()), include_greeting=True).set_index("metric")
    assert with_greeting.loc["latency_first_audio_ms", "count"] == 1


def test_bad_input_is_a_clear_error():
    with pytest.raises(AnalysisError, match="frame-log DataFrame"):
        turns("frames.jsonl")
    with pytest.raises(AnalysisError, match="lacks frame-log columns"):
        turns(pd.DataFrame({"seq": [0], "t": [0.0]}))
    with pytest.raises(AnalysisError, match="turns"):
        latency_summary(pd.DataFrame({"x": [1]}))


def test_speech_after_complete_is_not_a_server_barge_in():
    log = greeting(Log())  # its 320 ms of audio would play until 0.82 s, after complete at 0.7 s
    log.stream(0.7, 1000).vad(0.76, "started", 40)
    row = turns(log.frames()).iloc[0]
    assert not row["interrupted"] and row["heard_ms"] == 320.0


def test_switching_vad_on_restarts_the_audio_clock():
    log = greeting(Log())
    log.stream(1.0, 1000).audio_end(2.0)  # push-to-talk first
    log.user_message(2.2, "hi", "u1").text_piece(2.4, "m1", 0, "Hello", stop=True).complete(2.5, "m1", "Hello")
    log.add(3.0, "sent", "client.switch-vad-mode", vad_mode_on=True)
    log.add(3.01, "received", "server.vad-mode-switched", vad_mode_on=True)
    log.stream(3.1, 2000).vad(3.5, "started", 200).vad(4.6, "ended", 900)
    log.user_message(4.7, "hours", "u2").text_piece(4.9, "m2", 0, "Nine", stop=True)
    log.complete(5.0, "m2", "Nine", interaction_id="i2")
    row = turns(log.frames()).iloc[2]
    assert row["vad_start_t"] == pytest.approx(3.3) and row["user_end_t"] == pytest.approx(4.0)


def test_a_vad_position_is_never_placed_after_its_report():
    log = greeting(Log())
    log.stream(2.0, 600).audio_end(2.6)
    log.vad(2.3, "started", 100).vad(2.9, "ended", 1100)  # the server padded the stream with silence
    log.user_message(3.0, "hi", "u1").text_piece(3.2, "m1", 0, "Hello", stop=True).complete(3.3, "m1", "Hello")
    row = turns(log.frames()).iloc[1]
    assert row["vad_end_t"] == 2.9 and row["audio_end_t"] == 2.6
    assert row["user_end_t"] == 2.6  # the earlier of the two ends


def test_a_cough_reset_by_the_server_is_not_a_turn():
    log = greeting(Log())
    log.stream(2.0, 3000)
    log.vad(2.3, "started", 100).vad(2.9, "reset-zero", 250)
    log.vad(3.6, "started", 1200).vad(4.6, "ended", 2000)
    log.user_message(4.7, "hi", "u1").text_piece(4.9, "m1", 0, "Hello", stop=True).complete(5.0, "m1", "Hello")
    table = turns(log.frames())
    assert len(table) == 2
    assert table.iloc[1]["vad_start_t"] == pytest.approx(3.2) and table.iloc[1]["user_end_t"] == pytest.approx(4.0)


def test_with_vad_on_the_end_of_audio_alone_is_not_a_turn():
    log = greeting(Log())
    log.add(1.0, "sent", "client.switch-vad-mode", vad_mode_on=True)
    log.stream(1.1, 500).audio_end(1.6)  # silence only: the server's VAD heard nothing
    assert len(turns(log.frames())) == 1
