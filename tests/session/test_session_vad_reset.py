"""A cough with VAD on: the server discards it (reset-zero), and the turn that sent it must end, not hang."""

import numpy as np
import pytest

from amigo_lab.audio import SAMPLE_RATE, pcm16_to_float
from amigo_lab.session import SessionError
from amigo_lab.speech import Synthesizer


def _cough(ms: int = 80) -> np.ndarray:
    word = pcm16_to_float(Synthesizer().synthesize("what").pcm)
    start = int(np.flatnonzero(np.abs(word) > 0.02)[0])
    pad = np.zeros(SAMPLE_RATE // 4, dtype=np.float32)
    return np.concatenate([pad, word[start: start + SAMPLE_RATE * ms // 1000], pad])


@pytest.mark.parametrize("realtime", [True, False])
def test_a_discarded_cough_fails_its_turn_and_the_session_goes_on(open_session, realtime):
    session = open_session()
    session.greeting.result(30)
    session.vad(True)
    # In real time the reset arrives while the trailing silence is still streaming; the turn must still end.
    with pytest.raises(SessionError, match="reset-zero"):
        session.send_audio(_cough(), sr=SAMPLE_RATE, realtime=realtime).result(30)
    assert "server.vad-speech-reset-zero" in set(session.frames["type"])
    speech = pcm16_to_float(Synthesizer().synthesize("what are your opening hours").pcm)
    reply = session.send_audio(speech, sr=SAMPLE_RATE, realtime=realtime).result(60)
    assert reply.user_text == "what are your opening hours"
