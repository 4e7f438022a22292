"""Scratch: mic + player in a real lab without a session."""
import time
import pytest

def test_basic(open_notebook, artifacts_dir):
    nb = open_notebook("basic.ipynb", [
        "from amigo_lab.widgets import Microphone, Player\nimport numpy as np\nchunks = []\nmic = Microphone(mode='vad')\nmic.on_chunk(chunks.append)\nplayer = Player()\ndisplay(mic, player)",
    ])
    nb.run_all()
    page = nb.page
    page.wait_for_selector(".amigo-mic-start", timeout=60000)
    page.wait_for_selector(".amigo-player", timeout=60000)
    page.click(".amigo-mic-start")
    print(nb.wait_for("mic.state == 'streaming' and mic.state", timeout=30, what="streaming"))
    print(nb.console)
    print(nb.wait_for("len(chunks) > 50 and len(chunks)", timeout=30, what="chunks"))
    print(nb.json("[len(chunks[0]), mic.devices, mic.received_ms]"))
    nb.run("import numpy as np\nx = np.frombuffer(b''.join(chunks), '<i2').astype(float)/32768\nprint(float(np.sqrt((x**2).mean())))")
    print(nb.run("import numpy as np\nx = np.frombuffer(b''.join(chunks), '<i2').astype(float)/32768\nprint(float(np.sqrt((x**2).mean())), len(x))"))
    print(nb.json("player.ready"))
    nb.run("mid = player.play(0.3*np.sin(2*np.pi*440*np.arange(32000)/16000), sr=16000)")
    print(nb.wait_for("player.last_event == 'finished' and [player.played_ms, player.message_id]", timeout=30, what="finished"))
    page.screenshot(path=str(artifacts_dir / "scratch.png"))
    nb.run("mic.close()")
    time.sleep(1)
    print(page.evaluate("() => window.__amigoTracks.map(t => t.readyState)"))

@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory):
    import numpy as np, soundfile as sf
    p = tmp_path_factory.mktemp("w") / "tone.wav"
    t = np.arange(16000*3)/16000
    sf.write(p, (0.3*np.sin(2*np.pi*300*t)).astype(np.float32), 16000, subtype="PCM_16")
    return p
