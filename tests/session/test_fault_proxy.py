"""The fault proxy itself, against a plain echo server: it forwards, delays, holds, drops, cuts, closes."""

from __future__ import annotations

import time

import pytest
from faults import FaultProxy
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import serve


@pytest.fixture
def echo_proxy():
    def echo(ws):
        for message in ws:
            ws.send(message)

    with serve(echo, "127.0.0.1", 0) as server:
        import threading
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        with FaultProxy("127.0.0.1", server.socket.getsockname()[1]) as proxy:
            yield proxy
        server.shutdown()


def test_forwards_both_ways(echo_proxy):
    with connect(f"ws://{echo_proxy.address}/") as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
    assert echo_proxy.accepted == 1 and echo_proxy.frames_down >= 1


def test_delay_holds_every_message(echo_proxy):
    with connect(f"ws://{echo_proxy.address}/") as ws:
        echo_proxy.delay(0.3, "down")
        start = time.monotonic()
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
        assert time.monotonic() - start >= 0.3


def test_pause_holds_until_resume(echo_proxy):
    with connect(f"ws://{echo_proxy.address}/") as ws:
        echo_proxy.pause("down")
        ws.send("held")
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)
        echo_proxy.resume()
        assert ws.recv(timeout=5) == "held"


def test_drop_discards(echo_proxy):
    with connect(f"ws://{echo_proxy.address}/", close_timeout=0.2) as ws:
        echo_proxy.drop("up")
        ws.send("lost")
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.3)
        echo_proxy.drop("up", dropping=False)
        ws.send("found")
        assert ws.recv(timeout=5) == "found"


def test_cut_is_an_abnormal_close(echo_proxy):
    with connect(f"ws://{echo_proxy.address}/") as ws:
        ws.send("a")
        ws.recv(timeout=5)
        echo_proxy.cut()
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=5)
    assert caught.value.rcvd is None  # no close frame: the client reports 1006


def test_close_with_sends_a_close_code(echo_proxy):
    with connect(f"ws://{echo_proxy.address}/") as ws:
        echo_proxy.close_with(4401, "invalid token")
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=5)
    assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (4401, "invalid token")
