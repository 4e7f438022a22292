"""Bad client frames of every recoverable kind, for fuzzing the emulator (protocol.md §5: each gets
``server.error`` 400 and the connection stays open).

:func:`bad_frames` yields ``(kind, message)`` pairs, reproducibly from a seed; ``message`` is a ``str``
(a text frame) or ``bytes`` (a binary frame). Fatal misuse (a second start, undecodable audio, a frame
over 1 MiB) is left out on purpose: the contract closes the connection for those.
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable, Iterator

TEXT = "client.new-text-message"
AUDIO = "client.new-audio-message"
VAD = "client.switch-vad-mode"
SERVER_TYPES = ("server.new-message", "server.error", "server.interaction-complete", "server.vad-speech-started",
                "server.conversation-created", "server.user-message-available")
WRONG_VALUES: tuple[object, ...] = (42, 3.5, [], ["a"], {}, {"k": 1}, None, True)


def _word(rng: random.Random, n: int = 8) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(1, n)))


def _valid(rng: random.Random) -> dict:
    return rng.choice([
        {"type": TEXT, "text": "what time do you open"},
        {"type": TEXT, "text": "the door opened", "message_type": "external-event"},
        {"type": VAD, "vad_mode_on": False},
        {"type": "client.extend-timeout"},
    ])


def malformed_json(rng: random.Random) -> str:
    text = json.dumps(_valid(rng))
    cut = rng.randint(1, len(text) - 1)
    broken = rng.choice([text[:cut], text[:cut] + "}", text.replace(":", "", 1), "{" + text, text + "x",
                         "{'type': 'client.extend-timeout'}", ""])
    try:
        json.loads(broken)
    except ValueError:
        return broken
    return "{" + text  # the cut happened to leave valid JSON


def not_an_object(rng: random.Random) -> str:
    return json.dumps(rng.choice([[1, 2], "client.extend-timeout", 17, None, True, [{"type": TEXT}]]))


def bad_type(rng: random.Random) -> str:
    frame = _valid(rng)
    choice = rng.randint(0, 3)
    if choice == 0:
        del frame["type"]
    elif choice == 1:
        frame["type"] = rng.choice(WRONG_VALUES)
    elif choice == 2:
        frame["type"] = ""
    else:
        frame["type"] = "client." + _word(rng) + "-" + _word(rng)
    return json.dumps(frame)


def server_type(rng: random.Random) -> str:
    return json.dumps({"type": rng.choice(SERVER_TYPES), "message_id": "0" * 24, "message": "hi", "stop": True,
                       "sequence_number": 0, "http_error_code": 400, "error_description": "x",
                       "conversation_id": "0" * 24, "user_message": "hi", "interaction_id": "1" * 24,
                       "full_message": "hi", "conversation_completed": False})


def missing_field(rng: random.Random) -> str:
    return json.dumps(rng.choice([{"type": TEXT}, {"type": TEXT, "message_type": "user-message"}, {"type": VAD},
                                  {"type": AUDIO}]))


def wrong_field_type(rng: random.Random) -> str:
    value = rng.choice(WRONG_VALUES)
    return json.dumps(rng.choice([
        {"type": TEXT, "text": value if value is not None else 7},
        {"type": TEXT, "text": "hi", "message_type": rng.choice([_word(rng), 3, None, ["user-message"]])},
        {"type": VAD, "vad_mode_on": rng.choice([[1], {"on": True}, "maybe", None, 2.5])},
        {"type": AUDIO, "audio": rng.choice([7, [1, 2], {"b64": "AAAA"}, True])},
    ]))


def empty_text(rng: random.Random) -> str:
    return json.dumps({"type": TEXT, "text": rng.choice(["", " ", "\n\t", "   "]),
                       "message_type": rng.choice(["user-message", "external-event"])})


def bad_base64(rng: random.Random) -> str:
    return json.dumps({"type": AUDIO, "audio": rng.choice(["@@@@", "AAA", "A===", "not base64!", "AA AA",
                                                          base64.b64encode(b"xy").decode()[:-1] + "*"])})


def binary_frame(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return json.dumps(_valid(rng)).encode()
    return bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))


def lone_surrogate(rng: random.Random) -> str:
    half = rng.choice(["\\ud83d", "\\ude00", "\\udfff", "\\ud800"])
    return rng.choice([
        f'{{"type":"{TEXT}","text":"hi {half} there"}}',
        f'{{"type":"{TEXT}","text":"{half}","message_type":"external-event"}}',
        f'{{"type":"client.extend-timeout","note":"{half}"}}',
        f'{{"type":"client.extend-timeout","{half}":1}}',
        f'{{"type":"{VAD}","vad_mode_on":false,"x":["{half}"]}}',
    ])


def oversized_text(rng: random.Random) -> str:
    event = rng.random() < 0.5
    size = rng.randint(1001, 3000) if event else rng.randint(4001, 9000)
    return json.dumps({"type": TEXT, "text": "w" * size,
                       "message_type": "external-event" if event else "user-message"})


def non_json_constant(rng: random.Random) -> str:
    return '{{"type":"{}","vad_mode_on":{}}}'.format(VAD, rng.choice(["NaN", "Infinity", "-Infinity"]))


def huge_bad_value(rng: random.Random) -> str:
    return json.dumps({"type": TEXT, "text": "hi", "message_type": "z" * rng.randint(100_000, 300_000)})


def deep_nesting(rng: random.Random) -> str:
    depth = rng.randint(2_000, 20_000)
    return '{"type":"client.extend-timeout","x":' + "[" * depth + "]" * depth + "}"


#: Every kind, with its weight in a sample (the costly kinds are rare).
KINDS: dict[str, tuple[Callable[[random.Random], str | bytes], int]] = {
    "malformed JSON": (malformed_json, 10),
    "not an object": (not_an_object, 6),
    "bad type": (bad_type, 10),
    "server frame type": (server_type, 6),
    "missing field": (missing_field, 8),
    "wrong field type": (wrong_field_type, 12),
    "empty text": (empty_text, 6),
    "bad base64": (bad_base64, 8),
    "binary frame": (binary_frame, 8),
    "lone surrogate": (lone_surrogate, 10),
    "oversized text": (oversized_text, 6),
    "NaN or Infinity": (non_json_constant, 4),
    "huge bad value": (huge_bad_value, 1),
    "deep nesting": (deep_nesting, 1),
}


def bad_frames(count: int, *, seed: int = 0) -> Iterator[tuple[str, str | bytes]]:
    """``count`` bad frames: every kind once first, then a weighted random mix."""
    rng = random.Random(seed)
    names = list(KINDS)
    weights = [KINDS[name][1] for name in names]
    for index in range(count):
        kind = names[index] if index < len(names) else rng.choices(names, weights)[0]
        yield kind, KINDS[kind][0](rng)
