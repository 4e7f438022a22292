"""Bad input the frame parser lets through, and work one client could make unbounded: each gets a clear
``server.error`` 400 and the connection stays open (protocol.md §5)."""

from __future__ import annotations

import base64
import json

import pytest
from emulator_wire import BYTES_PER_MS, WireClient, silence

from amigo_lab.emulator import Emulator, Limits
from amigo_lab.emulator.inbound import (
    MAX_DESCRIPTION_CHARS,
    error_description,
    surrogate_field,
)
from amigo_lab.emulator.rendering import SpeechCache
from amigo_lab.emulator.store import FrameRateLimiter

VOICE = "response_format=voice&audio_format=pcm"


def started(client: WireClient) -> WireClient:
    client.start()
    client.interaction()
    return client


def error_of(client: WireClient) -> dict:
    frame = client.recv()
    assert frame["type"] == "server.error" and frame["http_error_code"] == 400, frame
    return frame


def still_answers(client: WireClient) -> None:
    client.say("what time do you open")
    assert client.interaction()[0]["user_message"] == "what time do you open"


def test_a_binary_frame_is_a_400_saying_to_send_text_and_the_connection_stays_open(connect):
    client = started(connect())
    client.ws.send(json.dumps({"type": "client.new-text-message", "text": "hello"}).encode())
    assert "text frame" in error_of(client)["error_description"]
    client.ws.send(b"\xff\xfe not even utf-8")
    error_of(client)
    still_answers(client)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"type":"client.new-text-message","text":"hi \\ud83d"}', "client.new-text-message.text"),
        ('{"type":"client.new-text-message","text":"\\ude00 ok","message_type":"external-event"}',
         "client.new-text-message.text"),
        ('{"type":"client.extend-timeout","note":{"deep":["\\ud83d"]}}', "client.extend-timeout.note.deep[0]"),
        ('{"type":"client.extend-timeout","\\ud83d":1}', "client.extend-timeout."),
    ],
    ids=["user text", "external event", "nested extra value", "extra key"],
)
def test_a_lone_surrogate_is_a_400_naming_the_field(connect, raw, field):
    client = started(connect())
    client.ws.send(raw)
    description = error_of(client)["error_description"]
    assert field in description and "surrogate" in description
    description.encode("utf-8")  # the answer itself is valid Unicode
    still_answers(client)


def test_a_surrogate_event_never_reaches_the_agent(connect):
    client = started(connect("response_format=voice&audio_format=pcm"))
    client.ws.send('{"type":"client.new-text-message","text":"split \\ud83d","message_type":"external-event"}')
    error_of(client)
    client.say("what time do you open")
    frames = client.interaction()
    assert "split" not in frames[-1]["full_message"]


def test_event_and_text_over_their_limits_are_refused_with_the_limit_named():
    limits = Limits(max_event_chars=50, max_text_chars=80)
    with Emulator(realtime=False, limits=limits) as emu:
        client = started(WireClient(emu.port))
        try:
            client.say("x" * 51, message_type="external-event")
            assert "at most 50 characters" in error_of(client)["error_description"]
            client.say("word " * 20)
            assert "at most 80 characters" in error_of(client)["error_description"]
            client.say("the door is open", message_type="external-event")
            client.say("what time do you open")
            assert "the door is open" in client.interaction()[-1]["full_message"]
        finally:
            client.close()


def test_the_default_event_limit_keeps_a_50_kilobyte_event_from_being_synthesized(connect):
    client = started(connect(VOICE))
    client.say("a long event " * 4000, message_type="external-event")
    assert "at most 1000 characters" in error_of(client)["error_description"]


def test_an_error_about_a_huge_value_quotes_only_its_start(connect):
    client = started(connect())
    client.send("client.new-text-message", text="hi", message_type="m" * 547_000)
    raw = client.ws.recv(timeout=10)
    frame = json.loads(raw)
    assert frame["type"] == "server.error" and frame["http_error_code"] == 400
    assert len(raw) < 2 * MAX_DESCRIPTION_CHARS
    assert "message_type" in frame["error_description"] and "547000 characters" in frame["error_description"]
    still_answers(client)


def test_error_description_cuts_quoted_values_and_the_whole():
    text = "frame.field: must be one of ['a', 'b'], got '" + "z" * 5000 + "'; fix it"
    short = error_description(text)
    assert short.endswith("(5000 characters); fix it") and "['a', 'b']" in short
    assert len(error_description("q " * 5000)) <= MAX_DESCRIPTION_CHARS + 40
    assert error_description("bad '\ud83d'").encode("utf-8")


def test_surrogate_field_walks_keys_lists_and_values():
    assert surrogate_field({"type": "t", "a": ["ok", {"b": "\udfff"}]}, "t") == "t.a[1].b"
    assert surrogate_field({"type": "t", "a": "fine é"}, "t") is None


def test_push_to_talk_over_the_utterance_limit_is_refused_per_chunk_and_the_turn_still_ends(speak):
    with Emulator(realtime=False, limits=Limits(max_utterance_s=2.0)) as emu:
        client = started(WireClient(emu.port, query=VOICE))
        try:
            client.send_audio(speak("what time do you open") + silence(300), chunk_ms=100, frames_per_s=80)
            client.send_audio(silence(700), chunk_ms=700, frames_per_s=80)
            description = error_of(client)["error_description"]
            assert "2 s of audio" in description and "audio: null" in description
            client.send("client.new-audio-message", audio=None)
            frames = client.interaction()
            assert frames[0]["user_message"] == "what time do you open"
        finally:
            client.close()


