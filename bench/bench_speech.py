"""Measure amigo_lab.speech: TTS and ASR real-time factors, ASR accuracy, decoder cost, VAD throughput.

Run: ``python bench/bench_speech.py`` (offline; about a minute, most of it in the open-vocabulary ASR).
A real-time factor (RTF) is processing time divided by audio duration; below 1 is faster than real time.
"""

from __future__ import annotations

import statistics
import threading
import time

from amigo_lab.speech import Recognizer, Synthesizer, VoiceActivityDetector

PHRASES = [
    "what are your opening hours", "i would like to book an appointment", "check my order status", "goodbye",
    "i want to speak to a human", "cancel my subscription", "where is my package", "yes please",
    "no thank you", "can you repeat that", "what is the weather like today", "reset my password",
    "i need help with my bill", "hello", "thank you very much", "transfer me to billing",
    "when does the store close", "i lost my card", "book a table for two", "what time is it",
    "please send me the invoice again", "my internet is not working", "i would like to change my address",
    "how much does shipping cost", "can i pay by credit card", "is the pharmacy open on sunday",
    "tell me a joke", "turn off the lights", "play some music", "what is my account balance",
    "i forgot my username", "speak slower please", "i did not understand", "start over",
    "connect me to an agent", "order a large pizza", "is there a discount for students",
    "my flight was cancelled", "where can i park", "how do i return an item",
]
RATES_WPM = (140, 175, 220)
TTS_TEXTS = {
    "eng": "Thank you for calling. Your appointment is confirmed for Tuesday at three in the afternoon.",
    "spa": "Gracias por llamar. Su cita está confirmada para el martes a las tres de la tarde.",
    "fra": "Merci de votre appel. Votre rendez-vous est confirmé pour mardi à quinze heures.",
    "deu": "Danke für Ihren Anruf. Ihr Termin ist für Dienstag um fünfzehn Uhr bestätigt.",
    "ita": "Grazie per aver chiamato. Il suo appuntamento è confermato per martedì alle quindici.",
    "por": "Obrigado pela sua chamada. A sua consulta está confirmada para terça-feira às quinze horas.",
}
SILENCE_300MS = b"\x00\x00" * 4800


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 1e6


def _audio_s(pcm: bytes) -> float:
    return len(pcm) / 32000


def bench_tts() -> dict[str, list[bytes]]:
    synthesizer = Synthesizer()
    synthesizer.synthesize("warm up")
    print("TTS (eSpeak NG, 22.05 kHz -> 16 kHz)")
    for language, text in TTS_TEXTS.items():
        start = time.perf_counter()
        speech = synthesizer.synthesize(text, language=language)
        elapsed = time.perf_counter() - start
        seconds = speech.duration_ms / 1000
        print(f"  {language}: {seconds:5.2f} s audio in {elapsed * 1000:6.1f} ms  RTF {elapsed / seconds:.4f}")
    return {
        phrase: [
            SILENCE_300MS + synthesizer.synthesize(phrase, rate_wpm=rate).pcm + SILENCE_300MS for rate in RATES_WPM
        ]
        for phrase in PHRASES
    }


def bench_decoders(recognizers: dict[str, Recognizer]) -> None:
    for name, recognizer in recognizers.items():
        times, memory = [], []
        for count in range(1, 4):
            before, start = _rss_mb(), time.perf_counter()
            recognizer.preload(count)
            times.append(time.perf_counter() - start)
            memory.append(_rss_mb() - before)
        build_ms, rss_mb = statistics.median(times) * 1000, statistics.median(memory)
        print(f"  decoder ({name}): build {build_ms:.0f} ms, +{rss_mb:.1f} MB RSS each")


def _word_errors(reference: str, hypothesis: str) -> int:
    """Levenshtein distance between the two word sequences."""
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, 1):
        previous, row = row, [i] + [0] * len(hyp)
        for j, hyp_word in enumerate(hyp, 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word))
    return row[-1]


def bench_asr(name: str, recognizer: Recognizer, audio: dict[str, list[bytes]]) -> None:
    recognizer.preload(1)
    exact = total = errors = words = 0
    decode_s = audio_s = 0.0
    finish_ms: list[float] = []
    for phrase, takes in audio.items():
        for pcm in takes:
            stream = recognizer.stream()
            start = time.perf_counter()
            for offset in range(0, len(pcm), 640):  # 20 ms packets, as from the wire
                stream.feed(pcm[offset : offset + 640])
            before_finish = time.perf_counter()
            transcript = stream.finish()
            end = time.perf_counter()
            finish_ms.append((end - before_finish) * 1000)
            decode_s += end - start
            audio_s += _audio_s(pcm)
            exact += transcript == phrase
            total += 1
            errors += _word_errors(phrase, transcript)
            words += len(phrase.split())
    print(
        f"  {name}: exact {exact}/{total} ({100 * exact / total:.0f}%), WER {errors / words:.1%}, "
        f"RTF {decode_s / audio_s:.3f}, "
        f"finish() median {statistics.median(finish_ms):.1f} ms / max {max(finish_ms):.1f} ms"
    )


def bench_gil(recognizer: Recognizer, audio: dict[str, list[bytes]]) -> None:
    pcm = b"".join(takes[1] for takes in list(audio.values())[:10])
    recognizer.preload(2)

    def decode() -> None:
        recognizer.transcribe(pcm)

    start = time.perf_counter()
    decode()
    decode()
    sequential = time.perf_counter() - start
    threads = [threading.Thread(target=decode) for _ in range(2)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    parallel = time.perf_counter() - start
    print(
        f"  GIL: 2 decodes sequential {sequential:.2f} s, in 2 threads {parallel:.2f} s "
        f"(speedup {sequential / parallel:.2f}; 2 would mean parallel decoding, <= 1 that the GIL is held)"
    )


def bench_vad(audio: dict[str, list[bytes]]) -> None:
    pcm = b"".join(take for takes in audio.values() for take in takes)
    detector = VoiceActivityDetector()
    start = time.perf_counter()
    for offset in range(0, len(pcm), 640):
        detector.feed(pcm[offset : offset + 640])
    elapsed = time.perf_counter() - start
    frames = len(pcm) // 640
    print(f"VAD (20 ms frames): {frames / elapsed:,.0f} frames/s, RTF {elapsed / _audio_s(pcm):.5f}")


def main() -> None:
    audio = bench_tts()
    print(f"ASR on {len(PHRASES)} eSpeak phrases x rates {RATES_WPM} wpm, streamed in 20 ms packets")
    restricted, general = Recognizer(PHRASES), Recognizer()
    bench_decoders({"phrase grammar": restricted, "general LM": general})
    bench_asr("phrase-restricted", restricted, audio)
    bench_asr("open vocabulary  ", general, audio)
    bench_gil(general, audio)
    bench_vad(audio)


if __name__ == "__main__":
    main()
