"""Lenient reading of server frames: defaults, alternative shapes, raw kept and flagged, primary payload kept."""

import base64
import json

import pytest

from amigo_lab import protocol as p
from amigo_lab.protocol import wire

AUDIO = base64.b64encode(b"\x01\x00\x02\x00").decode()
WANT = ((0, "h"), (80, "i"))


def piece(**fields):
    return json.dumps({"type": "server.new-message", "message": AUDIO, "message_id": "m", **fields})


def test_omitted_false_and_zero_fields_take_their_natural_defaults():
    frame = p.parse('{"type":"server.new-message","message":"hi","message_id":"m"}')
    assert (frame.stop, frame.sequence_number, frame.transcript_alignment, frame.problems) == (False, None, None, ())
    done = p.parse('{"type":"server.interaction-complete","message_id":"m","interaction_id":"i"}')
    assert done.conversation_completed is False and done.full_message is None and done.problems == ()
    assert p.parse('{"type":"server.user-message-available"}') == p.UserMessageAvailable(message_id="", user_message="")
    assert p.parse('{"type":"server.vad-mode-switched"}').vad_mode_on is None
    assert p.parse('{"type":"server.error"}') == p.ServerError(http_error_code=None, error_description="")


@pytest.mark.parametrize("alignment", [
    [[0, "h"], [80, "i"]],
    [["h", 0], ["i", 80]],
    [{"char": "h", "ms": 0}, {"char": "i", "ms": 80}],
    [{"character": "h", "start_ms": 0}, {"character": "i", "start_ms": 80}],
    [{"char": "h", "start_time_ms": 0}, {"char": "i", "time": 80}],
    [{"char": "h", "start_time_seconds": 0.0}, {"char": "i", "start_time_seconds": 0.08}],
    {"chars": ["h", "i"], "charStartTimesMs": [0, 80], "charDurationsMs": [80, 80]},
    {"chars": "hi", "charStartTimesMs": [0, 80]},
    {"characters": ["h", "i"], "character_start_times_seconds": [0.0, 0.08],
     "character_end_times_seconds": [0.08, 0.16]},
])
def test_alignment_shapes_are_normalised_to_ms_char_pairs(alignment):
    frame = p.parse(piece(sequence_number=0, transcript_alignment=alignment))
    assert frame.problems == ()
    assert [(round(ms, 6), c) for ms, c in frame.transcript_alignment] == list(WANT)


@pytest.mark.parametrize("alignment", ["hi", 5, [[0]], [{"ms": 0}], [{"char": "h"}], {"chars": ["h"]},
                                       {"chars": ["h", "i"], "charStartTimesMs": [0]}, [[True, "h"]]])
def test_unreadable_alignment_is_kept_raw_and_flagged_while_the_audio_survives(alignment):
    frame = p.parse(piece(sequence_number=0, transcript_alignment=alignment))
    assert frame.transcript_alignment is None
    assert frame.unparsed == {"transcript_alignment": alignment}
    assert len(frame.problems) == 1 and frame.problems[0].startswith("transcript_alignment: want")
    assert frame.audio_bytes() == b"\x01\x00\x02\x00"


def test_normalise_alignment_accepts_none_and_tuples():
    assert p.normalise_alignment(None) is None
    assert p.normalise_alignment(((0, "h"),)) == ((0, "h"),)
    with pytest.raises(ValueError):
        p.normalise_alignment({"characters": ["h"], "character_start_times_seconds": ["x"]})


@pytest.mark.parametrize("wire_value, code", [("400", 400), (" 503 ", 503), (404.0, 404), (None, None)])
def test_error_codes_as_strings_or_floats_become_ints(wire_value, code):
    frame = p.parse(json.dumps({"type": "server.error", "http_error_code": wire_value, "error_description": "x"}))
    assert frame.http_error_code == code and frame.problems == ()


@pytest.mark.parametrize("wire_value", ["bad", 4.5, True, [400]])
def test_unreadable_error_code_is_none_and_flagged(wire_value):
    frame = p.parse(json.dumps({"type": "server.error", "http_error_code": wire_value, "error_description": "x"}))
    assert frame.http_error_code is None and frame.unparsed == {"http_error_code": wire_value}


