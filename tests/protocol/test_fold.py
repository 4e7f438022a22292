"""The interaction fold, fed by hand: rules of its header, the orderings a real service may use, bounds."""

import base64

import pytest

from amigo_lab import protocol as p
from amigo_lab.protocol import fold as f

CID = "c" * 24
PCM_20MS = base64.b64encode(bytes(640)).decode()  # 20 ms of PCM16 16 kHz


class Feed:
    """A fold and a clock; each call feeds one frame and returns the events it produced."""

    def __init__(self, **options):
        self.fold = f.Fold(**options)

    def sent(self, t, frame, **kw):
        self.fold.feed("sent", frame, t, **kw)
        return self.fold.events_received()

    def got(self, t, frame, **kw):
        self.fold.feed("received", frame, t, **kw)
        return self.fold.events_received()

    def local(self, t, kind, **fields):
        self.fold.feed_local(kind, t, **fields)
        return self.fold.events_received()

    # shorthands
    def start(self, t=0.0):
        self.local(t, "connection.opened")
        self.sent(t + 0.1, p.StartConversation(service_id="a" * 24))
        return self.got(t + 0.15, p.ConversationCreated(conversation_id=CID))

    def greeting(self, t=0.5):
        self.got(t, p.NewMessage(message="Hi!", stop=True, sequence_number=0, message_id="g"))
        return self.got(t + 0.1, p.InteractionComplete(message_id="g", interaction_id="i0", full_message="Hi!"))

    def text(self, t, text, key):
        return self.sent(t, p.NewTextMessage(text=text), key=key)

    def piece(self, t, mid, n, text="x", *, stop=False, **kw):
        return self.got(t, p.NewMessage(message=text, stop=stop, sequence_number=n, message_id=mid), **kw)

    def complete(self, t, mid, full="", **kw):
        return self.got(t, p.InteractionComplete(message_id=mid, interaction_id="i", full_message=full, **kw))

    def stream(self, t0, ms, *, key=None):
        for k in range(int(ms // 20)):
            self.sent(t0 + k * 0.02, p.NewAudioMessage(audio=PCM_20MS), key=key if k == 0 else None)


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def test_greeting_then_text_turn_with_every_latency_named():
    feed = Feed(response_format="text")
    [started] = of(feed.start(), f.InteractionStarted)
    assert started.kind == "greeting" and started.index == 0 and started.keys == ()
    [done] = of(feed.greeting(), f.InteractionCompleted)
    assert done.record.reply_text == "Hi!" and done.record.latencies["latency_first_text_ms"] == 400.0
    events = feed.text(2.0, "hello", "turn-1")
    assert of(events, f.UserTurnEnded) == [f.UserTurnEnded("turn-1", "text", 2.0, 2.0)]
    assert of(events, f.InteractionStarted) == [f.InteractionStarted(1, ("turn-1",), "text", 2.0)]
    feed.got(2.01, p.UserMessageAvailable(message_id="u1", user_message="hello"))
    [piece] = feed.piece(2.3, "m1", 0, "Hi ")
    assert piece == f.AgentPiece(1, "m1", "answer", 0, False, 2.3)
    feed.piece(2.35, "m1", 1, "there", stop=True)
    [done] = of(feed.complete(2.4, "m1", "Hi there"), f.InteractionCompleted)
    record = done.record
    assert (record.status, record.kind, record.user_text, record.reply_text) == ("completed", "text", "hello",
                                                                                 "Hi there")
    assert record.latencies == {
        "latency_first_text_ms": 300.0, "latency_first_audio_ms": None, "latency_first_answer_audio_ms": None,
        "latency_first_heard_ms": None, "latency_complete_ms": 400.0, "vad_latency_first_text_ms": None,
        "vad_latency_first_audio_ms": None, "vad_latency_first_answer_audio_ms": None}
    assert set(record.stamps) == set(f.STAMPS) and list(record.latencies) == list(f.LATENCIES)


def test_every_latency_has_a_definition():
    for name, (origin, target, definition) in f.LATENCIES.items():
        assert origin in f.STAMPS and target in f.STAMPS and f.latency_definition(name) == definition
    with pytest.raises(KeyError, match="not a latency"):
        f.latency_definition("latency_ms")


def test_agent_output_before_the_transcript_belongs_to_the_waiting_turn():
    feed = Feed(response_format="text")
    feed.start()
    feed.greeting()
    feed.text(2.0, "hello", "k")
    assert feed.piece(2.2, "m1", 0, "Hi", stop=True)[0].index == 1
    feed.got(2.3, p.UserMessageAvailable(message_id="u1", user_message="hello"))
    [done] = of(feed.complete(2.4, "m1", "Hi"), f.InteractionCompleted)
    assert done.keys == ("k",) and done.record.user_message_id == "u1" and done.record.stamps["first_text"] == 2.2


def test_no_greeting_resolves_the_greeting_empty_when_the_first_user_interaction_begins():
    feed = Feed()
    feed.start()
    assert of(feed.text(1.0, "anyone there?", "k"), f.InteractionStarted) == []  # waits behind the greeting
    events = feed.got(1.2, p.UserMessageAvailable(message_id="u", user_message="anyone there?"))
    [greeting] = of(events, f.InteractionCompleted)
    assert greeting.index == 0 and greeting.record.kind == "greeting" and greeting.record.reply_text == ""
    assert "no greeting" in of(events, f.Violation)[0].description
    assert of(events, f.InteractionStarted)[0].keys == ("k",)


def test_a_text_sent_before_the_greeting_arrives_waits_for_it():
    feed = Feed(response_format="text")
    feed.start()
    feed.text(0.2, "hi", "k")
    feed.piece(0.5, "g", 0, "Welcome!", stop=True)
    events = feed.complete(0.6, "g", "Welcome!")
    assert of(events, f.InteractionCompleted)[0].record.reply_text == "Welcome!"
    [started] = of(events, f.InteractionStarted)
    assert started.keys == ("k",)
    assert feed.fold.interactions()[1].stamps["user_end"] == 0.2


def test_interleaved_filler_and_answer_pair_by_message_id():
    feed = Feed(response_format="voice")
    feed.start()
    feed.greeting()
    feed.text(2.0, "slow question", "k")
    feed.got(2.1, p.CurrentAgentAction(action={"type": "tool-call-started"}))
    feed.got(2.2, p.CurrentAgentAction(action={"type": "action-too-long", "filler": "One moment"}))
    [filler] = feed.got(2.3, p.NewMessage(message=PCM_20MS, sequence_number=0, message_id="f",
                                          transcript_alignment=((0, "O"),)))
    assert filler.role == "filler" and filler.has_audio
    [answer] = feed.got(2.4, p.NewMessage(message=PCM_20MS, sequence_number=0, message_id="a"))
    assert answer.role == "answer"
    assert feed.got(2.45, p.NewMessage(message=PCM_20MS, sequence_number=1, message_id="f", stop=True))[0].role \
        == "filler"
    feed.got(2.5, p.CurrentAgentAction(action={"type": "tool-call-ended"}))
    feed.got(2.6, p.NewMessage(message=PCM_20MS, sequence_number=1, message_id="a", stop=True))
    [done] = of(feed.complete(2.7, "a", "The answer"), f.InteractionCompleted)
    record = done.record
    assert record.answer_message_id == "a" and record.filler_message_ids == ("f",)
    assert record.filler_text == "One moment" and len(record.actions) == 3
    assert record.stamps["first_audio"] == 2.3 and record.stamps["first_answer_audio"] == 2.4
    assert record.stamps["first_text"] == 2.3 and record.reply_audio_ms == 40.0


def test_unannounced_filler_is_told_apart_by_the_complete():
    feed = Feed(response_format="text")
    feed.start()
    feed.greeting()
    feed.text(2.0, "q", "k")
    feed.piece(2.1, "f", 0, "Let me check.", stop=True)
    feed.piece(2.5, "a", 0, "Yes.", stop=True)
    record = of(feed.complete(2.6, "a"), f.InteractionCompleted)[0].record
    assert record.filler_message_ids == ("f",) and record.filler_text == "Let me check."
    assert record.reply_text == "" and record.stamps["first_answer_text"] == 2.5


def test_a_recoverable_400_mid_reply_voids_nothing():
    feed = Feed(response_format="text")
    feed.start()
    feed.greeting()
    feed.text(2.0, "hi", "k")
    feed.piece(2.1, "m", 0, "Hel")
    events = feed.got(2.2, p.ServerError(http_error_code=400, error_description="bad frame"))
    assert events == [f.ErrorReceived(2.2, 1, 400, "bad frame", False)]
    feed.piece(2.3, "m", 1, "lo", stop=True)
    [done] = of(feed.complete(2.4, "m", "Hello"), f.InteractionCompleted)
    assert done.record.reply_text == "Hello" and done.keys == ("k",)


def test_a_400_before_anything_refuses_the_waiting_input_and_the_next_pairs_right():
    feed = Feed(response_format="text")
    feed.start()
    feed.greeting()
    feed.stream(2.0, 100, key="ptt-1")
    feed.sent(2.1, p.NewAudioMessage(audio=None))
    events = feed.got(2.2, p.ServerError(http_error_code=400, error_description="could not transcribe"))
    [voided] = of(events, f.InteractionVoided)
    assert voided.keys == ("ptt-1",) and voided.reason == "refused" and voided.record.status == "voided"
    assert voided.description == "400: could not transcribe"
    feed.text(3.0, "hello", "k2")
    feed.got(3.1, p.UserMessageAvailable(message_id="u", user_message="hello"))
    assert of(feed.complete(3.2, "m"), f.InteractionCompleted)[0].keys == ("k2",)


def test_other_errors_void_and_late_frames_stay_with_the_voided_interaction():
    feed = Feed(response_format="text")
    feed.start()
    feed.greeting()
    feed.text(2.0, "hi", "k")
    feed.piece(2.1, "m", 0, "Hel")
    events = feed.got(2.2, p.ServerError(http_error_code=None, error_description="agent crashed"))
    [voided] = of(events, f.InteractionVoided)
    assert voided.http_error_code is None and voided.reason == "error" and voided.record.reply_text == "Hel"
    assert "error: agent crashed" == voided.description
    late = feed.got(2.3, p.CurrentAgentAction(action={"type": "tool-call-ended"}))
    assert "after interaction 1 was voided" in of(late, f.Violation)[0].description
    late = feed.piece(2.35, "m", 1, "lo", stop=True)
    assert of(late, f.AgentPiece)[0].index == 1 and of(late, f.Violation)
    late = feed.complete(2.4, "m", "Hello")
    assert "already voided" in of(late, f.Violation)[0].description and not of(late, f.InteractionStarted)
    # The tail is released: the next server output opens a new interaction.
    assert of(feed.piece(3.0, "n", 0, "Unprompted", stop=True), f.AgentPiece)[0].index == 2


def test_an_error_with_nothing_in_flight_is_reported():
    feed = Feed()
    assert feed.got(0.1, p.ServerError(http_error_code=404, error_description="no such conversation")) == [
        f.ErrorReceived(0.1, None, 404, "no such conversation", False)]


def test_connection_closed_voids_the_interaction_in_flight_and_drops_waiting_inputs():
    feed = Feed(response_format="text")
    feed.start()
    feed.greeting()
    feed.text(2.0, "first", "k1")
    feed.text(2.1, "second", "k2")
    feed.sent(2.15, p.NewTextMessage(text="context", message_type="external-event"), key="e1")
    feed.stream(2.2, 40, key="ptt")
    events = feed.local(2.5, "connection.closed", close_code=1006, close_reason="")
    [voided] = of(events, f.InteractionVoided)
    assert voided.keys == ("k1",) and voided.reason == "closed" and "connection lost" in voided.description
    assert [d.key for d in of(events, f.InputDropped)] == ["e1", "k2", "ptt"]
    assert of(events, f.InputDropped)[1].input == f.PendingInput("k2", "text", 2.1, 2.1, "second")
    assert feed.fold.pending_inputs() == []
    # Nothing is left open: the next connection starts clean.
    assert [r.status for r in feed.fold.interactions()] == ["completed", "voided"]


def test_connection_closed_drops_vad_audio_keys_not_yet_ended():
    feed = Feed()
    feed.sent(0.0, p.SwitchVadMode(vad_mode_on=True))
    feed.stream(0.1, 40, key="mic-1")
    [dropped] = of(feed.local(1.0, "connection.closed", close_code=4503), f.InputDropped)
    assert dropped.key == "mic-1" and "4503" in dropped.description


def test_a_second_user_message_completes_the_first_interaction_without_its_complete():
    feed = Feed(response_format="text")
    feed.start()
    feed.greeting()
    feed.text(2.0, "a", "k1")
    feed.got(2.1, p.UserMessageAvailable(message_id="u1", user_message="a"))
    feed.piece(2.2, "m1", 0, "A", stop=True)
    feed.text(2.3, "b", "k2")
    events = feed.got(2.4, p.UserMessageAvailable(message_id="u2", user_message="b"))
    assert of(events, f.Violation) and of(events, f.InteractionCompleted)[0].keys == ("k1",)
    assert of(events, f.InteractionStarted)[0].keys == ("k2",)


def test_greeting_with_pieces_but_no_complete_ends_when_the_user_turn_is_answered():
    feed = Feed(response_format="text")
    feed.start()
    feed.piece(0.5, "g", 0, "Hi", stop=True)
    assert of(feed.text(1.0, "hello", "k"), f.InteractionStarted) == []  # waits behind the greeting
    events = feed.got(1.1, p.UserMessageAvailable(message_id="u", user_message="hello"))
    assert of(events, f.InteractionCompleted)[0].record.kind == "greeting"
    assert of(events, f.InteractionStarted)[0].keys == ("k",)


def test_the_server_skipping_a_queued_text_voids_the_skipped_one():
    feed = Feed(response_format="text")
    feed.start()
    feed.greeting()
    feed.text(2.0, "first", "k1")
    feed.text(2.1, "second", "k2")
    events = feed.got(2.2, p.UserMessageAvailable(message_id="u2", user_message="second"))
    [voided] = of(events, f.InteractionVoided)
    assert voided.keys == ("k1",) and voided.reason == "skipped"
    assert of(feed.complete(2.5, "m2"), f.InteractionCompleted)[0].keys == ("k2",)


def test_vad_turn_ends_at_the_mapped_position_and_claims_the_audio_key():
    feed = Feed(response_format="voice")
    feed.start()
    feed.greeting()
    feed.sent(1.0, p.SwitchVadMode(vad_mode_on=True))
    feed.got(1.01, p.VadModeSwitched())
    feed.stream(1.1, 2000, key="mic")
    feed.got(1.6, p.VadSpeechStarted(audio_ms=300))
    events = feed.got(2.4, p.VadSpeechEnded(audio_ms=800))
    [ended] = of(events, f.UserTurnEnded)
    assert ended.key == "mic" and ended.source == "vad" and ended.speech_end_t == pytest.approx(1.9)
    assert of(events, f.InteractionStarted)[0].kind == "voice"
    feed.got(2.5, p.UserMessageAvailable(message_id="u", user_message="hi"))
    feed.got(2.9, p.NewMessage(message=PCM_20MS, sequence_number=0, message_id="m", stop=True))
    record = of(feed.complete(3.0, "m"), f.InteractionCompleted)[0].record
    assert record.stamps["speech_start"] == pytest.approx(1.4) and record.stamps["vad_end"] == 2.4
    assert record.latencies["latency_first_audio_ms"] == pytest.approx(1000.0)
    assert record.latencies["vad_latency_first_audio_ms"] == pytest.approx(500.0)
    assert record.latencies["vad_latency_first_answer_audio_ms"] == pytest.approx(500.0)


def test_barge_in_by_vad_and_heard_ms_from_frames():
    feed = Feed(response_format="voice")
    feed.start()
    feed.greeting()
    feed.text(2.0, "tell me", "k")
    for n in range(3):
        feed.got(2.1 + n * 0.01, p.NewMessage(message=PCM_20MS, sequence_number=n, message_id="m"), audio_ms=160)
    assert of(feed.got(2.3, p.VadSpeechStarted(audio_ms=0)), f.BargeIn) == [f.BargeIn(1, 2.3, "vad")]
    record = of(feed.complete(2.4, "m"), f.InteractionCompleted)[0].record
    assert record.interrupted and record.heard_ms == pytest.approx(200.0) and record.heard_source == "frames"


def test_playback_reports_give_first_heard_and_a_late_flush_updates_the_record():
    feed = Feed(response_format="voice")
    feed.start()
    feed.greeting()
    feed.text(2.0, "hi", "k")
    feed.got(2.2, p.NewMessage(message=PCM_20MS, sequence_number=0, message_id="m", stop=True), audio_ms=500)
    done = of(feed.complete(2.3, "m"), f.InteractionCompleted)[0].record
    assert done.heard_ms == 500.0 and done.stamps["first_heard"] is None
    [update] = feed.local(2.5, "playback.progress", message_id="m", played_ms=200.0)
    assert update.record.stamps["first_heard"] == pytest.approx(2.3)
    assert update.record.latencies["latency_first_heard_ms"] == pytest.approx(300.0)
    assert feed.local(2.6, "playback.progress", message_id="m", played_ms=300.0) == []  # nothing new to say
    events = feed.local(2.7, "playback.flushed", message_id="m", played_ms=350.0)
    assert of(events, f.BargeIn) == [f.BargeIn(1, 2.7, "playback")]
    assert of(events, f.InteractionUpdated)[0].record.interrupted
    assert feed.fold.interactions()[1].heard_ms == 350.0 and feed.fold.interactions()[1].heard_source == "playback"
    assert feed.local(2.8, "playback.progress", message_id="unknown", played_ms=1.0) == []
    assert feed.local(2.8, "playback.progress", played_ms=1.0) == []


def test_push_to_talk_ends_at_the_earlier_of_audio_null_and_the_servers_vad_end():
    feed = Feed(response_format="text")
    feed.start()
    feed.greeting()
    feed.stream(2.0, 600, key="ptt")
    feed.got(2.3, p.VadSpeechStarted(audio_ms=100))
    feed.sent(2.6, p.NewAudioMessage(audio=None))
    events = feed.got(2.9, p.VadSpeechEnded(audio_ms=1100))  # the server padded the stream: capped at 2.9
    [ended] = of(events, f.UserTurnEnded)
    assert ended.key == "ptt" and ended.speech_end_t == 2.6


def test_push_to_talk_alone_is_one_turn_and_a_client_hint_counts_when_earlier():
    feed = Feed(response_format="text")
    feed.start()
    feed.greeting()
    feed.stream(2.0, 600, key="ptt")
    feed.local(2.4, "user.speech-ended")
    [ended] = of(feed.sent(2.6, p.NewAudioMessage(audio=None)), f.UserTurnEnded)
    assert ended == f.UserTurnEnded("ptt", "push-to-talk", 2.6, 2.4)


def test_push_to_talk_cut_by_the_servers_vad_ends_the_last_segment_at_audio_null():
    feed = Feed(response_format="text")
    feed.start()
    feed.greeting()
    feed.stream(2.0, 2000, key="ptt")
    feed.got(2.2, p.VadSpeechStarted(audio_ms=100))
    [first] = of(feed.got(2.8, p.VadSpeechEnded(audio_ms=700)), f.UserTurnEnded)
    assert first.key == "ptt"
    events = feed.sent(3.9, p.NewAudioMessage(audio=None))
    assert of(events, f.UserTurnEnded) == []  # the segment was the turn
    record = feed.fold.interactions()[1]
    assert record.stamps["audio_end"] == 3.9 and record.stamps["user_end"] == pytest.approx(2.7)


def test_speech_discarded_is_not_a_turn():
    feed = Feed()
    feed.start()
    feed.greeting()
    feed.sent(1.0, p.SwitchVadMode(vad_mode_on=True))
    feed.stream(1.1, 400)
    feed.got(1.2, p.VadSpeechStarted(audio_ms=50))
    assert feed.got(1.4, p.VadSpeechResetZero(audio_ms=250)) == [f.SpeechDiscarded(1.4, 250)]
    assert feed.sent(1.6, p.NewAudioMessage(audio=None)) == []  # with VAD on, the end of audio is no turn


def test_audio_null_while_vad_speech_is_open_lets_vad_end_the_turn():
    feed = Feed()
    feed.start()
    feed.greeting()
    feed.sent(1.0, p.SwitchVadMode(vad_mode_on=True))
    feed.stream(1.1, 400, key="file")
    feed.got(1.2, p.VadSpeechStarted(audio_ms=50))
    assert feed.sent(1.5, p.NewAudioMessage(audio=None)) == []
    [ended] = of(feed.got(2.0, p.VadSpeechEnded(audio_ms=900)), f.UserTurnEnded)
    assert ended.key == "file" and ended.speech_end_t == 1.5


def test_an_answer_without_vad_speech_ended_ends_the_open_speech():
    feed = Feed(response_format="text")
    feed.start()
    feed.greeting()
    feed.sent(1.0, p.SwitchVadMode(vad_mode_on=True))
    feed.stream(1.1, 400, key="mic")
    feed.got(1.2, p.VadSpeechStarted(audio_ms=50))
    events = feed.got(1.9, p.UserMessageAvailable(message_id="u", user_message="hi"))
    assert of(events, f.UserTurnEnded) == [f.UserTurnEnded("mic", "vad", 1.9, None)]
    assert of(events, f.InteractionStarted)[0].kind == "voice"


def test_vad_speech_ended_without_its_start_is_still_a_turn():
    feed = Feed()
    feed.start()
    feed.greeting()
    [ended] = of(feed.got(3.0, p.VadSpeechEnded()), f.UserTurnEnded)
    assert ended.source == "vad" and ended.speech_end_t == 3.0 and ended.key.startswith("fold-")


def test_switching_vad_drops_push_to_talk_in_progress():
    feed = Feed()
    feed.start()
    feed.stream(1.0, 40, key="ptt")
    [dropped] = of(feed.sent(1.1, p.SwitchVadMode(vad_mode_on=True)), f.InputDropped)
    assert dropped.key == "ptt"
    feed.got(1.11, p.VadModeSwitched(vad_mode_on=False))  # the server's word wins
    feed.stream(1.2, 40, key="ptt2")
    assert of(feed.sent(1.3, p.NewAudioMessage(audio=None)), f.UserTurnEnded)[0].key == "ptt2"


def test_events_ride_with_the_next_interaction_or_start_one_alone():
    feed = Feed(response_format="text")
    feed.start()
    feed.greeting()
    [event_end] = feed.sent(1.5, p.NewTextMessage(text="order shipped", message_type="external-event"), key="e1")
    assert event_end == f.UserTurnEnded("e1", "event", 1.5, 1.5)
    assert feed.fold.pending_inputs() == [f.PendingInput("e1", "event", 1.5, 1.5, "order shipped")]
    [started] = of(feed.text(2.0, "where is it", "k"), f.InteractionStarted)
    assert started.keys == ("e1", "k")
    feed.complete(2.5, "m")
    feed.sent(4.0, p.NewTextMessage(text="payment failed", message_type="external-event"))
    [started] = of(feed.piece(4.5, "m9", 0, "Your payment failed", stop=True), f.InteractionStarted)
    assert started.kind == "event"
    record = of(feed.complete(4.6, "m9"), f.InteractionCompleted)[0].record
    assert record.event_texts == ("payment failed",) and record.latencies["latency_first_text_ms"] == 500.0


def test_output_with_nothing_waiting_opens_an_agent_interaction():
    feed = Feed(response_format="text")
    feed.sent(0.0, p.ContinueConversation(conversation_id="x"))
    feed.got(0.1, p.ConversationContinued(conversation_id="x"))  # no greeting on continue
    [started] = of(feed.complete(0.5, "m", "Still there?"), f.InteractionStarted)
    assert started.kind == "agent"
    assert feed.fold.interactions()[0].reply_text == "Still there?"


def test_pieces_of_a_completed_interaction_are_reported_and_kept_with_it():
    feed = Feed(response_format="text")
    feed.start()
    feed.greeting()
    events = feed.piece(1.0, "g", 1, "late")
    assert of(events, f.AgentPiece)[0].index == 0 and "after interaction 0 completed" in events[0].description


def test_interactions_include_the_one_in_flight():
    feed = Feed(response_format="text")
    feed.start()
    assert [r.status for r in feed.fold.interactions()] == ["open"]
    assert feed.fold.interactions()[0].reply_text is None


def test_unknown_directions_and_local_kinds():
    fold = f.Fold()
    with pytest.raises(ValueError, match="direction"):
        fold.feed("up", p.ExtendTimeout(), 0.0)
    fold.feed_local("connection.reconnecting", 0.0)
    fold.feed("sent", p.ExtendTimeout(), 0.0)
    fold.feed("received", p.UnknownFrame(frame_type="server.new-thing"), 0.0)
    assert fold.events_received() == [] and fold.interactions() == []


def test_audio_clock_memory_is_bounded():
    clock = f.AudioClock()
    for k in range(f._CLOCK_CHUNKS + 10):
        clock.add(20.0, k * 0.02)
    assert len(clock._starts) <= f._CLOCK_CHUNKS
    assert clock.to_t((f._CLOCK_CHUNKS + 5) * 20.0, at_t=1e9) == pytest.approx((f._CLOCK_CHUNKS + 5) * 0.02)
    assert clock.to_t(None, at_t=1.0) is None and f.AudioClock().to_t(5.0, at_t=1.0) is None


def test_a_long_vad_microphone_stream_keeps_the_audio_clock_flat_and_still_maps_each_turn():
    # 30 turns of 8 s of 20 ms chunks (12 000 chunks): the clock forgets what lies before each completed turn.
    feed = Feed(response_format="text", history=0)
    feed.start()
    feed.greeting()
    feed.sent(1.0, p.SwitchVadMode(vad_mode_on=True))
    feed.got(1.01, p.VadModeSwitched())
    sizes = []
    for turn in range(30):
        t0, base_ms = 2.0 + turn * 8.0, turn * 8000.0
        feed.stream(t0, 8000)
        feed.got(t0 + 1.0, p.VadSpeechStarted(audio_ms=base_ms + 200))
        [ended] = of(feed.got(t0 + 3.0, p.VadSpeechEnded(audio_ms=base_ms + 2000)), f.UserTurnEnded)
        assert ended.speech_end_t == pytest.approx(t0 + 2.0)
        feed.piece(t0 + 3.5, f"m{turn}", 0, "a", stop=True)
        [done] = of(feed.complete(t0 + 3.6, f"m{turn}"), f.InteractionCompleted)
        assert done.record.stamps["speech_start"] == pytest.approx(t0 + 0.2)
        sizes.append(len(feed.fold._clock))
    # What stays is the audio sent after the last turn's end (6 s = 300 chunks), not the whole stream.
    assert max(sizes) <= 301 and feed.fold.interactions() == []


def test_the_audio_clock_forgets_nothing_of_a_later_stream():
    feed = Feed(response_format="text")
    feed.start()
    feed.greeting()
    feed.sent(1.0, p.SwitchVadMode(vad_mode_on=True))
    feed.stream(1.1, 2000)
    feed.got(1.5, p.VadSpeechStarted(audio_ms=200))
    feed.got(2.9, p.VadSpeechEnded(audio_ms=1500))
    feed.sent(3.0, p.SwitchVadMode(vad_mode_on=True))  # the stream begins again at 0 before the answer
    feed.stream(3.1, 400)
    feed.piece(3.5, "m", 0, "a", stop=True)
    feed.complete(3.6, "m")
    assert len(feed.fold._clock) == 20


def test_message_and_interaction_memory_is_bounded():
    feed = Feed(response_format="text")
    for n in range(f._MESSAGE_IDS + 10):
        feed.text(n, f"q{n}", f"k{n}")
        feed.piece(n + 0.1, f"m{n}", 0, "a", stop=True)
        feed.complete(n + 0.2, f"m{n}")
    assert len(feed.fold._by_message) <= f._MESSAGE_IDS and len(feed.fold._updatable) <= f._UPDATABLE


def test_pcm_duration_from_base64_length():
    assert f._pcm_ms(PCM_20MS) == 20.0
    assert f._pcm_ms(base64.b64encode(bytes(31)).decode()) == pytest.approx(31 / 32)
    assert f._pcm_ms(base64.b64encode(bytes(32)).decode()) == 1.0


def test_voice_pieces_without_audio_ms_take_their_duration_from_pcm_and_text_from_alignment():
    feed = Feed(response_format="voice")
    feed.start()
    events = feed.got(0.5, p.NewMessage(message=PCM_20MS, sequence_number=0, message_id="g", stop=True,
                                        transcript_alignment=((0, "H"), (10, "i"))))
    assert events[0].has_audio
    record = of(feed.complete(0.6, "g"), f.InteractionCompleted)[0].record
    assert record.reply_audio_ms == 20.0 and record.reply_text == ""
    mp3 = Feed(response_format="voice", audio_format="mp3")
    mp3.start()
    mp3.got(0.5, p.NewMessage(message="AAAA", sequence_number=0, message_id="g"))
    assert of(mp3.complete(0.6, "g", "Hi"), f.InteractionCompleted)[0].record.reply_audio_ms == 0.0


def test_a_key_on_a_later_chunk_names_the_push_to_talk_input():
    feed = Feed()
    feed.start()
    feed.greeting()
    feed.stream(1.0, 40)
    feed.sent(1.05, p.NewAudioMessage(audio=PCM_20MS), key="late-key")
    assert of(feed.sent(1.1, p.NewAudioMessage(audio=None)), f.UserTurnEnded)[0].key == "late-key"


def test_history_bounds_the_records_kept():
    feed = Feed(response_format="text", history=2)
    for n in range(5):
        feed.text(n, f"q{n}", f"k{n}")
        feed.piece(n + 0.2, f"m{n}", 0, "a", stop=True)
        feed.complete(n + 0.5, f"m{n}")
    assert [r.index for r in feed.fold.interactions()] == [3, 4]
    # A late fact about a forgotten interaction is still told, but not kept.
    events = feed.local(9.0, "playback.flushed", message_id="m1", played_ms=1.0)
    assert of(events, f.BargeIn) == [f.BargeIn(1, 9.0, "playback")] and of(events, f.InteractionUpdated)
    assert [r.index for r in feed.fold.interactions()] == [3, 4]
    none = Feed(history=0)
    none.text(0.0, "q", "k")
    none.complete(0.5, "m")
    assert none.fold.interactions() == []
    with pytest.raises(ValueError, match="history"):
        f.Fold(history=-1)


def test_a_key_on_the_audio_end_names_a_push_to_talk_input_whose_chunks_were_unnamed():
    feed = Feed()
    feed.start()
    feed.greeting()
    feed.stream(1.0, 40)  # a live microphone: chunks without a key
    [ended] = of(feed.sent(1.1, p.NewAudioMessage(audio=None), key="mic-turn"), f.UserTurnEnded)
    assert ended.key == "mic-turn" and ended.source == "push-to-talk"


def test_a_key_on_the_audio_end_names_the_vad_speech_in_progress():
    feed = Feed()
    feed.start()
    feed.greeting()
    feed.sent(0.9, p.SwitchVadMode(vad_mode_on=True))
    feed.stream(1.0, 400)
    feed.got(1.2, p.VadSpeechStarted(audio_ms=100))
    assert feed.sent(1.4, p.NewAudioMessage(audio=None), key="file-turn") == []
    assert of(feed.got(1.9, p.VadSpeechEnded(audio_ms=380)), f.UserTurnEnded)[0].key == "file-turn"
    # With no speech in progress, a key on the end of audio names nothing (it would steal a later turn).
    feed.sent(2.0, p.NewAudioMessage(audio=None), key="stray")
    assert of(feed.got(3.0, p.VadSpeechEnded()), f.UserTurnEnded)[0].key != "stray"


def test_pieces_without_message_id_belong_to_the_interaction_in_flight():
    feed = Feed(response_format="text")
    feed.start()
    feed.piece(0.5, "", 0, "Hi", stop=True)
    feed.got(0.6, p.InteractionComplete())
    feed.text(1.0, "q", "k")
    [piece] = feed.piece(1.2, "", 0, "Answer", stop=True)
    assert piece.index == 1
    record = of(feed.got(1.3, p.InteractionComplete()), f.InteractionCompleted)[0].record
    assert record.keys == ("k",) and record.reply_text == "Answer"


def test_an_echo_with_other_case_and_punctuation_is_not_a_skip():
    feed = Feed(response_format="text")
    feed.start()
    feed.greeting()
    feed.text(2.0, "Hello, there!", "k1")
    feed.text(2.1, "hello there", "k2")
    events = feed.got(2.2, p.UserMessageAvailable(message_id="u1", user_message="hello there"))
    assert of(events, f.InteractionVoided) == []
