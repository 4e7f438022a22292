"""The lab's own background event loop: one daemon thread that runs every socket of every session.

Why a thread of our own: a notebook cell that blocks (``time.sleep``, a long computation, a plain
``turn.result()``) blocks the kernel's event loop, so a socket living there would stop reading frames and
miss its keep-alive pings. On this loop, frames keep flowing whatever the notebook does. Widget callbacks
may arrive on other threads (ipykernel 7 subshells), so every hop into the loop goes through
``call_soon_threadsafe`` / ``run_coroutine_threadsafe``; nothing here patches the kernel's loop.

Use :func:`run` to run a coroutine on the loop and get a :class:`concurrent.futures.Future` back, and
:func:`call` to run a plain function there. The loop starts on first use and stops cleanly at interpreter
exit (shutdown hooks first, then every remaining task is cancelled).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

logger = logging.getLogger("amigo_lab.loop")

#: How long interpreter exit waits for shutdown hooks, then for cancelled tasks, in seconds.
SHUTDOWN_TIMEOUT_S = 2.0


class BackgroundLoop:
    """An asyncio loop running forever in a daemon thread, started on first use.

    Thread-safe: :meth:`run` and :meth:`call` may be called from any thread, including the loop's own
    (where they schedule and return at once; never block on their futures there).
    """

    def __init__(self, name: str = "amigo_lab-loop") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._hooks: list[Callable[[], Awaitable[None]]] = []

    # --- life cycle -----------------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop; starts the thread the first time it is asked for."""
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                self._start()
            assert self._loop is not None
            return self._loop

    @property
    def running(self) -> bool:
        """True while the loop thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
            finally:
                # Reached after stop(): give async generators a chance, then release the selector.
                try:
                    loop.run_until_complete(loop.shutdown_asyncgens())
                finally:
                    loop.close()

        thread = threading.Thread(target=main, name=self._name, daemon=True)
        thread.start()
        ready.wait()
        self._loop, self._thread = loop, thread

    def in_loop_thread(self) -> bool:
        """True when called from the loop's own thread (where blocking on a future would deadlock)."""
        return self._thread is not None and threading.current_thread() is self._thread

    def add_shutdown_hook(self, hook: Callable[[], Awaitable[None]]) -> Callable[[], None]:
        """Run ``await hook()`` on the loop when it stops (e.g. to close sockets politely).

        Returns a function that removes the hook again.
        """
        with self._lock:
            self._hooks.append(hook)

        def remove() -> None:
            with self._lock:
                if hook in self._hooks:
                    self._hooks.remove(hook)

        return remove

    def stop(self, timeout: float = SHUTDOWN_TIMEOUT_S) -> None:
        """Run the shutdown hooks, cancel every task, stop the loop and join its thread.

        Safe to call more than once and from any thread but the loop's own. A later :meth:`run` starts
        a fresh loop.
        """
        with self._lock:
            loop, thread, hooks = self._loop, self._thread, list(self._hooks)
            if thread is not None and threading.current_thread() is thread:
                raise RuntimeError("BackgroundLoop.stop() cannot run on the loop's own thread")
            self._loop = self._thread = None
        if loop is None or thread is None or loop.is_closed() or not thread.is_alive():
            return
        try:
            done = asyncio.run_coroutine_threadsafe(_wind_down(hooks, timeout), loop)
            done.result(timeout=2 * timeout + 1)
        except (concurrent.futures.TimeoutError, RuntimeError) as exc:
            logger.warning("the background loop did not wind down cleanly: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

    # --- hopping in -----------------------------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule a coroutine on the loop; returns a future to ``.result()`` (off-loop) or await.

        From another thread: ``loop.run(coro).result(timeout)``. From a coroutine on any loop:
        ``await asyncio.wrap_future(loop.run(coro))``.
        """
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Run ``fn(*args)`` on the loop thread; returns a future of its result (or its exception)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def invoke() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to the caller through the future
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(invoke)
        return future


async def _wind_down(hooks: list[Callable[[], Awaitable[None]]], limit_s: float) -> None:
    if hooks:
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(hook() for hook in hooks), return_exceptions=True), limit_s)
        except TimeoutError:
            logger.warning("shutdown hooks did not finish within %.1f s; cancelling them", limit_s)
            results = []
        for result in results:
            if isinstance(result, BaseException):
                logger.warning("a shutdown hook failed: %r", result)
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=limit_s)


_shared = BackgroundLoop()


def get_loop() -> BackgroundLoop:
    """The lab's shared background loop (one per process)."""
    return _shared


def run(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
    """Run a coroutine on the shared background loop; see :meth:`BackgroundLoop.run`."""
    return _shared.run(coro)


def call(fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
    """Run ``fn(*args)`` on the shared background loop's thread; see :meth:`BackgroundLoop.call`."""
    return _shared.call(fn, *args)


def _stop_at_exit() -> None:
    try:
        _shared.stop()
    except Exception as exc:  # never let interpreter exit fail on our account
        logger.warning("stopping the background loop at exit failed: %r", exc)


atexit.register(_stop_at_exit)