def test_a_wire_key_named_extra_does_not_clash_with_the_field():
    frame = p.parse('{"type":"server.error","http_error_code":400,"error_description":"x","extra":{"a":1}}')
    assert frame.extra == {"extra": {"a": 1}}
    assert json.loads(p.serialize(frame))["extra"] == {"a": 1}
    with pytest.raises(p.FrameError, match="repeats defined keys"):
        p.ServerError(http_error_code=400, error_description="x", extra={"error_description": "y"})
    with pytest.raises(p.FrameError, match="mapping"):
        p.ServerError(http_error_code=400, error_description="x", extra=[])  # type: ignore[arg-type]


@pytest.mark.parametrize("fields, attr, value", [
    ({"stop": "true"}, "stop", True), ({"stop": 0}, "stop", False), ({"stop": "FALSE"}, "stop", False),
    ({"sequence_number": "3"}, "sequence_number", 3), ({"sequence_number": 2.0}, "sequence_number", 2),
    ({"message_id": 12}, "message_id", "12"),
])
def test_plausible_scalar_shapes_are_normalised_silently(fields, attr, value):
    frame = p.parse(piece(**fields))
    assert getattr(frame, attr) == value and frame.problems == ()


@pytest.mark.parametrize("fields, attr, default", [
    ({"stop": "maybe"}, "stop", False), ({"stop": 2}, "stop", False),
    ({"sequence_number": "x"}, "sequence_number", None), ({"sequence_number": 1.5}, "sequence_number", None),
    ({"message_id": None}, "message_id", ""), ({"message_id": {"id": 1}}, "message_id", ""),
])
def test_unreadable_scalars_take_the_default_and_are_flagged(fields, attr, default):
    frame = p.parse(piece(**fields))
    assert getattr(frame, attr) == default and frame.unparsed == {attr: fields[attr]}
    assert frame.audio_bytes() == b"\x01\x00\x02\x00"


def test_negative_sequence_number_is_kept_and_flagged():
    frame = p.parse(piece(sequence_number=-1))
    assert frame.sequence_number == -1 and frame.problems == ("sequence_number: negative (-1)",)


def test_null_message_is_an_empty_piece_flagged():
    frame = p.parse('{"type":"server.new-message","message":null,"stop":true,"message_id":"m"}')
    assert frame.message == "" and frame.stop is True and "message: null" in frame.problems[0]


@pytest.mark.parametrize("text, attr, value", [
    ('{"type":"server.vad-speech-ended","audio_ms":"1520.5"}', "audio_ms", 1520.5),
    ('{"type":"server.vad-speech-ended","audio_ms":"soon"}', "audio_ms", None),
    ('{"type":"server.vad-speech-ended","audio_ms":"inf"}', "audio_ms", None),
    ('{"type":"server.vad-speech-ended","audio_ms":[1]}', "audio_ms", None),
    ('{"type":"server.vad-mode-switched","vad_mode_on":"true"}', "vad_mode_on", True),
    ('{"type":"server.interaction-complete","conversation_completed":"yes"}', "conversation_completed", False),
    ('{"type":"server.interaction-complete","full_message":42}', "full_message", "42"),
    ('{"type":"server.conversation-created","conversation_id":123}', "conversation_id", "123"),
])
def test_other_server_fields_read_leniently(text, attr, value):
    assert getattr(p.parse(text), attr) == value


def test_init_ack_without_an_id_is_flagged():
    frame = p.parse('{"type":"server.conversation-continued"}')
    assert frame.conversation_id == "" and "cannot be continued" in frame.problems[0]


def test_field_and_type_aliases_map_onto_our_names():
    frame = p.parse('{"type":"server.new-message","audio":"' + AUDIO + '","messageId":"m","sequenceNumber":0,'
                    '"alignment":[[0,"h"]]}')
    assert (frame.message_id, frame.sequence_number, frame.transcript_alignment) == ("m", 0, ((0, "h"),))
    resumed = p.parse('{"type":"server.conversation-resumed","conversationId":"abc"}')
    assert resumed == p.ConversationContinued(conversation_id="abc")
    both = p.parse('{"type":"server.error","code":500,"http_error_code":400}')
    assert both.http_error_code == 400 and both.extra == {"code": 500}


