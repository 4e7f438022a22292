"""The README's main job, ``amigo-lab demo``: runs the whole scripted conversation and writes its folder."""

import json

import pytest
import soundfile as sf

import amigo_lab
from amigo_lab.demo import run_demo

SENT = {"client.start-conversation", "client.new-text-message", "client.new-audio-message",
        "client.switch-vad-mode", "client.extend-timeout", "client.close-connection",
        "client.continue-conversation"}
RECEIVED = {"server.conversation-created", "server.conversation-continued", "server.user-message-available",
            "server.current-agent-action", "server.new-message", "server.interaction-complete",
            "server.vad-mode-switched", "server.vad-speech-started", "server.vad-speech-ended",
            "server.vad-speech-reset-zero"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    result = run_demo(out, token="s3cret-demo-token", realtime=False, echo=lines.append)
    return result, lines


def test_every_step_reports_progress_and_the_turn_table_is_printed(demo):
    _result, lines = demo
    text = "\n".join(lines)
    for n in range(1, 11):
        assert f"[{n}/10]" in text
    assert "discarded by the server" in text          # the cough
    assert "filler 'One moment" in text               # the slow tool
    assert "continued same conversation" in text
    assert "interrupted" in text and "NOT interrupted" not in text
    assert "conversation completed" in text
    assert "turns and latencies" in text


def test_frame_log_reloads_with_every_frame_type_both_ways(demo):
    result, _ = demo
    frames = amigo_lab.load_session(result.session_dir).frames
    by_direction = frames.groupby("direction")["type"].apply(set)
    assert SENT <= by_direction["sent"]
    assert RECEIVED <= by_direction["received"]
    assert {"connection.opened", "connection.closed"} <= by_direction["local"]
    assert (result.session_dir / "frames.parquet").exists()
    assert (result.session_dir / "frames.jsonl").exists()


def test_the_turns_cover_the_script(demo):
    result, _ = demo
    turns = result.turns
    assert list(turns["user_kind"])[:1] == ["greeting"]
    assert "what are your opening hours" in set(turns["transcript"].dropna())
    assert turns["interrupted"].sum() == 1
    assert turns["filler_text"].notna().sum() == 1
    assert "spa" in set(turns["agent_language"].dropna())
    assert bool(turns["conversation_completed"].iloc[-1])


def test_audio_files_are_time_aligned(demo):
    result, _ = demo
    user, sr = sf.read(result.out / "user.wav")
    agent, _ = sf.read(result.out / "agent.wav")
    stereo, _ = sf.read(result.out / "stereo.wav")
    assert sr == 16000 and stereo.shape[1] == 2
    assert len(stereo) == max(len(user), len(agent))
    assert abs(stereo[: len(user), 0] - user).max() < 1e-3
    assert abs(user).max() > 0.05 and abs(agent).max() > 0.05


def test_report_is_written_and_the_token_is_nowhere(demo):
    result, _ = demo
    assert result.report.exists() and "Riverside" in result.report.read_text(encoding="utf-8")
    for path in result.out.rglob("*"):
        if path.is_file():
            assert b"s3cret-demo-token" not in path.read_bytes(), path
    meta = json.loads((result.session_dir / "meta.json").read_text())
    assert "s3cret" not in json.dumps(meta)
