"""Interrupting the notebook kernel must not break the embedded emulator's speech recognition.

Jupyter's "interrupt kernel" (like Ctrl+C in a terminal) sends SIGINT to the kernel's whole process group.
The script below plays a kernel: it catches SIGINT as ipykernel does, signals its own group, and expects
the next spoken turn to be recognized as before. It runs in a session of its own so the signal cannot
reach the test runner.
"""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os, signal, time
    import amigo_lab
    from amigo_lab.audio import pcm16_to_float
    from amigo_lab.emulator import Emulator
    from amigo_lab.speech import Synthesizer

    signal.signal(signal.SIGINT, lambda *args: print("interrupted", flush=True))
    speech = pcm16_to_float(Synthesizer().synthesize("what are your opening hours").pcm)
    with Emulator(realtime=False) as emu:
        session = amigo_lab.connect(emulator=emu, response_format="text")
        print(session.send_audio(speech, realtime=False).result(60).user_text, flush=True)
        os.killpg(os.getpgid(0), signal.SIGINT)
        time.sleep(0.5)
        print(session.send_audio(speech, realtime=False).result(60).user_text, flush=True)
        session.finish()
""")


def test_recognition_survives_a_kernel_interrupt(tmp_path):
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=180,
                         start_new_session=True, cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[:3] == ["what are your opening hours", "interrupted", "what are your opening hours"]
    assert "KeyboardInterrupt" not in run.stderr
