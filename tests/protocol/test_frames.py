"""Frames: construction checks, parse/serialize, tolerance of unknown types and extra keys."""

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amigo_lab import protocol as p

SERVICE = "6650a1b2c3d4e5f6a7b8c9d0"


def test_every_protocol_type_has_a_frame_class():
    documented = {
        "client.start-conversation", "client.continue-conversation", "client.new-text-message",
        "client.new-audio-message", "client.switch-vad-mode", "client.extend-timeout",
        "client.finish-conversation", "client.close-connection",
        "server.conversation-created", "server.conversation-continued", "server.user-message-available",
        "server.current-agent-action", "server.new-message", "server.interaction-complete",
        "server.vad-mode-switched", "server.vad-speech-started", "server.vad-speech-ended",
        "server.vad-speech-reset-zero", "server.error",
    }
    assert set(p.FRAME_TYPES) == documented


def test_serialize_puts_type_first_and_fields_at_top_level():
    text = p.serialize(p.StartConversation(service_id=SERVICE))
    assert json.loads(text) == {"type": "client.start-conversation", "service_id": SERVICE,
                                "service_version_set_name": "release"}
    assert text.startswith('{"type":')


def test_frames_are_values():
    a = p.NewTextMessage(text="hi")
    assert a == p.NewTextMessage(text="hi", message_type="user-message")
    with pytest.raises(AttributeError):
        a.text = "other"  # type: ignore[misc]


@pytest.mark.parametrize("kwargs, field", [
    ({"service_id": "ABC"}, "service_id"),
    ({"service_id": SERVICE.upper()}, "service_id"),
    ({"service_id": SERVICE, "service_version_set_name": ""}, "service_version_set_name"),
])
def test_start_conversation_validates(kwargs, field):
    with pytest.raises(p.FrameError) as info:
        p.StartConversation(**kwargs)
    assert info.value.field == field
    assert field in str(info.value)


def test_text_message_rejects_empty_text_and_unknown_message_type():
    with pytest.raises(p.FrameError, match="text: must not be empty"):
        p.NewTextMessage(text="  ")
    with pytest.raises(p.FrameError, match="message_type: must be one of"):
        p.NewTextMessage(text="x", message_type="shout")


def test_audio_message_round_trips_bytes_and_end_marker():
    frame = p.NewAudioMessage.from_bytes(b"\x01\x02\x03\x04")
    assert frame.audio_bytes() == b"\x01\x02\x03\x04"
    assert json.loads(p.serialize(frame))["audio"] == base64.b64encode(b"\x01\x02\x03\x04").decode()
    end = p.parse('{"type":"client.new-audio-message","audio":null}')
    assert end == p.NewAudioMessage(audio=None) and end.audio_bytes() is None


def test_bad_base64_names_the_field():
    with pytest.raises(p.FrameError) as info:
        p.parse('{"type":"client.new-audio-message","audio":"not base64!"}')
    assert info.value.field == "audio"


def test_client_bools_are_strict_server_counters_are_read_leniently():
    with pytest.raises(p.FrameError, match="vad_mode_on"):
        p.parse('{"type":"client.switch-vad-mode","vad_mode_on":1}')
    frame = p.NewMessage(message="x", stop=False, sequence_number=True, message_id="m")  # type: ignore[arg-type]
    assert frame.sequence_number is None and frame.unparsed == {"sequence_number": True}
    assert frame.problems == ("sequence_number: want an integer, got True; read as None",)


def test_unknown_type_is_kept_with_its_payload():
    frame = p.parse('{"type":"server.brand-new","a":1,"b":[1,2]}')
    assert isinstance(frame, p.UnknownFrame)
    assert frame.type == "server.brand-new" and frame.payload == {"a": 1, "b": [1, 2]}
    assert json.loads(p.serialize(frame)) == {"type": "server.brand-new", "a": 1, "b": [1, 2]}