def test_audio_far_faster_than_real_time_is_refused(speak):
    with Emulator(realtime=False, limits=Limits(max_audio_ahead_s=1.0)) as emu:
        client = started(WireClient(emu.port, query=VOICE))
        try:
            chunk = base64.b64encode(silence(500)).decode()
            for _ in range(4):
                client.send("client.new-audio-message", audio=chunk)
            description = error_of(client)["error_description"]
            assert "faster than real time" in description and "1 s allowed" in description
            client.send("client.new-audio-message", audio=None)
            client.interaction()  # the turn made of what was admitted still gets its answer
        finally:
            client.close()


def test_a_vad_utterance_longer_than_the_limit_ends_by_itself(speak):
    with Emulator(realtime=False, limits=Limits(max_utterance_s=1.0)) as emu:
        client = started(WireClient(emu.port, query=VOICE))
        try:
            client.send("client.switch-vad-mode", vad_mode_on=True)
            client.recv_until("server.vad-mode-switched")
            speech = speak("i would like to book an appointment please with the doctor tomorrow morning")
            assert len(speech) > 2 * 1000 * BYTES_PER_MS
            client.send_audio(speech[: int(1.6 * 1000 * BYTES_PER_MS)], chunk_ms=20, frames_per_s=90)
            ended = client.recv_until("server.vad-speech-ended")[-1]
            assert 900 <= ended["audio_ms"] <= 1500
        finally:
            client.close()


def test_the_speech_cache_is_bounded_in_bytes():
    from concurrent.futures import ThreadPoolExecutor

    cache = SpeechCache(max_bytes=1_200_000)
    with ThreadPoolExecutor(2) as pool:
        texts = [f"Reply number {n} is a sentence of ordinary length for the cache." for n in range(12)]
        for text in texts:
            cache.get(text, "eng", "pcm", pool).result()
        assert 0 < cache.size_bytes <= 1_200_000
        assert 0 < len(cache) < len(texts)
        huge = cache.get("This one is long. " * 40, "eng", "pcm", pool).result()
        assert huge.size_bytes > 300_000 and cache.size_bytes <= 1_200_000
        cache.get("This one is long. " * 40, "eng", "pcm", pool).result()  # not kept: rendered again
        assert cache.misses == len(texts) + 2


def test_the_rate_limiter_gives_a_late_reader_slack_but_never_a_flooder():
    now = [0.0]
    limiter = FrameRateLimiter(100, clock=lambda: now[0])
    for step in range(100):  # 50 frames a second for two seconds
        now[0] = step * 0.02
        assert limiter.allow()
    now[0] += 3.0  # the reader stalls 3 s, then takes the 150 frames that waited
    assert all(limiter.allow(slack_s=3.0) for _ in range(150))
    flood = [limiter.allow(slack_s=3.0) for _ in range(1000)]  # 1000 frames at once, no time passing
    assert not all(flood)


def test_a_stalled_server_does_not_close_a_client_that_kept_the_rate_but_a_flooder_still_gets_4429():
    import asyncio
    import threading
    import time as clock

    from websockets.exceptions import ConnectionClosed

    outcome: dict[str, object] = {}

    def microphone(port: int) -> None:
        client = WireClient(port, query=VOICE, token="mic-token")
        try:
            started(client)
            chunk = base64.b64encode(silence(20)).decode()
            begin = clock.monotonic()
            for index in range(250):  # 5 s at 50 frames a second, half the limit
                client.send("client.new-audio-message", audio=chunk)
                clock.sleep(max(0.0, begin + (index + 1) * 0.02 - clock.monotonic()))
            client.send("client.extend-timeout")
            outcome["mic"] = client.quiet_for(1.0)
        except Exception as exc:  # reported below
            outcome["mic"] = exc
        finally:
            client.close()

    def flooder(port: int) -> None:
        client = WireClient(port, token="flood-token")
        started(client)
        try:
            for _ in range(1000):
                client.send("client.extend-timeout")
        except ConnectionClosed:
            pass
        outcome["flood"] = client.expect_close()[0]
        client.close()

    async def scenario() -> None:
        tokens = {"mic-token": "mic-user", "flood-token": "flood-user"}
        async with Emulator(realtime=False, tokens=tokens) as emu:
            mic = threading.Thread(target=microphone, args=(emu.port,))
            mic.start()
            await asyncio.sleep(1.5)
            clock.sleep(2.5)  # noqa: ASYNC251 - the server's loop must stall: the microphone's frames wait
            await asyncio.sleep(3.0)
            flood = threading.Thread(target=flooder, args=(emu.port,))
            flood.start()
            # Joined off the loop, which keeps serving both clients meanwhile.
            await asyncio.to_thread(mic.join)
            await asyncio.to_thread(flood.join)

    asyncio.run(scenario())
    assert isinstance(outcome["mic"], list), outcome["mic"]  # still open, nothing but silence came back
    assert outcome["flood"] == 4429


def test_the_rate_limiter_charges_frames_at_their_arrival_however_late_they_are_read():
    now = [0.0]
    limiter = FrameRateLimiter(100, clock=lambda: now[0])
    now[0] = 10.0  # the reader was 10 s behind, far more than the loop's lag, and takes 500 frames at once
    assert all(limiter.allow(at=index * 0.02) for index in range(500))  # sent at 50 a second: all fine
    # A client sending 200 a second is refused even when every frame is read late.
    flood = [limiter.allow(at=10.0 + index * 0.005) for index in range(400)]
    assert not all(flood)
    assert 200 < sum(flood) < 350