def test_client_must_not_judge_server_id_formats_but_the_server_judges_client_ids():
    assert p.ContinueConversation(conversation_id="conv-42").strict_problems()
    assert p.ContinueConversation(conversation_id="a" * 24).strict_problems() == []
    assert p.ConversationCreated(conversation_id="not-hex").strict_problems() == []
    with pytest.raises(p.FrameError, match="must not be empty"):
        p.ContinueConversation(conversation_id="")


def test_init_ack_helpers():
    created = p.ConversationCreated(conversation_id="c1")
    assert p.is_init_ack(created, None) and not p.is_init_ack(created, "c2") and p.is_init_ack(created, "c1")
    other = p.parse('{"type":"server.conversation-resumed-v2","id":"c2"}')
    assert p.init_ack_id(other) == "c2" and p.is_init_ack(other, "c2")
    bare = p.parse('{"type":"server.conversation-ok"}')
    assert p.init_ack_id(bare) is None and p.is_init_ack(bare, "c9")
    assert not p.is_init_ack(p.ServerError(http_error_code=404), "c1") and p.init_ack_id(p.VadModeSwitched()) is None


def test_vad_ack_without_its_field_answers_what_was_asked():
    assert p.is_vad_ack(p.VadModeSwitched(), True) and p.is_vad_ack(p.VadModeSwitched(), False)
    assert p.is_vad_ack(p.VadModeSwitched(vad_mode_on=True), True)
    assert not p.is_vad_ack(p.VadModeSwitched(vad_mode_on=False), True)
    assert not p.is_vad_ack(p.VadSpeechStarted(), True)


def test_required_table_covers_every_field_without_a_default():
    from dataclasses import MISSING, fields
    for name, cls in p.FRAME_TYPES.items():
        needed = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        assert needed == set(wire.REQUIRED.get(name, ())), name


def test_every_alias_names_a_field_of_its_frame():
    from dataclasses import fields
    for frame_type, aliases in wire.FIELD_ALIASES.items():
        names = {f.name for f in fields(p.FRAME_TYPES[frame_type])}
        assert set(aliases.values()) <= names, frame_type
    assert set(wire.TYPE_ALIASES.values()) <= set(p.FRAME_TYPES)


def test_long_problem_values_are_shortened():
    frame = p.parse(piece(transcript_alignment="x" * 500))
    assert len(frame.problems[0]) < 300 and frame.unparsed["transcript_alignment"] == "x" * 500


@pytest.mark.parametrize("extra, rate", [
    ({}, None), ({"sample_rate": 24000}, 24000), ({"sampleRate": "8000"}, 8000), ({"sample_rate_hz": 22050.0}, 22050),
    ({"output_format": "pcm_24000"}, 24000), ({"encoding": "LINEAR16-16000"}, 16000),
    ({"format": "mp3_44100_128"}, None),
    ({"sample_rate": True}, None), ({"sample_rate": -1}, None), ({"sample_rate": "fast"}, None),
    ({"sample_rate": 0.5}, None), ({"audio_format": 24000}, None),
])
def test_announced_sample_rate(extra, rate):
    frame = p.parse(json.dumps({"type": "server.new-message", "message": AUDIO, "message_id": "m", **extra}))
    assert p.announced_sample_rate(frame) == rate


def test_numeric_types_other_than_int_and_float_become_plain_numbers():
    from fractions import Fraction

    frame = p.NewMessage(message="x", sequence_number=0, message_id="m",
                         transcript_alignment=((Fraction(1, 2), "a"),))  # type: ignore[arg-type]
    assert frame.transcript_alignment == ((0.5, "a"),) and type(frame.transcript_alignment[0][0]) is float
    assert json.loads(p.serialize(frame))["transcript_alignment"] == [[0.5, "a"]]
    assert p.VadSpeechEnded(audio_ms=Fraction(3, 2)).audio_ms == 1.5  # type: ignore[arg-type]
    assert p.UserMessageAvailable(message_id=Fraction(4, 1)).message_id == "4.0"  # type: ignore[arg-type]


PCM = bytes(range(256)) * 4 + b"\x07"  # 1,025 bytes: the standard form needs padding