def test_extra_keys_are_kept_not_fatal():
    frame = p.parse('{"type":"server.error","http_error_code":400,"error_description":"x","trace_id":"t1"}')
    assert frame == p.ServerError(http_error_code=400, error_description="x", extra={"trace_id": "t1"})
    assert json.loads(p.serialize(frame))["trace_id"] == "t1"


def test_server_vad_fields_are_optional_because_the_service_may_omit_them():
    assert p.parse('{"type":"server.vad-speech-started"}') == p.VadSpeechStarted()
    assert p.parse('{"type":"server.vad-speech-ended","audio_ms":1520}').audio_ms == 1520


def test_new_message_alignment_becomes_tuples_and_audio_decodes():
    frame = p.NewMessage.audio_piece(b"\x00\x01", stop=True, sequence_number=3, message_id="m1",
                                     transcript_alignment=((0, "h"), (80.5, "i")))
    again = p.parse(p.serialize(frame))
    assert again == frame and again.transcript_alignment == ((0, "h"), (80.5, "i"))
    assert again.audio_bytes() == b"\x00\x01"
    with pytest.raises(p.FrameError, match="response_format"):
        p.NewMessage(message="plain text!", stop=False, sequence_number=0, message_id="m").audio_bytes()


def test_agent_action_without_its_type_is_kept_raw_and_flagged():
    frame = p.parse('{"type":"server.current-agent-action","action":{"type":"action-too-long","filler":"One moment"}}')
    assert frame.action_type == "action-too-long" and frame.problems == ()
    odd = p.parse('{"type":"server.current-agent-action","action":{"name":"x"}}')
    assert odd.action == {} and odd.action_type == "" and odd.unparsed == {"action": {"name": "x"}}
    assert odd.problems and odd.problems[0].startswith("action: want an object")
    assert p.parse('{"type":"server.current-agent-action","action":"tool-call-started"}').action_type == \
        "tool-call-started"
    assert p.parse('{"type":"server.current-agent-action"}').action_type == ""


@pytest.mark.parametrize("text, field", [
    ("", None), ("{", None), ("[]", None), ("null", None), ('"x"', None), ("NaN", None),
    ('{"type": 3}', "type"), ('{"no_type": 1}', "type"),
    ('{"type":"client.start-conversation"}', "service_id"),
    ('{"type":"client.new-text-message"}', "text"),
    ('{"type":"server.new-message","stop":false,"sequence_number":0,"message_id":"m"}', "message"),
    ('{"type":"server.new-message","message":7,"message_id":"m"}', "message"),
])
def test_invalid_input_raises_the_documented_error(text, field):
    with pytest.raises(p.FrameError) as info:
        p.parse(text)
    assert info.value.field == field


def test_deep_nesting_is_a_frame_error_not_a_crash():
    with pytest.raises(p.FrameError):
        p.parse("[" * 100_000 + "]" * 100_000)


def test_binary_non_utf8_is_a_frame_error():
    with pytest.raises(p.FrameError, match="UTF-8"):
        p.parse(b"\xff\xfe")


# --- properties ---------------------------------------------------------------------------------------

_text = st.text(min_size=1).filter(lambda s: s.strip())
_hex24 = st.text(alphabet="0123456789abcdef", min_size=24, max_size=24)
_ms = st.one_of(st.integers(0, 10**7), st.floats(0, 1e7, allow_nan=False))
_json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=8))
_extra = st.dictionaries(st.text(min_size=1, max_size=8).map(lambda k: "x_" + k), _json_scalar, max_size=3)

