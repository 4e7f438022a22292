"""The emulator's parts without sockets: service files, matching, the scripted agent, rendering, limits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from amigo_lab.audio import decode_mp3
from amigo_lab.emulator import (
    AgentReply,
    AgentTurn,
    Refusal,
    ScriptedAgent,
    ServiceError,
    load_services,
)
from amigo_lab.emulator.matching import best_match, detect_language, normalise
from amigo_lab.emulator.rendering import SpeechCache, render_speech, text_pieces
from amigo_lab.emulator.services import SERVICES_ENV, services_dir
from amigo_lab.emulator.store import ConversationStore, FrameRateLimiter
from amigo_lab.protocol.constants import LANGUAGES
from amigo_lab.speech import Recognizer, Synthesizer

DATA = Path(__file__).resolve().parents[2] / "data" / "services"
CLINIC = "6650a1b2c3d4e5f6a7b8c9d0"


@pytest.fixture(scope="module")
def services():
    return load_services(DATA)


@pytest.fixture(scope="module")
def clinic(services):
    return services[CLINIC]


# --- service files ------------------------------------------------------------------------------------


def test_the_shipped_services_speak_all_six_languages(services):
    assert len(services) >= 2 and services[CLINIC].version_sets[0] == "release"
    for service in services.values():
        for texts in (service.greeting, service.fallback, service.event_ack):
            assert set(texts) == set(LANGUAGES), service.name
        for intent in service.intents:
            assert set(intent.reply) == set(LANGUAGES) and set(intent.phrases) == set(LANGUAGES), intent.name
            if intent.tool is not None and intent.tool.seconds > 1.5:
                assert set(intent.tool.filler) == set(LANGUAGES), intent.name
    tools = {i.tool.name: i.tool.seconds for i in services[CLINIC].intents if i.tool}
    assert tools["check_calendar"] > 1.5 and any(i.farewell for i in services[CLINIC].intents)


def test_every_english_phrase_is_in_the_recognizers_dictionary(services):
    for service in services.values():
        assert Recognizer(service.english_phrases()).skipped_words == ()


def test_the_services_directory_comes_from_the_argument_then_the_environment(tmp_path, monkeypatch):
    shutil.copy(DATA / "riverside_clinic.json", tmp_path / "clinic.json")
    monkeypatch.setenv(SERVICES_ENV, str(tmp_path))
    assert services_dir() == tmp_path
    assert list(load_services()) == [CLINIC]
    assert services_dir(DATA) == DATA


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update(id="XYZ"), "id: must be 24 lowercase hex"),
        (lambda s: s.pop("greeting"), "greeting: must be a JSON object"),
        (lambda s: s["fallback"].pop("eng"), "fallback: needs a text in the default language"),
        (lambda s: s["intents"][0]["phrases"].update(klingon=["qapla"]), "unknown language 'klingon'"),
        (lambda s: s["intents"][1]["tool"].update(seconds="slow"), "intents[1].tool.seconds"),
        (lambda s: s["intents"].append(dict(s["intents"][0])), "intent names must be unique"),
    ],
    ids=["bad id", "no greeting", "no default-language fallback", "unknown language", "bad tool seconds",
         "duplicate intent"],
)
def test_an_invalid_service_file_names_the_file_and_field(tmp_path, change, message):
    raw = json.loads((DATA / "riverside_clinic.json").read_text(encoding="utf-8"))
    change(raw)
    (tmp_path / "broken.json").write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ServiceError) as info:
        load_services(tmp_path)
    assert "broken.json" in str(info.value) and message in str(info.value)


def test_two_files_with_one_id_or_an_empty_directory_are_errors(tmp_path):
    with pytest.raises(ServiceError, match=r"no \*.json"):
        load_services(tmp_path)
    for name in ("a.json", "b.json"):
        shutil.copy(DATA / "riverside_clinic.json", tmp_path / name)
    with pytest.raises(ServiceError, match="also used by"):
        load_services(tmp_path)


# --- matching and languages -------------------------------------------------------------------------------


def test_normalise_strips_case_accents_and_punctuation():
    assert normalise("¿A QUÉ hora abren?") == "a que hora abren"
    assert normalise("Öffnungszeiten, bitte!") == "offnungszeiten bitte"


@pytest.mark.parametrize(
    ("text", "intent", "language"),
    [
        ("hola, ¿a qué hora abren?", "opening_hours", "spa"),
        ("What time do you open?", "opening_hours", "eng"),
        ("I want to cancel my appointment", "cancel_appointment", "eng"),
        ("Ich möchte einen Termin vereinbaren", "book_appointment", "deu"),
        ("Quali sono i vostri orari?", "opening_hours", "ita"),
        ("Estão abertos hoje?", "opening_hours", "por"),
        ("au revoir", "goodbye", "fra"),
    ],
)
def test_the_best_phrase_picks_the_intent_and_the_language(clinic, text, intent, language):
    match = best_match(text, clinic, prefer_language="eng")
    assert (match.intent.name, match.language) == (intent, language)


def test_unmatched_text_falls_back_to_language_identification(clinic):
    assert best_match("do you know the weather", clinic) is None
    assert detect_language("me gustaría saber si tienen aparcamiento gratis", clinic, current="eng") == "spa"
    assert detect_language("das Wetter ist heute sehr schön", clinic, current="eng") == "deu"
    assert detect_language("ok", clinic, current="ita") == "ita"  # too short to judge: keep the language


def _turn(clinic, text, language="eng", events=()):
    return AgentTurn(text=text, language=language, events=events, history=(), conversation_id="c" * 24,
                     service=clinic)


def test_the_scripted_agent_replies_uses_tools_and_says_goodbye(clinic):
    agent = ScriptedAgent()
    reply = agent(_turn(clinic, "quiero pedir una cita", "spa"))
    assert reply.language == "spa" and reply.text.startswith("Le he reservado")
    assert reply.tool.name == "check_calendar" and reply.tool.filler == "Un momento, estoy consultando la agenda."
    assert agent(_turn(clinic, "goodbye")).end_conversation is True
    assert agent(_turn(clinic, "tell me a joke")).text.startswith("Sorry, I did not understand")
    evented = agent(_turn(clinic, "", events=((0.0, "the doctor is running late"),)))
    assert evented.text == "I see that the doctor is running late." and evented.tool is None


def test_agent_reply_validates_its_fields():
    with pytest.raises(ValueError, match="language"):
        AgentReply("hi", "klingon")
    with pytest.raises(ValueError, match="text"):
        AgentReply("  ", "eng")
    with pytest.raises(ValueError, match="seconds"):
        AgentReply("hi", "eng", tool=("lookup", -1))


# --- rendering ----------------------------------------------------------------------------------------------


def test_text_pieces_are_a_few_words_that_join_back():
    text = "We are open on weekdays, from eight to six."
    parts = text_pieces(text)
    assert "".join(parts) == text and all(len(p.split()) <= 3 for p in parts) and len(parts) == 3


@pytest.mark.parametrize("audio_format", ["pcm", "mp3"])
def test_rendered_speech_pieces_partition_the_text_and_the_audio(audio_format):
    speech = Synthesizer().synthesize("One moment while I check the calendar.", language="eng")
    rendered = render_speech(speech, audio_format)
    assert "".join(p.text for p in rendered.pieces) == speech.text
    assert rendered.duration_ms == pytest.approx(speech.duration_ms, abs=1)
    assert all(100 <= p.duration_ms <= 200 for p in rendered.pieces[:-1]) and rendered.pieces[-1].duration_ms <= 200
    starts = [p.start_ms for p in rendered.pieces]
    assert starts == sorted(starts) and starts[0] == 0
    if audio_format == "mp3":
        decoded = [decode_mp3(p.audio) for p in rendered.pieces]
        assert [len(x) for x in decoded] == [round(p.duration_ms * 16) for p in rendered.pieces]
    else:
        assert b"".join(p.audio for p in rendered.pieces) == speech.pcm


def test_the_speech_cache_synthesizes_each_reply_once():
    from concurrent.futures import ThreadPoolExecutor

    calls = []

    def synthesize(text, *, language):
        calls.append((text, language))
        return Synthesizer().synthesize(text, language=language)

    cache = SpeechCache(entries=2, synthesize=synthesize)
    with ThreadPoolExecutor(2) as pool:
        first = cache.get("Hello there.", "eng", "pcm", pool).result()
        again = cache.get("Hello there.", "eng", "pcm", pool).result()
        cache.get("Hola.", "spa", "pcm", pool).result()
        cache.get("Bonjour.", "fra", "pcm", pool).result()  # evicts the oldest
        cache.get("Hello there.", "eng", "pcm", pool).result()
    assert first is again
    assert calls == [("Hello there.", "eng"), ("Hola.", "spa"), ("Bonjour.", "fra"), ("Hello there.", "eng")]
    assert np.frombuffer(first.pieces[0].audio, "<i2").size > 0


# --- store and limits -----------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_store_enforces_one_unfinished_conversation_and_the_start_rate():
    clock = FakeClock()
    store = ConversationStore(clock=clock)
    record = store.start("ann", CLINIC, "release", "eng")
    with pytest.raises(Refusal) as info:
        store.start("ann", CLINIC, "release", "eng")
    assert info.value.close_code == 4429  # still connected
    store.release(record)
    with pytest.raises(Refusal) as info:
        store.start("ann", CLINIC, "release", "eng")
    assert info.value.close_code == 4409 and record.id in info.value.reason
    store.finish(record)
    for _ in range(4):
        another = store.start("ann", CLINIC, "release", "eng")
        store.finish(another)
        store.release(another)
    with pytest.raises(Refusal) as info:
        store.start("ann", CLINIC, "release", "eng")
    assert info.value.close_code == 4429
    clock.now += 60
    assert store.start("ann", CLINIC, "release", "eng").user_id == "ann"


def test_the_store_refuses_unknown_foreign_and_finished_conversations():
    store = ConversationStore()
    record = store.start("ann", CLINIC, "release", "eng")
    store.release(record)
    assert store.resume("ann", record.id) is record
    store.release(record)
    codes = []
    for user, conversation_id in (("ann", "0" * 24), ("bob", record.id)):
        with pytest.raises(Refusal) as info:
            store.resume(user, conversation_id)
        codes.append(info.value.close_code)
    store.finish(record)
    with pytest.raises(Refusal) as info:
        store.resume("ann", record.id)
    assert [*codes, info.value.close_code] == [4404, 4403, 4409]


def test_the_frame_limiter_allows_a_burst_then_the_rate():
    clock = FakeClock()
    limiter = FrameRateLimiter(100, clock=clock)
    assert all(limiter.allow() for _ in range(100)) and not limiter.allow()
    clock.now += 0.5
    assert sum(limiter.allow() for _ in range(100)) == 50


# --- the recognition worker ---------------------------------------------------------------------------------


def test_the_recognition_worker_transcribes_streams_and_survives_a_crash(clinic):
    from amigo_lab.emulator.recognition import RecognitionWorker
    from amigo_lab.speech import SpeechError

    phrases = clinic.english_phrases()
    speech = Synthesizer().synthesize("where are you located", language="eng").pcm + bytes(8000)
    worker = RecognitionWorker(processes=1)
    try:
        first, dropped = worker.open(phrases), worker.open(phrases)
        for start in range(0, len(speech), 3200):
            worker.feed(first, speech[start:start + 3200])
            worker.feed(dropped, speech[start:start + 3200])
        worker.cancel(dropped)
        assert worker.finish(first).result(timeout=20) == "where are you located"
        assert worker.finish(dropped).exception(timeout=5) is not None  # cancelled streams cannot finish

        waiting = worker.open(phrases)
        worker.feed(waiting, speech)
        process = worker._slots[0].popen
        process.kill()  # the worker dies in the middle of an utterance
        process.wait()
        with pytest.raises(SpeechError):
            worker.finish(waiting).result(timeout=20)
        again = worker.open(phrases)  # a new worker takes over
        worker.feed(again, speech)
        assert worker.finish(again).result(timeout=20) == "where are you located"
    finally:
        worker.close()
