"""Behaviour profiles (response timing with fillers, network latency and loss, endpointing) and the demo
service's version sets, over loopback."""

from __future__ import annotations

import random
import statistics
import time

import pytest
from emulator_wire import WireClient, of_type, pieces, silence

from amigo_lab.emulator import Emulator
from amigo_lab.emulator.profiles import (
    PROFILES,
    Endpointing,
    Network,
    Profile,
    ResponseTiming,
    resolve_profile,
)

VOICE = "response_format=voice&audio_format=pcm"
HOURS = "what time do you open"


def test_named_profiles_resolve_and_an_unknown_name_says_which_exist():
    assert resolve_profile(None) is PROFILES["instant"] and resolve_profile("realistic").response is not None
    with pytest.raises(ValueError, match="instant"):
        resolve_profile("sluggish")
    with pytest.raises(ValueError, match="p50_s"):
        ResponseTiming(p50_s=2.0, p90_s=1.0)
    with pytest.raises(ValueError, match="semantic"):
        Endpointing(mode="semantic")
    with pytest.raises(ValueError, match="loss"):
        Network(loss=1.5)
    with pytest.raises(ValueError, match="unknown emulator profile"):
        Emulator(profile="nope")


def test_response_delays_follow_the_configured_distribution():
    timing = PROFILES["realistic"].response
    assert timing is not None
    rng = random.Random(3)
    draws = sorted(timing.draw(rng) for _ in range(4000))
    assert 0.9 <= statistics.median(draws) <= 1.7  # production agents: p50 about 0.9-1.7 s
    assert abs(draws[int(0.9 * len(draws))] - timing.p90_s) < 0.25
    assert draws[0] >= timing.min_s and draws[-1] <= timing.max_s


def test_a_slow_turn_gets_a_filler_then_the_answer_no_earlier_than_its_delay():
    slow = Profile(name="slow", response=ResponseTiming(p50_s=1.5, p90_s=1.5, min_s=1.5, filler_over_s=1.0,
                                                         filler_after_s=0.3))
    with Emulator(realtime=False, profile=slow) as emu:
        client = WireClient(emu.port, query="response_format=text&current_agent_action_type=.*")
        try:
            client.start()
            client.interaction()  # the greeting is not delayed
            sent = time.monotonic()
            client.say(HOURS)
            frames = client.interaction()
            answered = time.monotonic()
        finally:
            client.close()
    actions = of_type(frames, "server.current-agent-action")
    assert [a["action"]["type"] for a in actions] == ["action-too-long"]
    complete = frames[-1]
    messages = [f["message_id"] for f in of_type(frames, "server.new-message")]
    filler_id = messages[0]
    assert filler_id != complete["message_id"] and "moment" in "".join(p["message"] for p in pieces(frames, filler_id))
    assert "eight in the morning" in complete["full_message"]
    assert answered - sent >= 1.4


def test_the_instant_profile_answers_without_filler(connect):
    client = connect()
    client.start()
    client.interaction()
    client.say(HOURS)
    frames = client.interaction()
    assert not of_type(frames, "server.current-agent-action")
    assert len({f["message_id"] for f in of_type(frames, "server.new-message")}) == 1


def test_network_latency_delays_every_frame_and_keeps_their_order():
    laggy = Profile(name="laggy", network=Network(latency_ms=250, jitter_ms=80, loss=0.2), seed=5)
    with Emulator(realtime=False, profile=laggy) as emu:
        client = WireClient(emu.port, query=VOICE)
        try:
            client.start()
            client.interaction()
            sent = time.monotonic()
            client.say(HOURS)
            first = client.recv()
            first_at = time.monotonic()
            frames = [first, *client.interaction()]
        finally:
            client.close()
    assert first["type"] == "server.user-message-available" and first_at - sent >= 0.2
    group = pieces(frames, frames[-1]["message_id"])
    assert [p["sequence_number"] for p in group] == list(range(len(group))) and group[-1]["stop"]


def test_endpointing_silence_waits_the_configured_silence(speak):
    patient = Profile(name="patient", endpointing=Endpointing(end_silence_ms=1200))
    with Emulator(realtime=False, profile=patient) as emu:
        client = WireClient(emu.port, query=VOICE)
        try:
            client.start()
            client.interaction()
            client.send("client.switch-vad-mode", vad_mode_on=True)
            client.recv_until("server.vad-mode-switched")
            client.send_audio(speak(HOURS) + silence(800), chunk_ms=20, frames_per_s=90)
            heard = client.quiet_for(0.5)
            assert "vad-speech-started" in client.kinds(heard) and "vad-speech-ended" not in client.kinds(heard)
            client.send_audio(silence(600), chunk_ms=20, frames_per_s=90)
            ended = client.recv_until("server.vad-speech-ended")[-1]
            assert client.interaction()[0]["user_message"] == HOURS
        finally:
            client.close()
    assert ended["audio_ms"] > 0


@pytest.mark.parametrize(("version_set", "greeting", "hours"), [
    ("release", "Hello, this is Riverside Clinic", "from eight in the morning"),
    ("canary", "Good day, Riverside Clinic speaking", "Our doors open at eight"),
])
def test_version_sets_of_the_demo_service_differ_as_configured(connect, version_set, greeting, hours):
    client = connect()
    client.start(service_version_set_name=version_set)
    assert greeting in client.interaction()[-1]["full_message"]
    client.say(HOURS)
    assert hours in client.interaction()[-1]["full_message"]


def test_the_canary_version_set_answers_later_than_release():
    gaps = {}
    # Two users: a user has one unfinished conversation per service.
    with Emulator(realtime=False, tokens={"user-0": "user-0", "user-1": "user-1"}) as emu:
        for index, version_set in enumerate(("release", "canary")):
            client = WireClient(emu.port, token=f"user-{index}")
            try:
                client.start(service_version_set_name=version_set)
                client.interaction()
                sent = time.monotonic()
                client.say(HOURS)
                client.interaction()
                gaps[version_set] = time.monotonic() - sent
            finally:
                client.close()
    assert gaps["canary"] >= 0.75  # its configured 0.8 s; release (instant) adds nothing