@pytest.mark.parametrize(("text", "mended"), [
    (base64.b64encode(PCM).decode(), None),
    (base64.encodebytes(PCM).decode(), "line breaks"),
    (base64.encodebytes(PCM).decode().replace("\n", "\r\n"), "line breaks"),
    (base64.urlsafe_b64encode(PCM).decode(), "the URL-safe alphabet"),
    (base64.b64encode(PCM).decode().rstrip("="), "no padding"),
    (base64.urlsafe_b64encode(PCM).decode().rstrip("="), "the URL-safe alphabet, no padding"),
    ("data:audio/pcm;base64," + base64.b64encode(PCM).decode(), "a data URI prefix (audio/pcm)"),
    ("data:;base64," + base64.b64encode(PCM).decode().rstrip("="), "a data URI prefix, no padding"),
])
def test_agent_audio_in_another_encoders_base64_is_decoded_and_noted(text, mended):
    assert p.decode_audio_base64(text) == (PCM, mended)
    frame = p.parse(json.dumps({"type": "server.new-message", "message": text, "message_id": "m"}))
    assert frame.audio_bytes() == PCM
    assert frame.problems == (() if mended is None else (f"message: base64 audio with {mended}; decoded",))


@pytest.mark.parametrize("text", [
    "Thanks",                                                   # short: could pass for unpadded base64
    "Sure, I can help you with that appointment tomorrow morning at nine",   # spaces: text, not audio
    "x" * 63 + "!",                                              # not base64 in any form
    "QUJD" * 20 + "Q",                                           # a length no base64 has
])
def test_text_is_not_taken_for_audio_in_a_mended_form(text):
    with pytest.raises(ValueError):
        p.decode_audio_base64(text)
    frame = p.parse(json.dumps({"type": "server.new-message", "message": text, "message_id": "m"}))
    with pytest.raises(p.FrameError, match="is not base64 audio"):
        frame.audio_bytes()


def test_a_message_of_several_frames_splits_into_each_verbatim():
    one = '{"type":"server.vad-speech-started","audio_ms":1}'
    two = '{"type": "server.vad-speech-ended", "audio_ms": 2}'
    assert p.split_batched(f"{one}\n{two}\n") == [one, two]
    assert p.split_batched(f"  {one}{two}") == [one, two]          # back to back, no line between
    assert [type(p.parse(part)) for part in p.split_batched(f"{one}\r\n{two}")] == [p.VadSpeechStarted,
                                                                                   p.VadSpeechEnded]
    with pytest.raises(p.FrameError, match="not valid JSON"):
        p.parse(f"{one}\n{two}")                                     # parse itself takes one frame only


@pytest.mark.parametrize("text", ['{"type":"server.error"}', '{"type":"server.error"}\n', "", "   ",
                                  '{"type":"server.error"}\n{"type": oops}', "not json at all"])
def test_anything_but_several_json_values_is_no_batch(text):
    assert p.split_batched(text) is None


@pytest.mark.parametrize("spelled", ["server.new_message", "newMessage", "NewMessage", "SERVER.NEW-MESSAGE",
                                     "new-message", "server:new_message"])
def test_a_server_type_in_another_spelling_is_read_as_ours_and_noted(spelled):
    frame = p.parse(json.dumps({"type": spelled, "message": AUDIO, "message_id": "m"}))
    assert isinstance(frame, p.NewMessage) and frame.type == "server.new-message"
    assert frame.audio_bytes() == b"\x01\x00\x02\x00"
    assert frame.problems == (f"type: {spelled!r} read as 'server.new-message' (another spelling of the name)",)


def test_spelled_aliases_and_unknown_or_client_names_keep_their_rules():
    resumed = p.parse('{"type":"conversationResumed","conversation_id":"c1"}')
    assert resumed.type == wire.CONVERSATION_CONTINUED_TYPE and resumed.problems
    assert p.parse('{"type":"server.conversation-resumed","conversation_id":"c1"}').problems == ()  # an alias
    assert isinstance(p.parse('{"type":"server.debug_info"}'), p.UnknownFrame)
    # A client's frame in another spelling is not ours to mend: the emulator answers it with 400.
    assert isinstance(p.parse('{"type":"client.new_text_message","text":"hi"}'), p.UnknownFrame)
    assert wire.server_type_spelled_otherwise("newTextMessage") is None
