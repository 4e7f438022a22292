"""The lab's background loop: hops in from any thread, survives a blocked caller, stops cleanly."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import pytest

from amigo_lab._loop import BackgroundLoop, get_loop


@pytest.fixture
def bg():
    loop = BackgroundLoop(name="test-loop")
    yield loop
    loop.stop()


def test_starts_lazily_in_a_daemon_thread(bg):
    assert not bg.running
    name = bg.call(lambda: threading.current_thread().name).result(5)
    assert name == "test-loop" and bg.running
    assert bg.call(bg.in_loop_thread).result(5) and not bg.in_loop_thread()


def test_run_returns_results_and_exceptions(bg):
    async def double(x):
        await asyncio.sleep(0.01)
        return 2 * x

    async def fail():
        raise ValueError("nope")

    assert bg.run(double(21)).result(5) == 42
    with pytest.raises(ValueError, match="nope"):
        bg.run(fail()).result(5)
    with pytest.raises(ZeroDivisionError):
        bg.call(lambda: 1 / 0).result(5)


def test_calls_from_many_threads_all_land_in_order_per_thread(bg):
    seen: list[tuple[int, int]] = []
    futures: list[concurrent.futures.Future] = []
    lock = threading.Lock()

    def worker(n):
        for i in range(50):
            future = bg.call(seen.append, (n, i))
            with lock:
                futures.append(future)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    concurrent.futures.wait(futures, timeout=5)
    assert len(seen) == 400
    for n in range(8):
        assert [i for m, i in seen if m == n] == list(range(50))


def test_a_blocked_caller_does_not_stop_the_loop(bg):
    ticks: list[float] = []

    async def tick():
        for _ in range(10):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.05)

    future = bg.run(tick())
    start = time.monotonic()
    time.sleep(0.4)  # the caller is busy; the loop is not
    assert len([t for t in ticks if t < start + 0.4]) >= 6
    future.result(5)


def test_stop_runs_hooks_cancels_tasks_and_allows_a_restart(bg):
    events = []

    async def forever():
        try:
            await asyncio.sleep(3600)
        finally:
            events.append("cancelled")

    async def hook():
        events.append("hook")

    bg.add_shutdown_hook(hook)
    removed = bg.add_shutdown_hook(hook)
    removed()
    bg.run(forever())
    time.sleep(0.05)
    bg.stop()
    assert events == ["hook", "cancelled"] and not bg.running
    assert bg.call(lambda: "again").result(5) == "again"


def test_stop_from_the_loop_thread_is_refused(bg):
    with pytest.raises(RuntimeError, match="own thread"):
        bg.call(bg.stop).result(5)


def test_the_shared_loop_is_one_per_process():
    assert get_loop() is get_loop()
