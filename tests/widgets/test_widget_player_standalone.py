"""The player without a session: buffering until the browser is ready, piece order, flush, reports."""

import numpy as np

from amigo_lab.audio import pcm16_to_float
from amigo_lab.widgets import Player
from amigo_lab.widgets.player import MAX_PENDING_BYTES


def test_audio_waits_for_ready_then_arrives_in_order(front_end):
    player = Player()
    player.feed(b"\x01\x00" * 160, message_id="m1")
    player.feed(b"\x02\x00" * 160, message_id="m1", stop=True)
    assert front_end.sent(player) == []          # nothing before the browser says it can play

    front_end.custom(player, {"kind": "ready"})

    sent = front_end.sent(player)
    assert [content["kind"] for content, _ in sent] == ["audio", "audio", "end"]
    assert [bufs[0][:2] for content, bufs in sent if content["kind"] == "audio"] == [b"\x01\x00", b"\x02\x00"]
    assert all(content["message_id"] == "m1" for content, _ in sent)
    assert player.ready


def test_after_ready_pieces_go_out_at_once(front_end):
    player = Player()
    front_end.custom(player, {"kind": "ready"})
    player.feed(b"\x00\x00" * 320, message_id="m2", audio_format="mp3")
    (content, buffers), = front_end.sent(player, "audio")
    assert content == {"kind": "audio", "message_id": "m2", "format": "mp3"}
    assert len(buffers[0]) == 640


def test_play_resamples_floats_to_16k_pcm_pieces(front_end):
    player = Player()
    front_end.custom(player, {"kind": "ready"})
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(48000) / 48000).astype(np.float32)   # 1 s at 48 kHz

    message_id = player.play(tone, sr=48000)

    audio = front_end.sent(player, "audio")
    pcm = b"".join(bufs[0] for _, bufs in audio)
    assert len(pcm) == 16000 * 2                          # 1 s at 16 kHz, PCM16
    assert abs(float(np.max(np.abs(pcm16_to_float(pcm)))) - 0.5) < 0.02
    assert {content["message_id"] for content, _ in audio} == {message_id}
    assert front_end.sent(player, "end")[-1][0]["message_id"] == message_id


def test_flush_names_open_messages_and_drops_their_queued_audio(front_end):
    player = Player()
    player.feed(b"\x00\x00" * 160, message_id="open")
    player.flush()
    front_end.custom(player, {"kind": "ready"})
    sent = front_end.sent(player)
    assert [content["kind"] for content, _ in sent] == ["flush"]
    assert sent[0][0]["message_ids"] == ["open"]


def test_reports_update_traits_and_callbacks(front_end):
    player = Player()
    seen = []
    player.on_report(lambda kind, message_id, played_ms: seen.append((kind, message_id, played_ms)))
    front_end.custom(player, {"kind": "progress", "message_id": "m", "played_ms": 250})
    front_end.custom(player, {"kind": "finished", "message_id": "m", "played_ms": 1200})
    assert seen == [("progress", "m", 250.0), ("finished", "m", 1200.0)]
    assert (player.message_id, player.played_ms, player.last_event) == ("m", 1200.0, "finished")


def test_pending_audio_is_bounded_while_no_view_exists(front_end):
    player = Player()
    piece = b"\x00\x00" * 16000          # 1 s
    for i in range(int(MAX_PENDING_BYTES / len(piece)) + 5):
        player.feed(piece, message_id=f"m{i}")
    front_end.custom(player, {"kind": "ready"})
    delivered = sum(len(bufs[0]) for _, bufs in front_end.sent(player, "audio"))
    assert delivered <= MAX_PENDING_BYTES
    assert front_end.sent(player, "audio")[-1][0]["message_id"] == f"m{int(MAX_PENDING_BYTES / len(piece)) + 4}"