frames = st.one_of(
    st.builds(p.StartConversation, service_id=_hex24, service_version_set_name=_text, extra=_extra),
    st.builds(p.ContinueConversation, conversation_id=_hex24),
    st.builds(p.NewTextMessage, text=_text, message_type=st.sampled_from(["user-message", "external-event"])),
    st.builds(p.NewAudioMessage.from_bytes, st.one_of(st.none(), st.binary(max_size=64))),
    st.builds(p.SwitchVadMode, vad_mode_on=st.booleans()),
    st.builds(p.ExtendTimeout), st.builds(p.FinishConversation), st.builds(p.CloseConnection),
    st.builds(p.ConversationCreated, conversation_id=_text),
    st.builds(p.ConversationContinued, conversation_id=_text),
    st.builds(p.UserMessageAvailable, message_id=st.text(), user_message=st.text()),
    st.builds(p.CurrentAgentAction, action=st.fixed_dictionaries({"type": st.text()}, optional={"filler": st.text()})),
    st.builds(p.NewMessage, message=st.text(), stop=st.booleans(), sequence_number=st.integers(0, 10**6),
              message_id=st.text(), transcript_alignment=st.one_of(
                  st.none(), st.lists(st.tuples(_ms, st.text(min_size=1, max_size=1))).map(tuple))),
    st.builds(p.InteractionComplete, message_id=st.text(), interaction_id=st.text(), full_message=st.text(),
              conversation_completed=st.booleans()),
    st.builds(p.VadModeSwitched, vad_mode_on=st.booleans()),
    st.builds(p.VadSpeechStarted, audio_ms=st.one_of(st.none(), _ms)),
    st.builds(p.VadSpeechEnded, audio_ms=st.one_of(st.none(), _ms)),
    st.builds(p.VadSpeechResetZero, audio_ms=st.one_of(st.none(), _ms)),
    st.builds(p.ServerError, http_error_code=st.integers(100, 599), error_description=st.text()),
    st.builds(p.UnknownFrame, frame_type=st.text(min_size=1).filter(lambda t: t not in p.FRAME_TYPES),
              payload=_extra),
)


@settings(max_examples=300, deadline=None)
@given(frames)
def test_parse_of_serialize_is_identity(frame):
    assert p.parse(p.serialize(frame)) == frame


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(), st.binary(), st.builds(json.dumps, st.recursive(
    _json_scalar, lambda inner: st.one_of(st.lists(inner), st.dictionaries(st.text(max_size=30), inner)),
    max_leaves=10)), st.builds(lambda t, d: json.dumps({"type": t, **d}),
                               st.sampled_from(sorted(p.FRAME_TYPES)), _extra)))
def test_any_input_parses_or_raises_frame_error(text):
    try:
        frame = p.parse(text)
    except p.FrameError:
        return
    assert isinstance(frame, p.Frame)


def test_construction_errors_name_the_field():
    with pytest.raises(p.FrameError, match="text: must be a string"):
        p.NewTextMessage(text=3)  # type: ignore[arg-type]
    with pytest.raises(p.FrameError, match="audio: must be a base64 string or null"):
        p.NewAudioMessage(audio=b"raw")  # type: ignore[arg-type]
    with pytest.raises(p.FrameError, match="known type"):
        p.UnknownFrame(frame_type="server.error")
    with pytest.raises(p.FrameError, match="without 'type'"):
        p.UnknownFrame(frame_type="server.x", payload={"type": "y"})
    with pytest.raises(p.FrameError, match="JSON text"):
        p.parse(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes a Frame"):
        p.serialize({"type": "client.extend-timeout"})  # type: ignore[arg-type]


def test_direction_of_a_frame():
    assert p.ExtendTimeout().is_client and not p.VadSpeechEnded().is_client


def test_lone_surrogates_read_as_replacement_characters_and_are_noted():
    # A JavaScript peer that splits an emoji between pieces sends half of it: valid JSON, not valid Unicode.
    text = '{"type":"server.new-message","message":"hi \\ud83d","stop":true,"sequence_number":0,"message_id":"m"}'
    frame = p.parse(text)
    assert frame.message == "hi \ufffd"
    assert frame.problems == (p.frames.LONE_SURROGATE_PROBLEM,)
    frame.message.encode("utf-8")  # encodable again: the log and the analysis can write it


def test_a_whole_surrogate_pair_is_one_character_and_no_problem():
    text = '{"type":"server.new-message","message":"\\ud83d\\ude00","stop":true,"sequence_number":0,"message_id":"m"}'
    frame = p.parse(text)
    assert frame.message == "\U0001f600"
    assert frame.problems == ()
