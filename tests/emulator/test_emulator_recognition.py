"""The recognition worker processes: lazy, shared by the emulators of a process, ended with the last of
them, stopped when idle, gone when their parent dies, and a cancel that does not wait behind its audio."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest
from emulator_wire import WireClient, silence

from amigo_lab.emulator import DEFAULT_SERVICE_ID, Emulator, load_services
from amigo_lab.emulator.recognition import SHARED_RECOGNITION, RecognitionWorker

VOICE = "response_format=voice&audio_format=pcm"
QUESTION = "where are you located"


@pytest.fixture(scope="module")
def phrases():
    return load_services()[DEFAULT_SERVICE_ID].english_phrases()


def gone(pid: int, timeout: float = 15.0) -> bool:
    """True once process ``pid`` has exited (and was reaped, or is a zombie)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def spoken_turn(emu: Emulator, pcm: bytes) -> str:
    client = WireClient(emu.port, query=VOICE)
    try:
        client.start()
        client.interaction()
        client.send_audio(pcm, chunk_ms=200, frames_per_s=80)
        client.send("client.new-audio-message", audio=None)
        transcript = client.interaction()[0]["user_message"]
        client.send("client.finish-conversation")
        client.expect_close()
        return transcript
    finally:
        client.close()


def test_workers_start_with_speech_are_shared_and_end_with_the_last_emulator():
    # The pool is per process, and an earlier test of this run may still hold an emulator (and so the pool):
    # check the life cycle in a fresh interpreter of its own.
    here = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "AMIGO_LAB_RECOGNITION_LIFECYCLE": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", here,
                           f"{__file__}::test_recognition_lifecycle_in_a_fresh_process"],
                          cwd=here, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout


@pytest.mark.skipif(not os.environ.get("AMIGO_LAB_RECOGNITION_LIFECYCLE"),
                    reason="run by the test above in a fresh interpreter")
def test_recognition_lifecycle_in_a_fresh_process(speak):
    assert SHARED_RECOGNITION.running == []  # a fresh process: no worker yet
    pcm = speak(QUESTION) + silence(300)
    with Emulator(realtime=False) as first:
        text = WireClient(first.port)
        text.start()
        text.interaction()
        text.say("what time do you open")
        text.interaction()
        text.send("client.finish-conversation")
        text.expect_close()
        text.close()
        assert SHARED_RECOGNITION.running == []  # text alone starts no worker
        assert spoken_turn(first, pcm) == QUESTION
        workers = SHARED_RECOGNITION.running
        assert len(workers) == 1  # one speaker at a time needs one worker
        with Emulator(realtime=False, tokens={"other-token": "other-user"}) as second:
            client = WireClient(second.port, token="other-token", query=VOICE)
            client.start()
            client.interaction()
            client.send_audio(pcm, chunk_ms=200, frames_per_s=80)
            client.send("client.new-audio-message", audio=None)
            assert client.interaction()[0]["user_message"] == QUESTION
            client.close()
            assert SHARED_RECOGNITION.running == workers  # the second emulator uses the same worker
        assert SHARED_RECOGNITION.running == workers  # the first still serves: its worker stays
    assert all(gone(pid) for pid in workers)
    assert SHARED_RECOGNITION.running == []


def test_a_second_worker_starts_only_for_simultaneous_speech(phrases, speak):
    worker = RecognitionWorker(processes=2)
    try:
        first = worker.open(phrases)
        assert len(worker.running) == 1
        worker.feed(first, speak(QUESTION))
        assert worker.finish(first).result(timeout=30) == QUESTION
        again = worker.open(phrases)  # the first worker is idle again: it takes this stream
        assert len(worker.running) == 1
        overlapping = worker.open(phrases)  # two users at once
        assert len(worker.running) == 2
        for stream in (again, overlapping):
            worker.feed(stream, speak(QUESTION))
        assert [worker.finish(s).result(timeout=30) for s in (again, overlapping)] == [QUESTION, QUESTION]
    finally:
        worker.close()
    assert worker.running == []


def test_idle_workers_stop_and_the_next_stream_starts_one_again(phrases, speak):
    worker = RecognitionWorker(processes=1, idle_s=0.3)
    try:
        stream = worker.open(phrases)
        worker.feed(stream, speak(QUESTION))
        assert worker.finish(stream).result(timeout=30) == QUESTION
        (pid,) = worker.running
        assert gone(pid)
        assert worker.running == []
        stream = worker.open(phrases)
        worker.feed(stream, speak(QUESTION))
        assert worker.finish(stream).result(timeout=30) == QUESTION
    finally:
        worker.close()


def test_a_cancel_skips_the_audio_queued_for_its_stream(phrases, speak):
    worker = RecognitionWorker(processes=1)
    try:
        worker.prepare()
        long_speech = speak("i would like to book an appointment") * 20  # about a minute of speech
        dropped = worker.open(phrases)
        for start in range(0, len(long_speech), 3200):
            worker.feed(dropped, long_speech[start:start + 3200])
        worker.cancel(dropped)
        after = worker.open(phrases)
        worker.feed(after, speak(QUESTION))
        assert worker.finish(after).result(timeout=30) == QUESTION
        assert worker.skipped_feeds > 0  # queued audio of the cancelled stream was never sent
    finally:
        worker.close()


def test_a_worker_exits_when_its_parent_dies_without_cleaning_up(tmp_path):
    script = textwrap.dedent("""
        import os
        from amigo_lab.emulator.recognition import RecognitionWorker
        worker = RecognitionWorker(processes=1)
        worker.prepare()
        print(worker.running[0], flush=True)
        os._exit(0)  # no atexit, no close: as if the kernel were killed
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": os.getcwd()}, check=True)
    assert gone(int(run.stdout.split()[0]))


def test_the_worker_serves_a_finishing_stream_before_other_streams_audio_and_drops_cancelled_audio():
    from amigo_lab.emulator.asr_worker import CANCEL, FEED, FINISH, OPEN, _Inbox

    inbox = _Inbox()
    for frame in [(OPEN, 1, b""), (FEED, 1, b"a1"), (OPEN, 2, b""), (FEED, 2, b"b1"), (FEED, 1, b"a2"),
                  (FEED, 3, b"c1"), (FEED, 2, b"b2"), (FINISH, 2, b""), (FEED, 3, b"c2"), (CANCEL, 3, b"")]:
        inbox.put(frame)
    inbox.close()
    served = []
    while (frame := inbox.get()) is not None:
        served.append(frame[:2])
    # Stream 2 finishes first (its own order kept), stream 3's audio is gone, the rest follows in order.
    assert served == [(OPEN, 2), (FEED, 2), (FEED, 2), (FINISH, 2), (OPEN, 1), (FEED, 1), (FEED, 1), (CANCEL, 3)]


@pytest.mark.skipif(not hasattr(os, "getpriority") or not hasattr(os, "SCHED_BATCH"), reason="Unix priorities")
def test_workers_run_below_the_emulator_priority_so_the_event_loop_is_not_kept_waiting(phrases, speak):
    from amigo_lab.emulator.asr_worker import NICENESS

    worker = RecognitionWorker(processes=1)
    try:
        stream = worker.open(phrases)
        worker.feed(stream, speak(QUESTION))
        assert worker.finish(stream).result(timeout=30) == QUESTION  # the worker is past its start-up
        (pid,) = worker.running
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, ours + NICENESS)
        assert os.sched_getscheduler(pid) == os.SCHED_BATCH
    finally:
        worker.close()
