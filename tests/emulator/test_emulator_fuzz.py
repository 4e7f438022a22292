"""Fuzz: bad frames of every recoverable kind drop no connection, and each gets exactly the answer
protocol.md §5 names (``server.error`` 400, connection open).

The suite runs a sample (2,000 frames). For the full run set ``AMIGO_LAB_FUZZ_FRAMES``::

    AMIGO_LAB_FUZZ_FRAMES=100000 .venv/bin/python -m pytest tests/emulator/test_emulator_fuzz.py -q -s
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter

from emulator_wire import WireClient
from fuzz_frames import KINDS, bad_frames

from amigo_lab.emulator import Emulator, Limits
from amigo_lab.protocol.constants import MAX_FRAME_BYTES

FRAMES = int(os.environ.get("AMIGO_LAB_FUZZ_FRAMES", "2000"))
PER_CONNECTION = 10_000


def test_every_bad_frame_gets_a_400_and_no_connection_drops():
    answered: Counter[str] = Counter()
    wrong: list[tuple[str, object]] = []
    # The frame-rate limit is lifted: it is a fatal limit of its own, tested elsewhere.
    limits = Limits(frames_per_second=1e9, new_conversations_per_minute=1_000_000)
    started = time.perf_counter()
    with Emulator(realtime=False, limits=limits) as emu:
        client = None
        for index, (kind, message) in enumerate(bad_frames(FRAMES, seed=7)):
            if index % PER_CONNECTION == 0:
                if client is not None:
                    client.send("client.finish-conversation")
                    assert client.expect_close()[0] == 1000
                    client.close()
                client = WireClient(emu.port, query="response_format=voice&audio_format=pcm", max_size=None)
                client.start()
                client.interaction()
            assert client is not None
            client.ws.send(message)
            raw = client.ws.recv(timeout=10)  # a drop raises here: ConnectionClosed
            frame = json.loads(raw)
            if frame.get("type") != "server.error" or frame.get("http_error_code") != 400 \
                    or len(raw) > MAX_FRAME_BYTES:
                wrong.append((kind, frame))
            answered[kind] += 1
        assert client is not None
        client.say("what time do you open")
        frames = client.interaction()
        assert frames[0].get("user_message") == "what time do you open", (frames[:3], wrong[:3])
        stats = emu.stats()
        client.close()
    elapsed = time.perf_counter() - started
    print(f"\n{FRAMES} bad frames in {elapsed:.1f} s, {len(wrong)} wrong answers, closes {stats['close_codes']}")
    assert not wrong, wrong[:5]
    assert set(answered) == set(KINDS) and sum(answered.values()) == FRAMES
    assert all(code == 1000 for code in stats["close_codes"])
