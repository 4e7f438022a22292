"""The microphone widget's kernel side, fed as the browser feeds it, against the real emulator."""

import threading

import pytest
import traitlets

from amigo_lab.audio import chunk_pcm16, float_to_pcm16, silence
from amigo_lab.widgets import Microphone
from amigo_lab.widgets.mic import CHUNK_BYTES


def _chunks(pcm: bytes) -> list[bytes]:
    pieces = chunk_pcm16(pcm, sr=16000, ms=20)
    if len(pieces[-1]) < CHUNK_BYTES:      # the browser only ever sends whole 20 ms chunks
        pieces[-1] = pieces[-1] + b"\x00" * (CHUNK_BYTES - len(pieces[-1]))
    return pieces


def _in_thread(fn) -> None:
    """Run ``fn`` on another thread, as ipykernel may deliver comm messages off the main thread."""
    errors = []

    def run():
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "delivering microphone messages hung"
    if errors:
        raise errors[0]


def _sent_audio(session):
    frames = session.frames
    return frames[(frames["direction"] == "sent") & (frames["type"] == "client.new-audio-message")]


def test_defaults_match_the_browser_processing_we_ask_for(front_end):
    mic = Microphone()
    assert (mic.echo_cancellation, mic.noise_suppression, mic.auto_gain_control) == (True, True, True)
    assert (mic.mode, mic.state, mic.device_id, mic.devices) == ("push-to-talk", "idle", "", [])
    with pytest.raises(traitlets.TraitError):
        mic.mode = "always-on"
    assert CHUNK_BYTES == 640


def test_push_to_talk_chunks_from_another_thread_become_a_turn(front_end, session, question_pcm, wait_until,
                                                               opening_hours_answer):
    mic = Microphone(session)
    chunks = _chunks(question_pcm)

    def browser_talks():
        for chunk in chunks:
            front_end.custom(mic, {"kind": "chunk"}, [chunk])
        front_end.custom(mic, {"kind": "end"})

    _in_thread(browser_talks)

    assert mic.chunks_received == len(chunks)
    assert mic.received_ms == pytest.approx(20 * len(chunks))
    wait_until(lambda: len(_sent_audio(session)) == len(chunks) + 1, what="every chunk and the end of audio")
    sent = _sent_audio(session)
    assert int(sent["audio_bytes"].sum()) == len(chunks) * CHUNK_BYTES
    assert bool(sent["stop"].iloc[-1])                       # audio: null closes the push-to-talk turn
    heard = wait_until(lambda: [t for t in session.frames.query("type == 'server.user-message-available'")["text"]
                                if "opening hours" in str(t).lower()], what="the transcript of the speech")
    assert heard
    reply = session.turns[-1].result(timeout=30)
    assert reply.text == opening_hours_answer


def test_vad_mode_switches_server_vad_with_the_stream(front_end, session, question_pcm, wait_until):
    mic = Microphone(session, mode="vad")
    front_end.update(mic, state="streaming")
    tail = float_to_pcm16(silence(1200, sr=16000))

    def browser_streams():
        front_end.custom(mic, {"kind": "start", "mode": "vad", "sample_rate": 48000})
        for chunk in _chunks(question_pcm + tail):
            front_end.custom(mic, {"kind": "chunk"}, [chunk])

    _in_thread(browser_streams)
    assert session.vad_on
    wait_until(lambda: (session.frames["type"] == "server.vad-speech-ended").any(),
               what="the server's VAD to hear the end of speech")
    frames = session.frames
    switched = frames[frames["type"] == "server.vad-mode-switched"]
    assert switched["vad_mode_on"].tolist()[:1] == [True]
    assert not _sent_audio(session)["stop"].fillna(False).astype(bool).any()

    _in_thread(lambda: front_end.custom(mic, {"kind": "stop", "mode": "vad"}))
    assert not session.vad_on


def test_switching_mode_while_streaming_switches_server_vad(front_end, session):
    mic = Microphone(session)
    front_end.update(mic, state="streaming")
    mic.mode = "vad"
    assert session.vad_on
    mic.mode = "push-to-talk"
    assert not session.vad_on


def test_without_a_session_callbacks_get_the_audio(front_end):
    mic = Microphone()
    got, ends = [], []
    remove = mic.on_chunk(got.append)
    mic.on_end(lambda: ends.append(True))
    front_end.custom(mic, {"kind": "chunk"}, [b"\x01\x00" * 320])
    front_end.custom(mic, {"kind": "chunk"}, [b"\x01"])          # half a sample: dropped
    front_end.custom(mic, {"kind": "end"})
    remove()
    front_end.custom(mic, {"kind": "chunk"}, [b"\x02\x00" * 320])
    assert got == [b"\x01\x00" * 320]
    assert ends == [True]
    assert mic.chunks_received == 2


def test_a_closed_session_shows_its_error_on_the_widget(front_end, session):
    mic = Microphone(session)
    session.close()
    front_end.custom(mic, {"kind": "chunk"}, [b"\x00\x00" * 320])   # must not raise on the comm thread
    assert mic.error


def test_closing_asks_the_browser_to_release_the_microphone(front_end):
    mic = Microphone()
    comm = mic.comm
    mic.close()
    assert ({"kind": "release"}, []) in comm.published
    assert mic.comm is None
